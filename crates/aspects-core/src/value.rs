//! Typed attribute values, as the plan file declares them and as providers read them back.

use std::collections::BTreeMap;
use std::fmt;

use crate::secret::{REDACTED, Secret};
use crate::text::Text;

#[derive(Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    /// A JSON document (Superset `params`, `position_json` ...): diffed by path. Behind a
    /// pointer: an order-preserving JSON map is 72 bytes, and every attribute map's B-tree node
    /// holds eleven values; inline, each resource would carry about 1 KB for the rare JSON
    /// attribute. Shared: a provider whose live document equals the plan's (a bundle's `assets`,
    /// megabytes) hands back the plan's, and comparing the two is a pointer comparison.
    Json(std::sync::Arc<serde_json::Value>),
    /// SQL text: diffed by line.
    Sql(String),
    /// Anything derived from a secret. Compared only through a provider's verifier or equality.
    Sensitive(Secret),
    /// Text that embeds secrets in places (a rendered file): shown and diffed by line with
    /// those spans masked. Boxed like `Json`: it is rare, and inline it would make every value
    /// 48 bytes instead of 32.
    Text(Box<Text>),
}

/// A string attribute, empty when absent (the loader made required ones present).
pub fn str_attr<'a>(attrs: &'a std::collections::BTreeMap<String, Value>, name: &str) -> &'a str {
    attrs.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The strings of a list attribute.
pub fn str_list(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_list).unwrap_or_default().iter().filter_map(Value::as_str).collect()
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Sql(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_secret(&self) -> Option<&Secret> {
        match self {
            Value::Sensitive(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_sensitive(&self) -> bool {
        match self {
            Value::Sensitive(_) => true,
            Value::Text(t) => t.is_sensitive(),
            Value::List(l) => l.iter().any(Value::is_sensitive),
            Value::Map(m) => m.values().any(Value::is_sensitive),
            _ => false,
        }
    }

    /// A short word for error messages: "a string", "a list" ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::List(_) => "a list",
            Value::Map(_) => "a table",
            Value::Json(_) => "a JSON document",
            Value::Sql(_) => "SQL text",
            Value::Sensitive(_) => "a secret",
            Value::Text(_) => "text",
        }
    }

    /// The JSON form used in plan documents. Secrets become `{"sensitive": true}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Str(s) | Value::Sql(s) => J::String(s.clone()),
            Value::Int(i) => J::from(*i),
            Value::Bool(b) => J::Bool(*b),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::Json(j) => (**j).clone(),
            Value::Sensitive(s) => match s.shown() {
                Some(shown) => serde_json::json!({ "sensitive": true, "shown": shown }),
                None => serde_json::json!({ "sensitive": true }),
            },
            Value::Text(t) => J::String(t.masked()),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The HCL-like rendering used in plan output: strings quoted, lists in brackets.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{ ")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} = {v}")?;
                }
                f.write_str(" }")
            }
            Value::Json(j) => write!(f, "{j}"),
            Value::Sql(s) => write!(f, "{s:?}"),
            Value::Sensitive(s) => match s.shown() {
                Some(shown) => write!(f, "{shown:?}"),
                None => f.write_str(REDACTED),
            },
            Value::Text(t) => write!(f, "{:?}", t.masked()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_four_words() {
        // Every attribute map's B-tree node holds eleven values: 16 more bytes here are 176 more
        // per resource copy (a 9,000-resource plan holds three copies).
        assert_eq!(std::mem::size_of::<Value>(), 32);
    }

    #[test]
    fn secrets_never_render() {
        let v = Value::List(vec![Value::from("a"), Value::Sensitive(Secret::new("pw"))]);
        assert_eq!(v.to_string(), r#"["a", (sensitive)]"#);
        assert_eq!(v.to_json().to_string(), r#"["a",{"sensitive":true}]"#);
        assert!(v.is_sensitive());
        let uri = Value::Sensitive(Secret::with_shown("db://u:pw@h", "db://u:(sensitive)@h"));
        assert_eq!(uri.to_string(), r#""db://u:(sensitive)@h""#);
        assert_eq!(uri.to_json().to_string(), r#"{"sensitive":true,"shown":"db://u:(sensitive)@h"}"#);
        assert_eq!(uri, Value::Sensitive(Secret::new("db://u:pw@h")), "how it is shown plays no part");
    }
}

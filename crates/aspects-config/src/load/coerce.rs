//! Schema checks on resolved values: types, sensitivity, provider checks and warnings, defaults.

use std::collections::BTreeSet;

use aspects_core::{AttrSchema, AttrType, Value};

use super::Loader;
use crate::source::{Diagnostic, Location};
use crate::tree::{Entry, NodeValue};

/// The entry that sets an attribute, if any. `false` on an optional attribute that is not a
/// boolean unsets it, so an overlay can drop what an earlier file set (`password = false`: the
/// local stack's root has none).
pub(super) fn written<'t>(attr: &AttrSchema, entry: Option<&'t Entry>) -> Option<&'t Entry> {
    entry.filter(|e| attr.required || attr.ty == AttrType::Bool || !matches!(e.node.value, NodeValue::Bool(false)))
}

impl Loader<'_> {
    /// The default of an attribute the plan does not set; a required one without default is an error.
    /// `owner` is formatted only for the error: most attributes left out simply take their default.
    pub(super) fn missing(
        &mut self,
        attr: &AttrSchema,
        owner: &dyn std::fmt::Display,
        header: &Location,
    ) -> Option<Value> {
        if attr.required && attr.default.is_none() {
            let example =
                if attr.sensitive { "\"${secrets.NAME}\"".to_owned() } else { format!("<{}>", attr.ty.describe()) };
            self.err(
                Diagnostic::new(format!("{owner} is missing `{}`", attr.name), Some(header.clone()))
                    .hint(format!("add {} = {example}  (`{}`: {})", attr.name, attr.name, attr.doc)),
            );
        }
        attr.default.clone()
    }

    /// Checks a resolved value against the attribute's type and rules.
    /// `secrets` names the secrets the value is built from.
    pub(super) fn coerce(
        &mut self,
        v: Value,
        attr: &AttrSchema,
        loc: &Location,
        secrets: &BTreeSet<String>,
    ) -> Option<Value> {
        if !attr.sensitive && !attr.embeds_secrets && (v.is_sensitive() || !secrets.is_empty()) {
            // An identity built from a secret would be sent, and shown, as something else: MariaDB
            // made the anonymous account from `user = "app_${secrets.U}"`.
            let from: Vec<String> = secrets.iter().map(|s| format!("secrets.{s}")).collect();
            let d = Diagnostic::new(
                format!("`{}` cannot hold a secret, but its value is built from {}", attr.name, from.join(", ")),
                Some(loc.clone()),
            )
            .hint(attr.secret_hint.map_or_else(
                || format!(
                    "secrets go only into attributes that carry them (passwords, connection strings); write `{}` as plain text or a var that holds no secret",
                    attr.name
                ),
                str::to_owned,
            ));
            self.err(d);
            return None;
        }
        if attr.sensitive && !matches!(v, Value::Sensitive(_)) {
            self.err(
                Diagnostic::new(
                    format!("`{}` is sensitive, so its value must come from [secrets]", attr.name),
                    Some(loc.clone()),
                )
                .hint(format!(
                    "declare it under [secrets] (e.g. NAME = {{ generate = 24 }}) and write {} = \"${{secrets.NAME}}\"",
                    attr.name
                )),
            );
            return None;
        }
        let v = match coerce_type(v, &attr.ty) {
            Ok(v) => v,
            Err(found) => {
                self.err(
                    Diagnostic::new(
                        format!("`{}` must be {}, not {found}", attr.name, attr.ty.describe()),
                        Some(loc.clone()),
                    )
                    .hint(format!("`{}`: {}", attr.name, attr.doc)),
                );
                return None;
            }
        };
        if let (Some(check), false) = (attr.check, v.is_sensitive())
            && let Err(msg) = check(&v)
        {
            self.err(
                Diagnostic::new(format!("invalid `{}`: {msg}", attr.name), Some(loc.clone()))
                    .hint(format!("`{}`: {}", attr.name, attr.doc)),
            );
            return None;
        }
        if let (Some(warn), false) = (attr.warn, v.is_sensitive())
            && let Some(msg) = warn(&v)
        {
            let warning = Diagnostic::warning(format!("`{}`: {msg}", attr.name), Some(loc.clone()));
            self.warnings.push(warning.group(format!("`{}`", attr.name)));
        }
        Some(v)
    }
}

fn coerce_type(v: Value, ty: &AttrType) -> Result<Value, String> {
    match (ty, v) {
        (_, v @ Value::Sensitive(_)) if matches!(ty, AttrType::String | AttrType::Sql) => Ok(v),
        (AttrType::String, v @ Value::Str(_))
        | (AttrType::Int, v @ Value::Int(_))
        | (AttrType::Bool, v @ Value::Bool(_)) => Ok(v),
        (AttrType::Map, v @ Value::Map(_)) => Ok(v),
        (AttrType::Sql, Value::Str(s)) => Ok(Value::Sql(s)),
        (AttrType::List(inner), Value::List(items)) => items
            .into_iter()
            .map(|i| coerce_type(i, inner).map_err(|found| format!("a list containing {found}")))
            .collect::<Result<_, _>>()
            .map(Value::List),
        (AttrType::Json, Value::Str(s)) => serde_json::from_str(&s)
            .map(|j| Value::Json(std::sync::Arc::new(j)))
            .map_err(|e| format!("a string that is not JSON ({e})")),
        (AttrType::Json, v @ (Value::Map(_) | Value::List(_))) => Ok(Value::Json(std::sync::Arc::new(v.to_json()))),
        (_, v) => Err(v.type_name().to_owned()),
    }
}

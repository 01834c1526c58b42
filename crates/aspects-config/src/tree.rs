//! TOML parsed into a tree that remembers where every key and value came from, and layered:
//! a later file's keys override an earlier file's, tables merge key by key.

use toml::de::{DeTable, DeValue};

use crate::source::{Diagnostic, Location};

#[derive(Clone, Debug)]
pub struct Node {
    pub value: NodeValue,
    pub loc: Location,
}

#[derive(Clone, Debug)]
pub enum NodeValue {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Floats and datetimes: kept only so the error can name them.
    Other(&'static str),
    Array(Vec<Node>),
    Table(Table),
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub key_loc: Location,
    pub node: Node,
}

impl NodeValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeValue::Str(_) => "a string",
            NodeValue::Int(_) => "an integer",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Other(t) => t,
            NodeValue::Array(_) => "a list",
            NodeValue::Table(_) => "a table",
        }
    }
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Layering: `other` wins key by key; nested tables merge.
    pub fn merge(&mut self, other: Table) {
        for entry in other.entries {
            match self.entries.iter_mut().find(|e| e.key == entry.key) {
                Some(existing) => match (&mut existing.node.value, entry.node.value) {
                    (NodeValue::Table(mine), NodeValue::Table(theirs)) => mine.merge(theirs),
                    (_, value) => {
                        existing.node = Node { value, loc: entry.node.loc };
                        existing.key_loc = entry.key_loc;
                    }
                },
                None => self.entries.push(entry),
            }
        }
    }
}

/// Parses one file. A syntax error is reported at its own position.
pub fn parse(file: usize, text: &str) -> Result<Table, Diagnostic> {
    match DeTable::parse(text) {
        Ok(doc) => {
            let span = doc.span();
            Ok(convert_table(file, doc.into_inner(), span))
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            Err(Diagnostic::new(format!("invalid TOML: {}", e.message().trim_end()), Some(Location { file, span }))
                .hint("see https://toml.io for the syntax; strings need double quotes"))
        }
    }
}

fn convert_table(file: usize, table: DeTable<'_>, _span: std::ops::Range<usize>) -> Table {
    Table {
        entries: table
            .into_iter()
            .map(|(k, v)| {
                let key_loc = Location { file, span: k.span() };
                Entry { key: k.into_inner().into_owned(), key_loc, node: convert(file, v) }
            })
            .collect(),
    }
}

fn convert(file: usize, v: toml::Spanned<DeValue<'_>>) -> Node {
    let span = v.span();
    let loc = Location { file, span: span.clone() };
    let value = match v.into_inner() {
        DeValue::String(s) => NodeValue::Str(s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => NodeValue::Int(n),
            Err(_) => NodeValue::Other("an integer out of range"),
        },
        DeValue::Float(_) => NodeValue::Other("a float"),
        DeValue::Boolean(b) => NodeValue::Bool(b),
        DeValue::Datetime(_) => NodeValue::Other("a datetime"),
        DeValue::Array(a) => NodeValue::Array(a.into_iter().map(|e| convert(file, e)).collect()),
        DeValue::Table(t) => NodeValue::Table(convert_table(file, t, span)),
    };
    Node { value, loc }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_override_and_tables_merge() {
        let mut base = parse(0, "[a]\nx = 1\ny = 2\n[b]\nz = 3\n").unwrap();
        base.merge(parse(1, "[a]\ny = 20\n").unwrap());
        let NodeValue::Table(a) = &base.get("a").unwrap().node.value else { panic!() };
        assert!(matches!(a.get("x").unwrap().node.value, NodeValue::Int(1)));
        let y = &a.get("y").unwrap().node;
        assert!(matches!(y.value, NodeValue::Int(20)));
        assert_eq!(y.loc.file, 1);
        assert!(base.get("b").is_some());
    }

    #[test]
    fn syntax_error_has_a_position() {
        let d = parse(0, "[a]\nx = \n").unwrap_err();
        assert!(d.location.is_some());
    }
}

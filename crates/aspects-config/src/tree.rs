//! TOML parsed into a tree that remembers where every key and value came from, and layered:
//! a later file's keys override an earlier file's, tables merge key by key.

use std::collections::HashMap;

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

    /// Layering: `other` wins key by key; nested tables merge. Keys are found through an index,
    /// so layering two files of thousands of resources stays linear.
    pub fn merge(&mut self, other: Table) {
        let mut index: HashMap<String, usize> =
            self.entries.iter().enumerate().map(|(i, e)| (e.key.clone(), i)).collect();
        for entry in other.entries {
            match index.get(&entry.key) {
                Some(&i) => {
                    let existing = &mut self.entries[i];
                    match (&mut existing.node.value, entry.node.value) {
                        (NodeValue::Table(mine), NodeValue::Table(theirs)) => mine.merge(theirs),
                        (_, value) => {
                            existing.node = Node { value, loc: entry.node.loc };
                            existing.key_loc = entry.key_loc;
                        }
                    }
                }
                None => {
                    index.insert(entry.key.clone(), self.entries.len());
                    self.entries.push(entry);
                }
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

/// Where byte `offset` of a string's decoded `value` sits in its raw TOML token `raw` (quotes
/// and escapes included), found by re-scanning the token: a column then points at what the user
/// wrote, whatever escapes, non-ASCII text or `"""` delimiters come before it.
pub fn raw_offset(raw: &str, value: &str, offset: usize) -> usize {
    let delimiter = ["\"\"\"", "'''", "\"", "'"].into_iter().find(|d| raw.starts_with(d));
    let Some(delimiter) = delimiter else {
        return offset.min(raw.len());
    };
    let basic = delimiter.starts_with('"');
    let multi_line = delimiter.len() == 3;
    let mut r = delimiter.len();
    // A newline right after the opening delimiter of a multi-line string is not part of it.
    if multi_line {
        r += ["\r\n", "\n"].into_iter().find(|nl| raw[r..].starts_with(nl)).map_or(0, str::len);
    }
    let mut v = 0;
    while v < offset && r < raw.len() {
        let rest = &raw[r..];
        if basic && let Some(escape) = rest.strip_prefix('\\') {
            let line_end = escape.trim_start_matches([' ', '\t']);
            if multi_line && (line_end.starts_with('\n') || line_end.starts_with("\r\n")) {
                // A line-ending backslash: it and all whitespace after it decode to nothing.
                let kept = escape.trim_start_matches([' ', '\t', '\r', '\n']);
                r = raw.len() - kept.len();
                continue;
            }
            let hex = match escape.as_bytes().first() {
                Some(b'u') => 4,
                Some(b'U') => 8,
                Some(b'x') => 2,
                _ => 0,
            };
            let code_point = escape.get(1..1 + hex).filter(|_| hex > 0).and_then(|d| u32::from_str_radix(d, 16).ok());
            match code_point {
                Some(c) => {
                    r += 2 + hex;
                    v += char::from_u32(c).map_or(1, char::len_utf8);
                }
                // `\n`, `\"` and the like (or one the parser refused: never split a character).
                None => {
                    r += 1 + escape.chars().next().map_or(0, char::len_utf8);
                    v += 1;
                }
            }
        } else if multi_line && rest.starts_with("\r\n") && value.as_bytes().get(v) == Some(&b'\n') {
            // The parser may have normalised the line break.
            r += 2;
            v += 1;
        } else {
            let len = rest.chars().next().map_or(1, char::len_utf8);
            r += len;
            v += len;
        }
    }
    r.min(raw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `k = <token>` and checks that every `@` of the decoded value maps onto an `@` in
    /// the raw token.
    fn check(token: &str) {
        let text = format!("k = {token}");
        let t = parse(0, &text).unwrap();
        let node = &t.get("k").unwrap().node;
        let NodeValue::Str(value) = &node.value else { panic!("{token}") };
        let raw = &text[node.loc.span.clone()];
        assert_eq!(raw, token);
        let ats: Vec<usize> = value.match_indices('@').map(|(i, _)| i).collect();
        assert!(!ats.is_empty(), "{token}");
        for at in ats {
            let r = raw_offset(raw, value, at);
            assert_eq!(&raw[r..r + 1], "@", "{token}: value offset {at} -> raw {r}");
        }
    }

    #[test]
    fn raw_offsets_follow_escapes_unicode_and_delimiters() {
        check(r#""@""#);
        check(r#""a\"b\\c\td@""#);
        check(r#""\u00e9\U0001F600é@x@""#);
        check("'C:\\é@'");
        check("\"\"\"\nline one\n  ünï @\"\"\"");
        check("\"\"\"\r\nx\r\n@\"\"\"");
        check("\"\"\"a \\\n\n    b\\n@\"\"\"");
        check("'''\nraw \\n @'''");
    }

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

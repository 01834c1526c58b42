//! Building the desired DDL and taking apart the server's canonical form of it. The server
//! formats both sides (`formatQuerySingleLine` for the desired statement, `create_table_query`
//! for the live table), so the parts compared here are the server's own spelling; this module only
//! cuts them at top-level clause keywords and commas (outside quotes and brackets).

use std::collections::BTreeMap;

use aspects_core::Value;

use crate::client::{ident, literal};
use crate::schema::{CLAUSES, str_attr, str_list};

/// `CREATE TABLE` for a `clickhouse_table` resource, as written (the server canonicalises it).
pub fn create_table(a: &BTreeMap<String, Value>, on_cluster: &str) -> String {
    let mut sql = format!(
        "CREATE TABLE {}.{}{on_cluster} ({}) ENGINE = {}",
        ident(str_attr(a, "database")),
        ident(str_attr(a, "name")),
        str_list(a.get("columns")).join(", "),
        str_attr(a, "engine")
    );
    for (attr, keyword) in CLAUSES {
        if let Some(text) = a.get(*attr).and_then(Value::as_str) {
            sql += &format!(" {keyword} {text}");
        }
    }
    if let Some(Value::Map(settings)) = a.get("settings")
        && !settings.is_empty()
    {
        let list: Vec<String> = settings.iter().map(|(k, v)| format!("{k} = {}", setting_value(v))).collect();
        sql += &format!(" SETTINGS {}", list.join(", "));
    }
    sql
}

fn setting_value(v: &Value) -> String {
    match v {
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => literal(other.as_str().unwrap_or_default()),
    }
}

/// A canonical `CREATE TABLE` cut into what the plan compares.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Column definitions (and INDEX / PROJECTION / CONSTRAINT elements), one per entry.
    pub columns: Vec<String>,
    pub engine: String,
    /// `partition_by`, `primary_key`, `order_by`, `ttl` -> text, when present.
    pub clauses: BTreeMap<&'static str, String>,
    /// Setting name -> canonical value text.
    pub settings: BTreeMap<String, String>,
    /// Clauses this provider does not manage (SAMPLE BY, COMMENT ...), as text.
    pub other: Vec<String>,
}

/// The keywords that start a storage clause, as the formatter prints them.
const KEYWORDS: &[&str] = &["PARTITION BY", "PRIMARY KEY", "ORDER BY", "SAMPLE BY", "TTL", "SETTINGS", "COMMENT"];

/// Cuts `CREATE TABLE name [ON CLUSTER c] (columns) ENGINE = e [clauses]` apart; `None` when the
/// text does not have that shape (a view, a table without columns).
pub fn parse_table(text: &str) -> Option<Table> {
    let open = top_level(text).find(|(_, c, depth)| *c == '(' && *depth == 0)?.0;
    let close = top_level(text).find(|(i, c, depth)| *i > open && *c == ')' && *depth == 1)?.0;
    let columns = split_commas(&text[open + 1..close]);
    let rest = text[close + 1..].trim_start().strip_prefix("ENGINE = ")?;
    let mut cuts: Vec<(usize, &str)> = Vec::new();
    for (i, _, depth) in top_level(rest) {
        if depth != 0 || !rest[..i].ends_with(' ') {
            continue;
        }
        if let Some(k) = KEYWORDS.iter().find(|k| rest[i..].starts_with(&format!("{k} "))) {
            cuts.push((i, k));
        }
    }
    let engine_end = cuts.first().map_or(rest.len(), |c| c.0);
    let mut table = Table { columns, engine: rest[..engine_end].trim().to_owned(), ..Table::default() };
    for (n, (start, keyword)) in cuts.iter().enumerate() {
        let end = cuts.get(n + 1).map_or(rest.len(), |c| c.0);
        let body = rest[start + keyword.len()..end].trim().to_owned();
        match CLAUSES.iter().find(|(_, k)| k == keyword) {
            Some((attr, _)) => {
                table.clauses.insert(attr, body);
            }
            None if *keyword == "SETTINGS" => {
                for s in split_commas(&body) {
                    let (k, v) = s.split_once(" = ")?;
                    table.settings.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
            None => table.other.push(format!("{keyword} {body}")),
        }
    }
    Some(table)
}

/// The name a column definition starts with (backticks removed), or `None` for an INDEX,
/// PROJECTION or CONSTRAINT element.
pub fn column_name(def: &str) -> Option<String> {
    let def = def.trim();
    if ["INDEX ", "PROJECTION ", "CONSTRAINT "].iter().any(|k| def.starts_with(k)) {
        return None;
    }
    if let Some(rest) = def.strip_prefix('`') {
        let mut name = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => name.extend(chars.next()),
                '`' => return Some(name),
                c => name.push(c),
            }
        }
        return None;
    }
    def.split_whitespace().next().map(str::to_owned)
}

/// What follows the first top-level ` AS ` (a function's lambda after `CREATE FUNCTION name AS`).
pub fn after_as(text: &str) -> Option<&str> {
    top_level(text).find(|(i, _, depth)| *depth == 0 && text[*i..].starts_with(" AS ")).map(|(i, _, _)| &text[i + 4..])
}

/// Characters outside quotes with their bracket depth (before the character for an opening
/// bracket, after it for a closing one, so a matching pair reports the same depth + 1 / depth).
fn top_level(text: &str) -> impl Iterator<Item = (usize, char, usize)> + '_ {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    text.char_indices().filter_map(move |(i, c)| {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            return None;
        }
        match c {
            '\'' | '`' | '"' => {
                quote = Some(c);
                None
            }
            '(' | '[' => {
                depth += 1;
                Some((i, c, depth - 1))
            }
            ')' | ']' => {
                let d = depth;
                depth = depth.saturating_sub(1);
                Some((i, c, d))
            }
            c => Some((i, c, depth)),
        }
    })
}

/// Splits at commas outside quotes and brackets.
fn split_commas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c, depth) in top_level(text) {
        if c == ',' && depth == 0 {
            out.push(text[start..i].trim().to_owned());
            start = i + 1;
        }
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        out.push(last.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_create_table_comes_apart() {
        let text = "CREATE TABLE x.`e(1)` (`event_id` UUID, `emission_time` DateTime64(6), `n` UInt8 DEFAULT 1 \
                    COMMENT 'c, (x' CODEC(ZSTD(1)), INDEX i n TYPE minmax GRANULARITY 1) ENGINE = ReplacingMergeTree(dt) \
                    PARTITION BY toYYYYMM(emission_time) ORDER BY (emission_time, event_id) TTL toDateTime(emission_time) \
                    + toIntervalYear(1) SETTINGS index_granularity = 4096, storage_policy = 'a, b' COMMENT 'ORDER BY x'";
        let t = parse_table(text).unwrap();
        assert_eq!(t.columns.len(), 4);
        assert_eq!(t.columns[2], "`n` UInt8 DEFAULT 1 COMMENT 'c, (x' CODEC(ZSTD(1))");
        assert_eq!(t.engine, "ReplacingMergeTree(dt)");
        assert_eq!(t.clauses["partition_by"], "toYYYYMM(emission_time)");
        assert_eq!(t.clauses["order_by"], "(emission_time, event_id)");
        assert_eq!(t.clauses["ttl"], "toDateTime(emission_time) + toIntervalYear(1)");
        assert_eq!(t.settings["storage_policy"], "'a, b'");
        assert_eq!(t.other, ["COMMENT 'ORDER BY x'"]);
        assert_eq!(column_name(&t.columns[0]).as_deref(), Some("event_id"));
        assert_eq!(column_name("`a\\`b` String").as_deref(), Some("a`b"));
        assert_eq!(column_name(&t.columns[3]), None);
        assert_eq!(parse_table("CREATE VIEW v AS SELECT 1"), None);
        assert_eq!(after_as("CREATE FUNCTION `a AS b` AS x -> x"), Some("x -> x"));
    }

    #[test]
    fn the_desired_statement_is_built_in_clause_order() {
        let a: BTreeMap<String, Value> = [
            ("database", Value::from("d")),
            ("name", Value::from("t`")),
            ("columns", Value::List(vec!["a UInt8".into(), "b String".into()])),
            ("engine", Value::from("MergeTree")),
            ("order_by", Value::from("a")),
            ("partition_by", Value::from("b")),
            ("settings", Value::Map([("index_granularity".to_owned(), Value::Int(1024))].into())),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
        insta::assert_snapshot!(create_table(&a, " ON CLUSTER `c`"), @"CREATE TABLE `d`.`t\\`` ON CLUSTER `c` (a UInt8, b String) ENGINE = MergeTree PARTITION BY b ORDER BY a SETTINGS index_granularity = 1024");
    }
}

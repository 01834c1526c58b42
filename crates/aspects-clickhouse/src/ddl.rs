//! Every DDL statement this provider sends, as pure functions of the desired attributes, and the
//! taking apart of the server's canonical form of a table. The server formats both sides
//! (`formatQuerySingleLine` for the desired statement, `create_table_query` for the live table),
//! so the parts compared here are the server's own spelling; this module only cuts them at
//! top-level clause keywords and commas (outside quotes and brackets).
//!
//! Cluster mode (`on_cluster` is ` ON CLUSTER `c``, from [`on_cluster`]): every statement carries
//! the clause, and MergeTree-family engines become `Replicated*` without arguments, as Aspects'
//! migrations write them (the server fills in its `default_replica_path` and
//! `default_replica_name`). Public so that tests/ can check every statement with the real parser.

use std::collections::BTreeMap;

use aspects_core::Value;

use crate::client::{ident, literal};
use crate::schema::{CLAUSES, str_attr, str_list};

/// ` ON CLUSTER `c`` for a cluster, else nothing.
pub fn on_cluster(cluster: Option<&str>) -> String {
    cluster.map(|c| format!(" ON CLUSTER {}", ident(c))).unwrap_or_default()
}

/// The engine a table is created with: in cluster mode a MergeTree-family engine becomes its
/// `Replicated*` form, its own arguments kept (`ReplacingMergeTree(dt)` ->
/// `ReplicatedReplacingMergeTree(dt)`); other engines, and ones already replicated, as written.
pub fn engine_for(engine: &str, on_cluster: &str) -> String {
    let name = engine_name(engine);
    let family = name.ends_with("MergeTree") && !name.starts_with("Replicated") && !name.starts_with("Shared");
    if on_cluster.is_empty() || !family { engine.to_owned() } else { format!("Replicated{engine}") }
}

/// A `Replicated*` engine without its ZooKeeper path and replica name. The server writes its
/// defaults into the stored definition (`'/clickhouse/tables/{uuid}/{shard}', '{replica}'`);
/// where replicas keep their data is the server's configuration, not the plan's, so both sides
/// are compared without them.
pub fn without_replica_args(engine: &str) -> String {
    let name = engine_name(engine);
    let inner = engine[name.len()..].trim().strip_prefix('(').and_then(|r| r.strip_suffix(')'));
    let (true, Some(inner)) = (name.starts_with("Replicated"), inner) else { return engine.to_owned() };
    let args = split_commas(inner);
    if args.len() < 2 || !args[..2].iter().all(|a| a.starts_with('\'')) {
        return engine.to_owned();
    }
    if args.len() == 2 { name.to_owned() } else { format!("{name}({})", args[2..].join(", ")) }
}

fn engine_name(engine: &str) -> &str {
    engine.split('(').next().unwrap_or_default().trim()
}

pub fn create_database(name: &str, engine: &str, on_cluster: &str) -> String {
    format!("CREATE DATABASE {}{on_cluster} ENGINE = {engine}", ident(name))
}

pub fn drop_database(name: &str, on_cluster: &str) -> String {
    format!("DROP DATABASE IF EXISTS {}{on_cluster} SYNC", ident(name))
}

/// `CREATE TABLE` for a `clickhouse_table` resource, as written (the server canonicalises it).
pub fn create_table(a: &BTreeMap<String, Value>, on_cluster: &str) -> String {
    let mut sql = format!(
        "CREATE TABLE {}.{}{on_cluster} ({}) ENGINE = {}",
        ident(str_attr(a, "database")),
        ident(str_attr(a, "name")),
        str_list(a.get("columns")).join(", "),
        engine_for(str_attr(a, "engine"), on_cluster)
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

/// One in-place change (`ADD COLUMN ...`, `MODIFY TTL ...`) of a table.
pub fn alter_table(database: &str, name: &str, on_cluster: &str, change: &str) -> String {
    format!("ALTER TABLE {}.{}{on_cluster} {change}", ident(database), ident(name))
}

pub fn drop_table(database: &str, name: &str, on_cluster: &str) -> String {
    format!("DROP TABLE IF EXISTS {}.{}{on_cluster} SYNC", ident(database), ident(name))
}

/// `CREATE FUNCTION` for a `clickhouse_function` resource.
pub fn create_function(a: &BTreeMap<String, Value>, on_cluster: &str, replace: bool) -> String {
    let or_replace = if replace { " OR REPLACE" } else { "" };
    format!("CREATE{or_replace} FUNCTION {}{on_cluster} AS {}", ident(str_attr(a, "name")), str_attr(a, "lambda"))
}

pub fn drop_function(name: &str, on_cluster: &str) -> String {
    format!("DROP FUNCTION IF EXISTS {}{on_cluster}", ident(name))
}

/// The meta database and its records table: on every node in cluster mode, the records
/// replicated, so any node can serve as the DDL node of a later run.
pub fn meta_database(meta: &str, on_cluster: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {}{on_cluster}", ident(meta))
}

pub fn owned_table(meta: &str, on_cluster: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{}{on_cluster} (\
         kind String, ident_key String, deployment String, address String, identity String, state String, \
         applied String, version UInt64, deleted UInt8) \
         ENGINE = {} ORDER BY (kind, ident_key) \
         COMMENT 'objects owned by aspects deployments: the row with the highest version per object counts'",
        ident(meta),
        ident("owned"),
        engine_for("ReplacingMergeTree(version, deleted)", on_cluster)
    )
}

/// A lock generation table. Never ON CLUSTER: the lock is one node's atomic CREATE (the DDL node
/// every run talks to), and a distributed DDL would report a lost race per host, not once.
pub fn lock_generation(meta: &str, table: &str, holder: &str) -> String {
    format!(
        "CREATE TABLE {}.{} (expires DateTime64(3), released UInt8) ENGINE = MergeTree ORDER BY expires COMMENT {}",
        ident(meta),
        ident(table),
        literal(holder)
    )
}

pub fn drop_lock_generation(meta: &str, table: &str) -> String {
    format!("DROP TABLE IF EXISTS {}.{}", ident(meta), ident(table))
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
        insta::assert_snapshot!(create_table(&a, " ON CLUSTER `c`"), @"CREATE TABLE `d`.`t\\`` ON CLUSTER `c` (a UInt8, b String) ENGINE = ReplicatedMergeTree PARTITION BY b ORDER BY a SETTINGS index_granularity = 1024");
    }

    #[test]
    fn engines_become_replicated_and_compare_without_the_servers_replica_arguments() {
        let on = on_cluster(Some("c"));
        for (plan, cluster) in [
            ("MergeTree", "ReplicatedMergeTree"),
            ("ReplacingMergeTree(dt)", "ReplicatedReplacingMergeTree(dt)"),
            ("ReplicatedMergeTree", "ReplicatedMergeTree"),
            ("SharedMergeTree", "SharedMergeTree"),
            ("Memory", "Memory"),
            ("Log", "Log"),
        ] {
            assert_eq!(engine_for(plan, &on), cluster);
            assert_eq!(engine_for(plan, ""), plan, "one node: as written");
        }
        // What the server stores for `ReplicatedReplacingMergeTree(dt)` with its default path and name.
        let stored = "ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', dt)";
        assert_eq!(without_replica_args(stored), "ReplicatedReplacingMergeTree(dt)");
        assert_eq!(
            without_replica_args("ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')"),
            "ReplicatedMergeTree"
        );
        assert_eq!(without_replica_args("ReplacingMergeTree(dt)"), "ReplacingMergeTree(dt)");
    }
}

//! The `clickhouse` system as plan files see it: the `[providers.clickhouse]` block and the kinds,
//! with the load-time checks that keep names from ever reaching the server malformed. SQL the
//! operator writes (column definitions, expressions, lambdas, extra statements) is judged by the
//! server's own parser at plan time, before any write (see `read.rs`).

use std::collections::BTreeMap;

use aspects_core::schema::{check_max_concurrency, invisible, lock_lease_attr};
use aspects_core::{AttrSchema, AttrType, KindSchema, SystemSchema, Value, identity_string};

pub const SYSTEM: &str = "clickhouse";
pub const DATABASE: &str = "clickhouse_database";
pub const TABLE: &str = "clickhouse_table";
pub const FUNCTION: &str = "clickhouse_function";
pub const SQL: &str = "clickhouse_sql";
pub const USER: &str = "clickhouse_user";
pub const ROLE: &str = "clickhouse_role";
pub const GRANT: &str = "clickhouse_grant";

pub const DEFAULT_META_DATABASE: &str = "aspects_meta";
pub const DEFAULT_MAX_CONCURRENCY: i64 = 4;
pub const DEFAULT_LOCK_LEASE: i64 = 30;

/// The table attributes that live in the engine clause, in the order ClickHouse prints them.
pub const CLAUSES: &[(&str, &str)] =
    &[("partition_by", "PARTITION BY"), ("primary_key", "PRIMARY KEY"), ("order_by", "ORDER BY"), ("ttl", "TTL")];

pub fn schema() -> SystemSchema {
    SystemSchema {
        system: SYSTEM,
        provider_attrs: vec![
            AttrSchema::new(
                "url",
                AttrType::String,
                "HTTP(S) endpoint without credentials, e.g. `http://127.0.0.1:8123`.",
            )
            .required()
            .check(check_url),
            AttrSchema::new("user", AttrType::String, "The user aspects logs in as.")
                .default("default")
                .check(check_name),
            AttrSchema {
                sensitive: true,
                ..AttrSchema::new("password", AttrType::String, "That user's password, from `[secrets]`.")
            },
            AttrSchema::new(
                "cluster",
                AttrType::String,
                "Cluster name: every DDL statement is sent `ON CLUSTER` it (Tutor's CLICKHOUSE_CLUSTER_NAME).",
            )
            .check(check_name),
            AttrSchema::new("max_concurrency", AttrType::Int, "Statements this provider runs at once during apply.")
                .default(DEFAULT_MAX_CONCURRENCY)
                .check(check_max_concurrency),
            AttrSchema::new(
                "meta_database",
                AttrType::String,
                "Database holding this tool's ownership records and lock (shared by every deployment on the server).",
            )
            .default(DEFAULT_META_DATABASE)
            .check(check_name),
            lock_lease_attr(DEFAULT_LOCK_LEASE),
        ],
        kinds: vec![
            database_kind(),
            table_kind(),
            function_kind(),
            user_kind(),
            sql_kind(),
            crate::grant::role_kind(),
            crate::grant::grant_kind(),
        ],
    }
}

fn database_kind() -> KindSchema {
    KindSchema {
        kind: DATABASE,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "Database name.").identity().check(check_name),
            AttrSchema::new("engine", AttrType::String, "Database engine (a name without arguments).")
                .default("Atomic")
                .forces_replace()
                .check(check_engine_name),
        ],
        data_bearing: true,
        rank: 0,
        doc: "A database. Dropping it destroys its tables, so deletes need --allow-destroy.",
        identity_key: Some(|a| key(DATABASE, a)),
        check: None,
    }
}

fn table_kind() -> KindSchema {
    let clause = |name: &'static str, doc: &'static str| AttrSchema::new(name, AttrType::String, doc).check(check_sql);
    KindSchema {
        kind: TABLE,
        attrs: vec![
            AttrSchema::new("database", AttrType::String, "The database the table is in.").identity().check(check_name),
            AttrSchema::new("name", AttrType::String, "Table name.").identity().check(check_name),
            AttrSchema::new(
                "columns",
                AttrType::List(Box::new(AttrType::String)),
                "Column definitions as in CREATE TABLE, e.g. \"emission_time DateTime64(6)\". New ones are added and \
                 changed ones modified in place; removing one is refused (it would lose its data).",
            )
            .required()
            .check(check_columns),
            AttrSchema::new(
                "engine",
                AttrType::String,
                "Table engine with its arguments, e.g. `ReplacingMergeTree(dt)`.",
            )
            .default("MergeTree")
            .forces_replace()
            .check(check_sql),
            clause("partition_by", "PARTITION BY expression.").forces_replace(),
            clause("primary_key", "PRIMARY KEY expression.").forces_replace(),
            clause("order_by", "ORDER BY expression, e.g. `(emission_time, event_id)`.").forces_replace(),
            clause("ttl", "TTL expression; changed in place (MODIFY TTL / REMOVE TTL)."),
            AttrSchema::new("settings", AttrType::Map, "Table settings; changed in place (MODIFY / RESET SETTING).")
                .check(check_settings),
        ],
        data_bearing: true,
        rank: 1,
        doc: "A table, compared clause by clause in the server's canonical form. Replacing it (engine or key \
              changes) drops its data, so it needs --allow-destroy.",
        identity_key: Some(|a| key(TABLE, a)),
        check: None,
    }
}

fn function_kind() -> KindSchema {
    KindSchema {
        kind: FUNCTION,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "Function name.").identity().check(check_name),
            AttrSchema::new(
                "lambda",
                AttrType::Sql,
                "The definition after AS, e.g. `(course_url) -> nullIf(extract(course_url, '...'), '')`.",
            )
            .required()
            .check(check_sql),
        ],
        data_bearing: false,
        rank: 1,
        doc: "A SQL user-defined function (CREATE FUNCTION name AS lambda), compared in the server's canonical form.",
        identity_key: Some(|a| key(FUNCTION, a)),
        check: None,
    }
}

fn user_kind() -> KindSchema {
    KindSchema {
        kind: USER,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "User name.").identity().check(check_name),
            AttrSchema::new(
                "password",
                AttrType::String,
                "The user's password, from `[secrets]`: set as `sha256_hash ... SALT ...` computed here (no \
                 plaintext on the wire), verified by logging in over HTTP.",
            )
            .write_only_secret()
            .required(),
        ],
        data_bearing: false,
        rank: 1,
        doc: "A SQL user with a sha256 password.",
        identity_key: Some(|a| key(USER, a)),
        check: None,
    }
}

fn sql_kind() -> KindSchema {
    KindSchema {
        kind: SQL,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "A label for this piece of SQL.").identity().check(check_name),
            AttrSchema::new(
                "statements",
                AttrType::List(Box::new(AttrType::Sql)),
                "Statements run in order, one statement each (Tutor's clickhouse-extra-sql); run again whenever any \
                 text changes. Make them idempotent (IF NOT EXISTS, OR REPLACE).",
            )
            .required()
            .check(check_statements),
        ],
        data_bearing: false,
        rank: 2,
        doc: "Operator-supplied SQL, re-applied when its text changes. Removing it undoes nothing.",
        identity_key: Some(|a| key(SQL, a)),
        check: None,
    }
}

/// The identity attributes of a resource: the key ownership records and live reads use.
pub fn identity(kind: &str, attrs: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    if kind == GRANT {
        return crate::grant::identity(attrs);
    }
    let names: &[&str] = if kind == TABLE { &["database", "name"] } else { &["name"] };
    names.iter().map(|n| ((*n).to_owned(), Value::Str(str_attr(attrs, n).to_owned()))).collect()
}

pub(crate) fn key(kind: &str, attrs: &BTreeMap<String, Value>) -> String {
    identity_string(identity(kind, attrs).iter().map(|(k, v)| (k.as_str(), v)))
}

pub use aspects_core::value::{str_attr, str_list};

pub(crate) fn string(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| format!("expected a string, found {}", v.type_name()))
}

/// Names are quoted wherever they reach SQL, so quotes and backticks are harmless; what is
/// refused is what cannot be a sane file name on the server (ClickHouse keeps one directory per
/// database and table) or reads as another name: control and invisible characters, a leading
/// dot, `/`, and lengths the file system cannot hold once escaped.
pub(crate) fn check_name(v: &Value) -> Result<(), String> {
    let name = string(v)?;
    if name.is_empty() || name.len() > 128 {
        return Err(format!("the name {name:?} must be 1 to 128 bytes long"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || invisible(*c)) {
        return Err(format!(
            "the name {name:?} contains U+{:04X} (a control or invisible character); remove it",
            u32::from(c)
        ));
    }
    if name.starts_with('.') || name.contains('/') {
        return Err(format!("the name {name:?} starts with `.` or contains `/`, which ClickHouse cannot store"));
    }
    Ok(())
}

/// SQL fragments are judged by the server's parser at plan time; here only what no fragment
/// needs: control characters other than whitespace (a NUL ends the text on the server).
fn check_sql(v: &Value) -> Result<(), String> {
    let text = string(v)?;
    if text.trim().is_empty() {
        return Err("the SQL text is empty".into());
    }
    match text.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) {
        Some(c) => Err(format!("the SQL text contains the control character U+{:04X}; remove it", u32::from(c))),
        None => Ok(()),
    }
}

fn check_list(v: &Value, what: &str) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of {what}, found {}", v.type_name()))?;
    if list.is_empty() {
        return Err(format!("the list is empty; give at least one of the {what}"));
    }
    list.iter().try_for_each(check_sql)
}

fn check_columns(v: &Value) -> Result<(), String> {
    check_list(v, "column definitions")
}

fn check_statements(v: &Value) -> Result<(), String> {
    check_list(v, "statements")
}

fn check_engine_name(v: &Value) -> Result<(), String> {
    let name = string(v)?;
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err(format!("{name:?} is not a database engine name (e.g. Atomic, Replicated)")) }
}

fn check_settings(v: &Value) -> Result<(), String> {
    let Value::Map(map) = v else { return Err(format!("expected a table of settings, found {}", v.type_name())) };
    for (name, value) in map {
        let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!("{name:?} is not a setting name (letters, digits and `_`)"));
        }
        match value {
            Value::Int(_) | Value::Bool(_) => {}
            Value::Str(s) if !s.chars().any(char::is_control) => {}
            other => {
                return Err(format!(
                    "setting {name}: expected a number, boolean or string, found {}",
                    other.type_name()
                ));
            }
        }
    }
    Ok(())
}

/// Query parameters that would carry credentials (compared case-insensitively).
const CREDENTIAL_PARAMS: &[&str] = &["password", "pass", "pwd", "passwd", "key", "user"];

/// `http(s)://HOST[:PORT][/]`, with no user, password or credential parameter in any spelling.
/// The error never quotes the URL.
fn check_url(v: &Value) -> Result<(), String> {
    let text = string(v)?;
    let form = "write it as `http://HOST:8123` (or https://HOST:8443), with `user` and `password` beside it";
    let url = url::Url::parse(text).map_err(|e| format!("cannot read the URL: {e}; {form}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("this is not a ClickHouse HTTP URL; {form}"));
    }
    let authority = text.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if !url.username().is_empty() || url.password().is_some() || authority.contains('@') {
        return Err(format!(
            "the URL contains credentials: put the user in `user` and the password in `password = \"${{secrets.NAME}}\"`, \
             never in the URL; {form}"
        ));
    }
    if url.query_pairs().any(|(k, _)| CREDENTIAL_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p))) {
        return Err(format!("the URL contains credentials in its query; {form}"));
    }
    if url.host_str().is_none_or(str::is_empty) || !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(format!("the URL must be only scheme, host and port; {form}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, attr: &str, v: impl Into<Value>) -> Result<(), String> {
        schema().check_attr(kind, attr, &v.into())
    }

    #[test]
    fn urls_carry_no_credentials() {
        assert_eq!(check("provider", "url", "http://127.0.0.1:8123"), Ok(()));
        assert_eq!(check("provider", "url", "https://ch.example:8443/"), Ok(()));
        for bad in [
            "http://admin:hunter2@h:8123",
            "http://admin@h:8123",
            "http://admin%3Ahunter2@h:8123",
            "http://h:8123/?password=hunter2",
            "http://h:8123/?KEY=hunter2",
        ] {
            let err = check("provider", "url", bad).unwrap_err();
            assert!(err.contains("credentials"), "{bad}: {err}");
            assert!(!err.contains("hunter2"), "{bad}: {err}");
        }
        assert!(check("provider", "url", "mysql://h").unwrap_err().contains("not a ClickHouse HTTP URL"));
        assert!(check("provider", "url", "http://h:8123/db").unwrap_err().contains("only scheme, host and port"));
    }

    #[test]
    fn hostile_names_are_refused_quotes_are_not() {
        assert_eq!(check(DATABASE, "name", "we`ird 'db'; DROP DATABASE x"), Ok(()));
        for bad in ["", "a\0b", "a\nb", "ad\u{202e}min", "x\u{200b}", ".hidden", "a/b", &"x".repeat(129)] {
            assert!(check(TABLE, "name", bad).is_err(), "{bad:?}");
        }
        assert!(check(DATABASE, "engine", "Atomic COMMENT 'x'").is_err());
        assert!(check(TABLE, "order_by", "a\0").is_err());
        assert!(check(TABLE, "columns", Value::List(vec![])).unwrap_err().contains("empty"));
        let settings = |k: &str, v: Value| Value::Map([(k.to_owned(), v)].into());
        assert_eq!(check(TABLE, "settings", settings("index_granularity", Value::Int(8192))), Ok(()));
        assert!(check(TABLE, "settings", settings("a = 1, b", Value::Int(1))).is_err());
        assert!(check(TABLE, "settings", settings("a", Value::List(vec![]))).is_err());
    }

    #[test]
    fn identities() {
        let attrs: BTreeMap<String, Value> =
            [("database", "d"), ("name", "t"), ("engine", "x")].map(|(k, v)| (k.to_owned(), Value::from(v))).into();
        assert_eq!(identity(TABLE, &attrs).len(), 2);
        assert_eq!(identity(DATABASE, &attrs).len(), 1);
    }
}

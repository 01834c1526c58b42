//! The `mysql` system as plan files see it: the `[providers.mysql]` block and the three kinds, with
//! the load-time checks that keep names and grant syntax from ever reaching the server malformed.

use std::collections::BTreeMap;

use aspects_core::{AttrSchema, AttrType, AttrsError, KindSchema, SystemSchema, Value, identity_string};

use crate::password;
use crate::privileges;
use crate::sql::On;

pub const SYSTEM: &str = "mysql";
pub const DATABASE: &str = "mysql_database";
pub const USER: &str = "mysql_user";
pub const GRANT: &str = "mysql_grant";
/// The `mysql_user` attribute the provider reads `true` while an old password still logs in.
pub const OLD_PASSWORD_ACCEPTED: &str = "old_password_accepted";

pub const DEFAULT_META_DATABASE: &str = "aspects_meta";

/// The system schema: provider attributes and kinds, in dependency order.
pub fn schema() -> SystemSchema {
    SystemSchema {
        system: SYSTEM,
        provider_attrs: aspects_sql::names::provider_attrs(
            "Server address without a password, e.g. `mysql://root@127.0.0.1:3306`.",
            check_url,
            DEFAULT_META_DATABASE,
        ),
        kinds: vec![database_kind(), user_kind(), grant_kind()],
    }
}

fn database_kind() -> KindSchema {
    KindSchema {
        kind: DATABASE,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "Database name.").identity().check(check_db_name),
            AttrSchema::new("charset", AttrType::String, "Default character set.")
                .default("utf8mb4")
                .check(check_charset),
            AttrSchema::new(
                "collation",
                AttrType::String,
                "Default collation; when absent, the server's default for `charset`.",
            )
            .check(check_charset),
        ],
        data_bearing: true,
        rank: 0,
        doc: "A database (schema). Dropping it destroys its tables, so deletes need --allow-destroy.",
        identity_key: Some(database_key),
        check: None,
    }
}

fn user_kind() -> KindSchema {
    KindSchema {
        kind: USER,
        attrs: vec![
            AttrSchema::new("user", AttrType::String, "User name.").identity().check(check_user),
            AttrSchema::new("host", AttrType::String, "Host pattern the user may connect from.")
                .identity()
                .default("%")
                .check(check_host),
            AttrSchema::new(
                "password",
                AttrType::String,
                "The user's password, from `[secrets]`; verified, never read.",
            )
            .write_only_secret()
            .required(),
            AttrSchema::new(
                "plugin",
                AttrType::String,
                "Authentication plugin: `mysql_native_password` (the default on MariaDB), `ed25519` (MariaDB) or \
                 `caching_sha2_password` (MySQL 8, its default there). An account found on another plugin shows the \
                 change in the plan.",
            )
            .check(check_plugin),
            AttrSchema::new(
                OLD_PASSWORD_ACCEPTED,
                AttrType::Bool,
                "Whether a retained old password still logs in (MySQL 8.0.14+ keeps one after `RETAIN CURRENT \
                 PASSWORD`). Always false in a plan: a live `true` is drift, and apply discards the old password; \
                 `aspects rotate` keeps one only until every consumer has the new one.",
            )
            .check(check_no_old_password),
        ],
        data_bearing: false,
        rank: 1,
        doc: "An account `'user'@'host'`.",
        identity_key: Some(user_key),
        check: None,
    }
}

fn grant_kind() -> KindSchema {
    KindSchema {
        kind: GRANT,
        attrs: vec![
            AttrSchema::new("user", AttrType::String, "Grantee user name.").identity().check(check_user),
            AttrSchema::new("host", AttrType::String, "Grantee host pattern.")
                .identity()
                .default("%")
                .check(check_host),
            AttrSchema {
                required: false,
                ..AttrSchema::new(
                    "on",
                    AttrType::String,
                    "`*.*`, `db.*` or `db.table` as in GRANT: `_` and `%` in the `db` of `db.*` are wildcards. \
                     Or name the target with `database` (and `table`).",
                )
                .identity()
                .check(check_on)
                .warn(warn_on_pattern)
            },
            AttrSchema::new(
                "database",
                AttrType::String,
                "The one database granted on, taken literally (`my_db` means exactly `my_db`); instead of `on`.",
            )
            .check(check_db_name),
            AttrSchema::new("table", AttrType::String, "A table in `database`, taken literally: a table-level grant.")
                .check(check_table_name),
            AttrSchema::new(
                "privileges",
                AttrType::List(Box::new(AttrType::String)),
                "Exactly the privileges held on `on`: missing ones are granted, others revoked.",
            )
            .required()
            .check(check_privileges),
        ],
        data_bearing: false,
        rank: 2,
        doc: "The privileges of one account on one target, converged exactly.",
        identity_key: Some(grant_key),
        check: Some(check_grant_target),
    }
}

/// The identity attributes of a resource in canonical form (host lowercased as the server stores
/// it, `on` respelled): the key ownership records and live reads are matched by.
pub fn identity(kind: &str, attrs: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let s = |k: &str| str_attr(attrs, k).to_owned();
    let mut id = BTreeMap::new();
    match kind {
        DATABASE => {
            id.insert("name".to_owned(), Value::Str(s("name")));
        }
        USER | GRANT => {
            id.insert("user".to_owned(), Value::Str(s("user")));
            id.insert("host".to_owned(), Value::Str(canonical_host(&s("host"))));
            if kind == GRANT {
                let on = target(attrs).map(|o| o.to_string()).unwrap_or_else(|_| s("on"));
                id.insert("on".to_owned(), Value::Str(on));
            }
        }
        _ => {}
    }
    id
}

/// A grant's target however it is written: `on` as it stands, or `database` with its `_`, `%`
/// and `\\` escaped (so a database-level grant means exactly that database), or `database` and
/// `table`, which a table-level grant takes literally.
pub fn target(attrs: &BTreeMap<String, Value>) -> Result<On, String> {
    let Some(db) = attrs.get("database").and_then(Value::as_str) else {
        return On::parse(str_attr(attrs, "on"));
    };
    Ok(match attrs.get("table").and_then(Value::as_str) {
        Some(table) => On::Table(db.to_owned(), table.to_owned()),
        None => On::Database(db.chars().fold(String::new(), |mut out, c| {
            if matches!(c, '_' | '%' | '\\') {
                out.push('\\');
            }
            out.push(c);
            out
        })),
    })
}

/// Exactly one of `on` and `database` names the target; `table` only with `database`.
fn check_grant_target(attrs: &BTreeMap<String, Value>) -> Result<(), AttrsError> {
    let has = |k: &str| attrs.contains_key(k);
    let forms = "write `database = \"NAME\"` for one database (with `table = \"NAME\"` for one of its tables), \
                 or `on = \"*.*\"` for every database";
    let (attr, message) = match (has("on"), has("database"), has("table")) {
        (true, false, false) | (false, true, _) => return Ok(()),
        (true, true, _) => (Some("database"), "sets both `on` and `database`; the target is named once".to_owned()),
        (true, false, true) => (Some("table"), "sets `table` beside `on`; `table` goes with `database`".to_owned()),
        (false, false, true) => (Some("table"), "sets `table` without `database`, the database it is in".to_owned()),
        (false, false, false) => (None, "names no target: it needs `database` or `on`".to_owned()),
    };
    Err(AttrsError { attr, message, hint: forms.to_owned() })
}

/// Identity keys for finding two resources that are one object (`KindSchema::identity_key`).
fn database_key(attrs: &BTreeMap<String, Value>) -> String {
    identity_key(DATABASE, attrs)
}

fn user_key(attrs: &BTreeMap<String, Value>) -> String {
    identity_key(USER, attrs)
}

fn grant_key(attrs: &BTreeMap<String, Value>) -> String {
    identity_key(GRANT, attrs)
}

fn identity_key(kind: &str, attrs: &BTreeMap<String, Value>) -> String {
    identity_string(identity(kind, attrs).iter().map(|(k, v)| (k.as_str(), v)))
}

pub use aspects_core::value::{str_attr, str_list};
use aspects_sql::names::{check_db_name, check_url, no_control, string};

/// MySQL and MariaDB store host names in lowercase.
pub fn canonical_host(host: &str) -> String {
    host.to_lowercase()
}

fn check_plugin(v: &Value) -> Result<(), String> {
    let plugin = string(v)?;
    if password::SETTABLE.contains(&plugin.to_lowercase().as_str()) {
        return Ok(());
    }
    Err(format!(
        "{plugin:?} is not a plugin aspects can set a password with; use one of: {}",
        password::SETTABLE.join(", ")
    ))
}

fn check_no_old_password(v: &Value) -> Result<(), String> {
    match v {
        Value::Bool(false) => Ok(()),
        Value::Bool(true) => Err("a plan cannot keep an old password valid; `aspects rotate` keeps one only while a \
                                  rotation moves consumers to the new one"
            .into()),
        other => Err(format!("expected a boolean, found {}", other.type_name())),
    }
}

fn check_charset(v: &Value) -> Result<(), String> {
    let name = string(v)?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{name:?} is not a character set or collation name (letters, digits and `_`, e.g. utf8mb4_general_ci)"
        ));
    }
    Ok(())
}

/// The `'@'` ban keeps `information_schema` GRANTEE strings (which escape nothing) unambiguous.
fn account_part(what: &str, s: &str, max: usize) -> Result<(), String> {
    no_control(what, s)?;
    if s.is_empty() || s.chars().count() > max {
        return Err(format!("{what} {s:?} must be 1 to {max} characters long"));
    }
    if s.ends_with(' ') {
        return Err(format!(
            "{what} {s:?} ends with a space, which the server would not keep apart from the name without it"
        ));
    }
    if s.contains("'@'") {
        return Err(format!(
            "{what} {s:?} contains `'@'`, which makes the account ambiguous in MySQL's privilege tables"
        ));
    }
    Ok(())
}

fn check_user(v: &Value) -> Result<(), String> {
    account_part("the user name", string(v)?, 80)
}

fn check_host(v: &Value) -> Result<(), String> {
    account_part("the host", string(v)?, 255)
}

fn check_table_name(v: &Value) -> Result<(), String> {
    let name = string(v)?;
    no_control("the table name", name)?;
    if name.is_empty() || name.chars().count() > 64 {
        return Err(format!("table name {name:?} must be 1 to 64 characters long"));
    }
    Ok(())
}

fn check_on(v: &Value) -> Result<(), String> {
    let on = On::parse(string(v)?)?;
    match &on {
        On::Global => Ok(()),
        On::Database(db) => check_db_name(&Value::from(db.as_str())),
        On::Table(db, table) => {
            check_db_name(&Value::from(db.as_str()))?;
            no_control("the table name", table)
        }
    }
}

/// `_` and `%` in the database part of `db.*` are wildcards (MySQL's rule for database-level
/// grants): `my_db.*` also grants on `myXdb`. Says so, with the escaped form.
fn warn_on_pattern(v: &Value) -> Option<String> {
    let Ok(On::Database(db)) = On::parse(v.as_str()?) else { return None };
    let (mut escaped, mut literal) = (String::new(), String::new());
    let mut wild = false;
    let mut chars = db.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next();
                escaped.push(c);
                escaped.extend(next);
                literal.extend(next);
            }
            '_' | '%' => {
                wild = true;
                escaped.push('\\');
                escaped.push(c);
                literal.push(c);
            }
            c => {
                escaped.push(c);
                literal.push(c);
            }
        }
    }
    wild.then(|| {
        let on = On::Database(escaped).to_string();
        format!(
            "`_` and `%` in {db:?} are wildcards in a database grant, so it also covers other databases \
             (`_` matches any one character); to mean exactly this database write database = {literal:?} \
             (or on = '{on}')"
        )
    })
}

fn check_privileges(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of privilege names, found {}", v.type_name()))?;
    if list.is_empty() {
        return Err("the privilege list is empty; list at least one (e.g. [\"SELECT\"]) or remove the grant".into());
    }
    list.iter().try_for_each(|p| privileges::check_name(string(p)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, attr: &str, v: impl Into<Value>) -> Result<(), String> {
        schema().check_attr(kind, attr, &v.into())
    }

    #[test]
    fn kinds_are_ranked_and_secrets_declared() {
        let s = schema();
        let ranks: Vec<_> = s.kinds.iter().map(|k| (k.kind, k.rank)).collect();
        assert_eq!(ranks, [(DATABASE, 0), (USER, 1), (GRANT, 2)]);
        let pw = s.provider_attrs.iter().find(|a| a.name == "password").unwrap();
        assert!(pw.sensitive && !pw.write_only && !pw.required);
        let upw = s.kinds[1].attr("password").unwrap();
        assert!(upw.sensitive && upw.write_only && upw.required);
        assert!(s.kinds[0].data_bearing);
    }

    #[test]
    fn url_must_not_carry_a_password() {
        assert_eq!(check("provider", "url", "mysql://root@127.0.0.1:3306"), Ok(()));
        let err = check("provider", "url", "mysql://root:hunter2@127.0.0.1:3306").unwrap_err();
        assert!(
            err.contains("password = \\\"${secrets.NAME}\\\"") || err.contains("password = \"${secrets.NAME}\""),
            "{err}"
        );
        assert!(!err.contains("hunter2"));
        assert!(check("provider", "url", "postgres://x@y").unwrap_err().contains("mysql://USER@HOST:PORT"));
        for bad in [
            "mysql://root@h:3306?password=hunter2",
            "mysql://root@h:3306/db?ssl-mode=disabled&PWD=hunter2",
            "mysql://root@h/?pass=hunter2",
            "mysql://root%3Ahunter2@h:3306",
            "mysql://root%3ahunter2@h:3306",
            "mysql://root:@h:3306",
        ] {
            let err = check("provider", "url", bad).unwrap_err();
            assert!(err.contains("the URL contains a password"), "{bad}: {err}");
            assert!(!err.contains("hunter2"), "{bad}: {err}");
        }
        assert_eq!(check("provider", "url", "mysql://root@h:3306/db?ssl-mode=required"), Ok(()));
    }

    #[test]
    fn names_reject_control_characters_and_ambiguity() {
        assert_eq!(check(DATABASE, "name", "we`ird 'db' \\ name"), Ok(()));
        assert!(check(DATABASE, "name", "a\0b").unwrap_err().contains("control character"));
        assert!(check(DATABASE, "name", "trailing ").is_err());
        assert!(check(USER, "user", "a\nb").is_err());
        assert!(check(USER, "user", "a'@'b").unwrap_err().contains("ambiguous"));
        assert!(check(USER, "user", "app ").unwrap_err().contains("ends with a space"));
        assert!(check(USER, "host", "% ").unwrap_err().contains("ends with a space"));
        for invisible in ["a\u{200b}b", "ad\u{202e}min", "x\u{feff}", "a\u{2066}b"] {
            assert!(check(USER, "user", invisible).unwrap_err().contains("invisible character"), "{invisible:?}");
            assert!(check(DATABASE, "name", invisible).unwrap_err().contains("invisible character"), "{invisible:?}");
        }
        assert!(check(DATABASE, "name", "db_\u{1f600}").unwrap_err().contains("cannot store"));
        assert!(check(GRANT, "on", "`db_\u{1f600}`.*").unwrap_err().contains("cannot store"));
        assert_eq!(check(DATABASE, "name", "caf\u{e9}_\u{4e2d}"), Ok(()));
        assert_eq!(check(USER, "host", "10.0.%"), Ok(()));
    }

    #[test]
    fn on_and_privileges_are_checked() {
        assert_eq!(check(GRANT, "on", "`my.db`.*"), Ok(()));
        assert!(check(GRANT, "on", "db").unwrap_err().contains("`db.table`"));
        assert_eq!(check(GRANT, "privileges", Value::List(vec!["select".into(), "ALL PRIVILEGES".into()])), Ok(()));
        assert!(check(GRANT, "privileges", Value::List(vec![])).unwrap_err().contains("empty"));
        assert!(check(GRANT, "privileges", Value::List(vec!["SELCT".into()])).unwrap_err().contains("SELECT"));
    }

    #[test]
    fn wildcards_in_a_database_grant_warn_with_the_escaped_form() {
        let warn = |on: &str| warn_on_pattern(&Value::from(on));
        let w = warn("my_db.*").unwrap();
        assert!(w.contains(r"on = '`my\_db`.*'"), "{w}");
        assert!(w.contains(r#"database = "my_db""#), "{w}");
        assert!(warn(r"`a\_b_c`.*").unwrap().contains(r#"database = "a_b_c""#));
        assert!(warn("a%.*").unwrap().contains(r"`a\%`.*"));
        assert_eq!(warn(r"`my\_db`.*"), None);
        assert_eq!(warn("my_db.t_1"), None, "table grants take the database name literally");
        assert_eq!(warn("*.*"), None);
    }

    #[test]
    fn identity_is_canonical() {
        let attrs: BTreeMap<String, Value> =
            [("user", "App"), ("host", "LocalHost"), ("on", "`db`.*"), ("privileges", "x")]
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .into();
        let id = identity(GRANT, &attrs);
        assert_eq!(id.len(), 3);
        assert_eq!(id["user"], Value::from("App"));
        assert_eq!(id["host"], Value::from("localhost"));
        assert_eq!(id["on"], Value::from("db.*"));
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect()
    }

    #[test]
    fn database_and_table_are_literal_and_key_like_the_on_they_mean() {
        let grant = |extra: &[(&str, &str)]| attrs(&[[("user", "u")].as_slice(), extra].concat());
        let key = |extra: &[(&str, &str)]| grant_key(&grant(extra));
        assert_eq!(key(&[("database", "my_db")]), key(&[("on", r"`my\_db`.*")]));
        assert_ne!(key(&[("database", "my_db")]), key(&[("on", "my_db.*")]));
        assert_eq!(target(&grant(&[("database", r"a%\b")])), Ok(On::Database(r"a\%\\b".into())));
        assert_eq!(key(&[("database", "my_db"), ("table", "t_1")]), key(&[("on", "my_db.t_1")]));
        let check = |extra: &[(&str, &str)]| check_grant_target(&grant(extra)).map_err(|e| (e.attr, e.message));
        assert_eq!(check(&[("on", "*.*")]), Ok(()));
        assert_eq!(check(&[("database", "d"), ("table", "t")]), Ok(()));
        assert_eq!(check(&[("on", "d.*"), ("database", "d")]).unwrap_err().0, Some("database"));
        assert_eq!(check(&[("table", "t")]).unwrap_err().0, Some("table"));
        assert_eq!(check(&[("on", "d.*"), ("table", "t")]).unwrap_err().0, Some("table"));
        assert_eq!(check(&[]).unwrap_err().0, None);
    }
}

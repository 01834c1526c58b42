//! Privilege names: the catalogue the plan file is checked against (no server at load time), the
//! per-level "ALL" sets learned from the server at connect time, and the one normaliser that both
//! desired and live privilege lists go through.

use std::collections::BTreeSet;

use crate::sql::Level;

/// Static privileges of MariaDB 10.11 and MySQL 8, in GRANT vocabulary.
const STATIC: &[&str] = &[
    "ALTER",
    "ALTER ROUTINE",
    "BINLOG ADMIN",
    "BINLOG MONITOR",
    "BINLOG REPLAY",
    "CONNECTION ADMIN",
    "CREATE",
    "CREATE ROLE",
    "CREATE ROUTINE",
    "CREATE TABLESPACE",
    "CREATE TEMPORARY TABLES",
    "CREATE USER",
    "CREATE VIEW",
    "DELETE",
    "DELETE HISTORY",
    "DROP",
    "DROP ROLE",
    "EVENT",
    "EXECUTE",
    "FEDERATED ADMIN",
    "FILE",
    "INDEX",
    "INSERT",
    "LOCK TABLES",
    "PROCESS",
    "READ_ONLY ADMIN",
    "REFERENCES",
    "RELOAD",
    "REPLICA MONITOR",
    "REPLICATION CLIENT",
    "REPLICATION MASTER ADMIN",
    "REPLICATION REPLICA",
    "REPLICATION SLAVE",
    "REPLICATION SLAVE ADMIN",
    "SELECT",
    "SET USER",
    "SHOW CREATE ROUTINE",
    "SHOW DATABASES",
    "SHOW VIEW",
    "SHUTDOWN",
    "SLAVE MONITOR",
    "SUPER",
    "TRIGGER",
    "UPDATE",
];

/// MySQL 8 dynamic privileges (global only).
const DYNAMIC: &[&str] = &[
    "ALLOW_NONEXISTENT_DEFINER",
    "APPLICATION_PASSWORD_ADMIN",
    "AUDIT_ABORT_EXEMPT",
    "AUDIT_ADMIN",
    "AUTHENTICATION_POLICY_ADMIN",
    "BACKUP_ADMIN",
    "BINLOG_ADMIN",
    "BINLOG_ENCRYPTION_ADMIN",
    "CLONE_ADMIN",
    "CONNECTION_ADMIN",
    "ENCRYPTION_KEY_ADMIN",
    "FIREWALL_EXEMPT",
    "FLUSH_OPTIMIZER_COSTS",
    "FLUSH_PRIVILEGES",
    "FLUSH_STATUS",
    "FLUSH_TABLES",
    "FLUSH_USER_RESOURCES",
    "GROUP_REPLICATION_ADMIN",
    "GROUP_REPLICATION_STREAM",
    "INNODB_REDO_LOG_ARCHIVE",
    "INNODB_REDO_LOG_ENABLE",
    "OPTIMIZE_LOCAL_TABLE",
    "PASSWORDLESS_USER_ADMIN",
    "PERSIST_RO_VARIABLES_ADMIN",
    "REPLICATION_APPLIER",
    "REPLICATION_SLAVE_ADMIN",
    "RESOURCE_GROUP_ADMIN",
    "RESOURCE_GROUP_USER",
    "ROLE_ADMIN",
    "SENSITIVE_VARIABLES_OBSERVER",
    "SERVICE_CONNECTION_ADMIN",
    "SESSION_VARIABLES_ADMIN",
    "SET_ANY_DEFINER",
    "SET_USER_ID",
    "SHOW_ROUTINE",
    "SYSTEM_USER",
    "SYSTEM_VARIABLES_ADMIN",
    "TABLE_ENCRYPTION_ADMIN",
    "TELEMETRY_LOG_ADMIN",
    "TRANSACTION_GTID_TAG",
    "XA_RECOVER_ADMIN",
];

/// Old or alternative spellings MariaDB reports under another name. Applied only when the server
/// does not know the spelling itself, so a MySQL server keeps its own names.
const ALIASES: &[(&str, &str)] = &[
    ("REPLICATION CLIENT", "BINLOG MONITOR"),
    ("REPLICA MONITOR", "SLAVE MONITOR"),
    ("REPLICATION REPLICA", "REPLICATION SLAVE"),
];

pub const ALL: &str = "ALL";
pub const GRANT_OPTION: &str = "GRANT OPTION";
const USAGE: &str = "USAGE";

/// Uppercase, trimmed, inner whitespace collapsed: the spelling everything is compared in.
fn canonical(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase()
}

/// Load-time check of one privilege name; the message lists what is accepted.
pub fn check_name(raw: &str) -> Result<(), String> {
    let name = canonical(raw);
    if name == USAGE {
        return Err(
            "USAGE means \"no privileges\" and cannot be managed: list real privileges, or remove the grant".into()
        );
    }
    if matches!(name.as_str(), "ALL" | "ALL PRIVILEGES" | GRANT_OPTION)
        || STATIC.contains(&name.as_str())
        || DYNAMIC.contains(&name.as_str())
    {
        return Ok(());
    }
    if name.contains('(') {
        return Err(format!("{raw:?}: column privileges are not supported; grant on the whole table instead"));
    }
    let mut close: Vec<&str> = STATIC
        .iter()
        .chain(DYNAMIC)
        .copied()
        .filter(|known| strsim::jaro_winkler(known, &name) > 0.85 || known.contains(name.as_str()))
        .collect();
    close.truncate(3);
    let suggestion = match close.as_slice() {
        [] => String::new(),
        some => format!(" (did you mean {}?)", some.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" or ")),
    };
    Err(format!(
        "{raw:?} is not a MySQL/MariaDB privilege{suggestion}; use ALL, GRANT OPTION or one of: {}",
        STATIC.join(", ")
    ))
}

/// The privilege list of a REVOKE, GRANT OPTION last as MySQL documents it.
pub fn revoke_list(privileges: &BTreeSet<String>) -> String {
    let list: Vec<&str> = privileges
        .iter()
        .map(String::as_str)
        .filter(|p| *p != GRANT_OPTION)
        .chain(privileges.contains(GRANT_OPTION).then_some(GRANT_OPTION))
        .collect();
    list.join(", ")
}

/// What `ALL` expands to at each level, as this server defines it.
#[derive(Clone, Debug, Default)]
pub struct LevelSets {
    pub global: BTreeSet<String>,
    pub database: BTreeSet<String>,
    pub table: BTreeSet<String>,
}

impl LevelSets {
    pub fn get(&self, level: Level) -> &BTreeSet<String> {
        match level {
            Level::Global => &self.global,
            Level::Database => &self.database,
            Level::Table => &self.table,
        }
    }

    /// From `SHOW PRIVILEGES` rows: every privilege but USAGE, GRANT OPTION and PROXY is part of
    /// a global `ALL`.
    pub fn set_global<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.global = names
            .into_iter()
            .map(canonical)
            .filter(|n| !matches!(n.as_str(), USAGE | GRANT_OPTION | "PROXY"))
            .collect();
    }

    /// From the `*_priv` columns of `mysql.db`: `Create_tmp_table_priv` is CREATE TEMPORARY
    /// TABLES, `Grant_priv` is the grant option (not part of ALL), the rest read as written.
    pub fn set_database<'a>(&mut self, columns: impl IntoIterator<Item = &'a str>) {
        self.database = columns
            .into_iter()
            .filter_map(|c| c.strip_suffix("_priv"))
            .filter(|c| !c.eq_ignore_ascii_case("grant"))
            .map(|c| match canonical(&c.replace('_', " ")).as_str() {
                "CREATE TMP TABLE" => "CREATE TEMPORARY TABLES".to_owned(),
                other => other.to_owned(),
            })
            .collect();
    }

    /// From the SET type of `mysql.tables_priv.Table_priv`, e.g. `set('Select',...,'Delete
    /// versioning rows')`: MariaDB calls DELETE HISTORY "Delete versioning rows" there.
    pub fn set_table(&mut self, column_type: &str) {
        let members = column_type.trim().strip_prefix("set(").and_then(|s| s.strip_suffix(')')).unwrap_or_default();
        self.table = members
            .split(',')
            .map(|m| canonical(m.trim_matches('\'')))
            .filter(|m| !m.is_empty() && m != "GRANT")
            .map(|m| if m == "DELETE VERSIONING ROWS" { "DELETE HISTORY".to_owned() } else { m })
            .collect();
    }

    /// Where the server would not tell (no read access to `mysql.*`), MariaDB 10.11's sets.
    pub fn fill_missing(&mut self) {
        const DB: &[&str] = &[
            "ALTER",
            "ALTER ROUTINE",
            "CREATE",
            "CREATE ROUTINE",
            "CREATE TEMPORARY TABLES",
            "CREATE VIEW",
            "DELETE",
            "DELETE HISTORY",
            "DROP",
            "EVENT",
            "EXECUTE",
            "INDEX",
            "INSERT",
            "LOCK TABLES",
            "REFERENCES",
            "SELECT",
            "SHOW VIEW",
            "TRIGGER",
            "UPDATE",
        ];
        const TABLE: &[&str] = &[
            "ALTER",
            "CREATE",
            "CREATE VIEW",
            "DELETE",
            "DELETE HISTORY",
            "DROP",
            "INDEX",
            "INSERT",
            "REFERENCES",
            "SELECT",
            "SHOW VIEW",
            "TRIGGER",
            "UPDATE",
        ];
        if self.database.is_empty() {
            self.database = DB.iter().map(|s| s.to_string()).collect();
        }
        if self.table.is_empty() {
            self.table = TABLE.iter().map(|s| s.to_string()).collect();
        }
    }

    /// The one normaliser: canonical spelling, `ALL PRIVILEGES` = `ALL` = the level's full set,
    /// USAGE dropped, aliases resolved, sorted and deduplicated, and collapsed back to `ALL` when
    /// the level's full set is held, so plans read "ALL".
    pub fn normalise<'a>(&self, level: Level, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let full = self.get(level);
        let mut set = self.expand(level, names);
        if !full.is_empty() && full.is_subset(&set) {
            set.retain(|n| !full.contains(n));
            set.insert(ALL.to_owned());
        }
        set.into_iter().collect()
    }

    /// Like [`Self::normalise`] but with `ALL` spelled out: the form set arithmetic needs.
    pub fn expand<'a>(&self, level: Level, names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let full = self.get(level);
        let mut set = BTreeSet::new();
        for raw in names {
            let name = canonical(raw);
            match name.as_str() {
                USAGE | "" => {}
                "ALL" | "ALL PRIVILEGES" => set.extend(full.iter().cloned()),
                _ => {
                    let name = match ALIASES.iter().find(|(from, _)| *from == name) {
                        Some((_, to)) if !self.global.contains(&name) && self.global.contains(*to) => (*to).to_owned(),
                        _ => name,
                    };
                    set.insert(name);
                }
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mariadb() -> LevelSets {
        let mut sets = LevelSets::default();
        sets.set_global(["Select", "Insert", "Binlog monitor", "Usage", "Grant option", "Proxy", "Slave monitor"]);
        sets.set_database([
            "Select_priv",
            "Insert_priv",
            "Grant_priv",
            "Create_tmp_table_priv",
            "Lock_tables_priv",
            "Delete_history_priv",
        ]);
        sets.set_table("set('Select','Insert','Grant','Show view','Delete versioning rows')");
        sets
    }

    #[test]
    fn levels_map_server_names_to_grant_vocabulary() {
        let s = mariadb();
        assert_eq!(s.global.iter().collect::<Vec<_>>(), ["BINLOG MONITOR", "INSERT", "SELECT", "SLAVE MONITOR"]);
        assert_eq!(
            s.database.iter().collect::<Vec<_>>(),
            ["CREATE TEMPORARY TABLES", "DELETE HISTORY", "INSERT", "LOCK TABLES", "SELECT"]
        );
        assert_eq!(s.table.iter().collect::<Vec<_>>(), ["DELETE HISTORY", "INSERT", "SELECT", "SHOW VIEW"]);
    }

    #[test]
    fn normalise_canonicalises_sorts_and_dedupes() {
        let s = mariadb();
        assert_eq!(s.normalise(Level::Table, [" select", "show   VIEW", "SELECT", "usage"]), ["SELECT", "SHOW VIEW"]);
    }

    #[test]
    fn all_expands_and_the_full_set_collapses_back() {
        let s = mariadb();
        assert_eq!(s.normalise(Level::Table, ["all privileges"]), ["ALL"]);
        assert_eq!(s.normalise(Level::Table, ["Select", "Insert", "Show view", "Delete history"]), ["ALL"]);
        assert_eq!(s.normalise(Level::Table, ["ALL", "grant option"]), ["ALL", "GRANT OPTION"]);
        assert_eq!(s.expand(Level::Table, ["ALL"]).len(), 4);
        assert_eq!(s.normalise(Level::Database, ["ALL"]), ["ALL"]);
    }

    #[test]
    fn aliases_resolve_only_when_the_server_lacks_the_spelling() {
        let s = mariadb();
        assert_eq!(s.normalise(Level::Global, ["replication client", "SELECT"]), ["BINLOG MONITOR", "SELECT"]);
        let mut mysql = LevelSets::default();
        mysql.set_global(["Replication client", "Select"]);
        assert_eq!(mysql.normalise(Level::Global, ["REPLICATION CLIENT"]), ["REPLICATION CLIENT"]);
    }

    #[test]
    fn fallback_sets_fill_only_what_is_missing() {
        let mut s = mariadb();
        let table = s.table.clone();
        s.database.clear();
        s.fill_missing();
        assert_eq!(s.database.len(), 19);
        assert_eq!(s.table, table);
    }

    #[test]
    fn check_accepts_known_names_and_suggests_for_typos() {
        for ok in ["select", "ALL PRIVILEGES", "all", "grant  option", "Create Temporary Tables", "BACKUP_ADMIN"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        let err = check_name("SELEKT").unwrap_err();
        assert!(err.contains("did you mean \"SELECT\""), "{err}");
        assert!(err.contains("one of: ALTER, ALTER ROUTINE"), "{err}");
        assert!(check_name("usage").unwrap_err().contains("no privileges"));
        assert!(check_name("SELECT (a)").unwrap_err().contains("column privileges"));
    }
}

//! Privileges a managed account can hold outside the three `on` levels `mysql_grant` manages:
//! granted roles, the default role, column privileges, routine privileges, proxy rights and
//! (MySQL 8) partial revokes, which withhold global privileges from one database. The
//! plan never declares them, so for a managed user each one found is "beyond the plan" and
//! revoked (a partial revoke is lifted). They are read from the `mysql.*` privilege tables,
//! batched, with the tables of the server's flavour (never by parsing `SHOW GRANTS`), and each
//! is reported as a `mysql_grant` orphan whose `on` is the [`Extra`]'s text: a form
//! `On::parse` refuses, so a plan file cannot declare one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aspects_engine::provider::ProviderError;

use crate::connect::{Handle, text};
use crate::flavour::Flavour;
use crate::privileges::{self, GRANT_OPTION};
use crate::sql::{self, ident};

/// `(user, host)` of an account.
type Account = (String, String);

/// One privilege beyond the three `on` levels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Extra {
    /// A granted role (`host` is empty for MariaDB roles).
    Role { role: String, host: String },
    /// The role activated at login.
    DefaultRole { role: String, host: String },
    /// Column privileges on one table.
    Columns { db: String, table: String },
    /// Privileges on one stored routine; `routine` is PROCEDURE, FUNCTION, PACKAGE or PACKAGE BODY.
    Routine { routine: String, db: String, name: String },
    /// The right to log in as another account.
    Proxy { user: String, host: String },
    /// Global privileges withheld from one database (MySQL 8.0.16+ with `partial_revokes`).
    PartialRevoke { db: String },
}

/// A role name as statements take it: MariaDB roles have no host.
fn role_sql(role: &str, host: &str) -> String {
    if host.is_empty() { ident(role) } else { sql::account(role, host) }
}

impl fmt::Display for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Extra::Role { role, host } => write!(f, "role {}", role_sql(role, host)),
            Extra::DefaultRole { role, host } => write!(f, "default role {}", role_sql(role, host)),
            Extra::Columns { db, table } => write!(f, "columns of {}.{}", ident(db), ident(table)),
            Extra::Routine { routine, db, name } => {
                write!(f, "{} {}.{}", routine.to_lowercase(), ident(db), ident(name))
            }
            Extra::Proxy { user, host } => write!(f, "proxy {}", sql::account(user, host)),
            Extra::PartialRevoke { db } => write!(f, "partial revoke on {}.*", ident(db)),
        }
    }
}

/// The extras of each account, with the privileges held (shown in the plan; the revoke reads
/// them again, so what it removes is what the server holds at apply time).
pub type Extras = BTreeMap<Account, BTreeMap<Extra, BTreeSet<String>>>;

/// A MySQL SET column (`Select,Insert`) as privilege names.
fn set_members(set: &str) -> impl Iterator<Item = String> + '_ {
    set.split(',').filter(|m| !m.is_empty()).map(|m| match m.to_uppercase().as_str() {
        "GRANT" => GRANT_OPTION.to_owned(),
        other => other.to_owned(),
    })
}

impl Handle {
    /// Every extra the accounts hold, in one query over the privilege tables, and one more for
    /// partial revokes on MySQL 8.0.16+ (exact match on user and host done here: those columns
    /// compare case-insensitively on some servers).
    pub(crate) async fn extras(&self, accounts: &BTreeSet<Account>) -> Result<Extras, ProviderError> {
        if accounts.is_empty() {
            return Ok(Extras::new());
        }
        let query = extras_sql(self.flavour, accounts.len());
        let one: Vec<&str> = accounts.iter().flat_map(|(u, h)| [u.as_str(), h.as_str()]).collect();
        let binds: Vec<&str> = (0..5).flat_map(|_| one.iter().copied()).collect();
        let rows = self
            .db
            .sql
            .rows(&query, &binds)
            .await
            .map_err(|e| self.db.sql.err(&e, "reading roles, column, routine and proxy privileges from mysql.*"))?;
        let mut extras = Extras::new();
        for r in &rows {
            let col = |i| text(r, i);
            let account = (col(1)?, col(2)?);
            if !accounts.contains(&account) {
                continue;
            }
            let (a, b, c, d) = (col(3)?, col(4)?, col(5)?, col(6)?);
            let yes = d.eq_ignore_ascii_case("Y");
            let (extra, held): (Extra, Vec<String>) = match col(0)?.as_str() {
                "role" => (
                    Extra::Role { role: a, host: b },
                    [Some("ROLE"), yes.then_some("ADMIN OPTION")].into_iter().flatten().map(str::to_owned).collect(),
                ),
                "default" => (Extra::DefaultRole { role: a, host: b }, vec!["DEFAULT ROLE".to_owned()]),
                "column" => {
                    let column = ident(&c);
                    let held = set_members(&d).map(|p| format!("{p}({column})")).collect();
                    (Extra::Columns { db: a, table: b }, held)
                }
                "routine" => (Extra::Routine { routine: c.to_uppercase(), db: a, name: b }, set_members(&d).collect()),
                _ => (
                    Extra::Proxy { user: a, host: b },
                    [Some("PROXY"), yes.then_some(GRANT_OPTION)].into_iter().flatten().map(str::to_owned).collect(),
                ),
            };
            extras.entry(account).or_default().entry(extra).or_default().extend(held);
        }
        if self.flavour.partial_revokes() {
            // Its own query: a JSON value in the UNION above would mix collations.
            let rows = self
                .db
                .sql
                .rows(&restrictions_sql(accounts.len()), &one)
                .await
                .map_err(|e| self.db.sql.err(&e, "reading partial revokes from mysql.user"))?;
            for r in &rows {
                let account = (text(r, 0)?, text(r, 1)?);
                if !accounts.contains(&account) {
                    continue;
                }
                for (db, privileges) in restrictions(&text(r, 2)?)? {
                    extras
                        .entry(account.clone())
                        .or_default()
                        .entry(Extra::PartialRevoke { db })
                        .or_default()
                        .extend(privileges);
                }
            }
        }
        extras.retain(|_, e| {
            e.retain(|_, held| !held.is_empty());
            !e.is_empty()
        });
        Ok(extras)
    }

    /// Revokes the extra of `user@host` whose text is `on`, as the server holds it now; gone
    /// already is done.
    pub(crate) async fn revoke_extra(&self, user: &str, host: &str, on: &str) -> Result<(), ProviderError> {
        let account = (user.to_owned(), host.to_owned());
        let held = self.extras(&BTreeSet::from([account.clone()])).await?;
        let Some((extra, privileges)) = held.get(&account).and_then(|e| e.iter().find(|(x, _)| x.to_string() == on))
        else {
            return Ok(());
        };
        let sql = revoke_sql(self.flavour.mariadb, extra, privileges, &sql::account(user, host));
        self.db.sql.run(&sql, &format!("revoking {extra} from {}", sql::account(user, host)), &[]).await
    }
}

/// The one statement that takes an extra away.
fn revoke_sql(mariadb: bool, extra: &Extra, privileges: &BTreeSet<String>, account: &str) -> String {
    match extra {
        Extra::Role { role, host } => format!("REVOKE {} FROM {account}", role_sql(role, host)),
        Extra::DefaultRole { .. } if mariadb => format!("SET DEFAULT ROLE NONE FOR {account}"),
        Extra::DefaultRole { .. } => format!("ALTER USER {account} DEFAULT ROLE NONE"),
        Extra::Columns { db, table } => {
            // `SELECT(`a`)` held -> revoke exactly those column privileges, grouped by privilege.
            let mut by_privilege: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for p in privileges {
                if let Some((name, column)) = p.split_once('(') {
                    by_privilege.entry(name).or_default().push(column.strip_suffix(')').unwrap_or(column));
                }
            }
            let list: Vec<String> = by_privilege.iter().map(|(p, cols)| format!("{p}({})", cols.join(", "))).collect();
            format!("REVOKE {} ON {}.{} FROM {account}", list.join(", "), ident(db), ident(table))
        }
        Extra::Routine { routine, db, name } => {
            let list = privileges::revoke_list(privileges);
            format!("REVOKE {list} ON {routine} {}.{} FROM {account}", ident(db), ident(name))
        }
        Extra::Proxy { user, host } => format!("REVOKE PROXY ON {} FROM {account}", sql::account(user, host)),
        // Granting at database level what a partial revoke withholds lifts the restriction.
        Extra::PartialRevoke { db } => {
            format!("GRANT {} ON {}.* TO {account}", privileges::revoke_list(privileges), ident(db))
        }
    }
}

/// Roles, the default role, column, routine and proxy privileges of `n` accounts, each bound as
/// a (user, host) pair five times over.
fn extras_sql(flavour: Flavour, n: usize) -> String {
    let pairs = vec!["(?, ?)"; n].join(", ");
    // Columns: kind, user, host, a, b, c, d (see `Handle::extras` for what a..d hold).
    let roles = if flavour.mariadb {
        format!(
            "SELECT 'role', User, Host, Role, '', '', Admin_option FROM mysql.roles_mapping \
             WHERE (User, Host) IN ({pairs}) \
             UNION ALL SELECT 'default', User, Host, default_role, '', '', '' FROM mysql.user \
             WHERE (User, Host) IN ({pairs}) AND default_role <> ''"
        )
    } else {
        format!(
            "SELECT 'role', TO_USER, TO_HOST, FROM_USER, FROM_HOST, '', WITH_ADMIN_OPTION FROM mysql.role_edges \
             WHERE (TO_USER, TO_HOST) IN ({pairs}) \
             UNION ALL SELECT 'default', USER, HOST, DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST, '', '' \
             FROM mysql.default_roles WHERE (USER, HOST) IN ({pairs})"
        )
    };
    format!(
        "{roles} \
         UNION ALL SELECT 'column', User, Host, Db, Table_name, Column_name, Column_priv FROM mysql.columns_priv \
         WHERE (User, Host) IN ({pairs}) \
         UNION ALL SELECT 'routine', User, Host, Db, Routine_name, Routine_type, Proc_priv FROM mysql.procs_priv \
         WHERE (User, Host) IN ({pairs}) \
         UNION ALL SELECT 'proxy', User, Host, Proxied_user, Proxied_host, '', IF(With_grant, 'Y', 'N') \
         FROM mysql.proxies_priv WHERE (User, Host) IN ({pairs})"
    )
}

/// The partial revokes of `n` accounts (one (user, host) pair each), as the JSON MySQL keeps
/// in `User_attributes`: `[{"Database": "db", "Privileges": ["SELECT", ...]}, ...]`.
fn restrictions_sql(n: usize) -> String {
    format!(
        "SELECT User, Host, CAST(JSON_EXTRACT(User_attributes, '$.Restrictions') AS CHAR) FROM mysql.user \
         WHERE (User, Host) IN ({}) AND JSON_CONTAINS_PATH(User_attributes, 'one', '$.Restrictions')",
        vec!["(?, ?)"; n].join(", ")
    )
}

/// Database -> withheld privileges, from `restrictions_sql`'s JSON.
fn restrictions(json: &str) -> Result<Vec<(String, Vec<String>)>, ProviderError> {
    let unexpected = || ProviderError::new(format!("unexpected partial revokes in mysql.user: {json}"));
    let value: serde_json::Value = serde_json::from_str(json).map_err(|_| unexpected())?;
    value
        .as_array()
        .ok_or_else(unexpected)?
        .iter()
        .map(|r| {
            let db = r.get("Database").and_then(serde_json::Value::as_str).ok_or_else(unexpected)?;
            let privileges = r.get("Privileges").and_then(serde_json::Value::as_array).ok_or_else(unexpected)?;
            let privileges = privileges.iter().map(|p| p.as_str().map(str::to_uppercase).ok_or_else(unexpected));
            Ok((db.to_owned(), privileges.collect::<Result<_, _>>()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flavour::{MARIADB_1011, MYSQL_84};

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn text_is_refused_by_the_on_parser() {
        let extras = [
            Extra::Role { role: "r".into(), host: String::new() },
            Extra::DefaultRole { role: "r".into(), host: "h".into() },
            Extra::Columns { db: "d".into(), table: "t".into() },
            Extra::Routine { routine: "PROCEDURE".into(), db: "d".into(), name: "p".into() },
            Extra::Proxy { user: String::new(), host: "%".into() },
        ];
        let texts: Vec<String> = extras.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            ["role `r`", "default role 'r'@'h'", "columns of `d`.`t`", "procedure `d`.`p`", "proxy ''@'%'"]
        );
        for t in texts {
            assert!(sql::On::parse(&t).is_err(), "{t}");
        }
    }

    #[test]
    fn revoke_statements_quote_every_name() {
        let a = "'u'@'%'";
        let role = Extra::Role { role: "r`x".into(), host: String::new() };
        assert_eq!(revoke_sql(true, &role, &set(&["ROLE"]), a), "REVOKE `r``x` FROM 'u'@'%'");
        let default = Extra::DefaultRole { role: "r".into(), host: String::new() };
        assert_eq!(revoke_sql(true, &default, &set(&[]), a), "SET DEFAULT ROLE NONE FOR 'u'@'%'");
        assert_eq!(revoke_sql(false, &default, &set(&[]), a), "ALTER USER 'u'@'%' DEFAULT ROLE NONE");
        let columns = Extra::Columns { db: "d".into(), table: "t".into() };
        assert_eq!(
            revoke_sql(true, &columns, &set(&["SELECT(`a`)", "SELECT(`b``c`)", "INSERT(`a`)"]), a),
            "REVOKE INSERT(`a`), SELECT(`a`, `b``c`) ON `d`.`t` FROM 'u'@'%'"
        );
        let routine = Extra::Routine { routine: "PROCEDURE".into(), db: "d".into(), name: "p".into() };
        assert_eq!(
            revoke_sql(true, &routine, &set(&["EXECUTE", "GRANT OPTION", "ALTER ROUTINE"]), a),
            "REVOKE ALTER ROUTINE, EXECUTE, GRANT OPTION ON PROCEDURE `d`.`p` FROM 'u'@'%'"
        );
        let proxy = Extra::Proxy { user: "o'k".into(), host: "%".into() };
        assert_eq!(revoke_sql(true, &proxy, &set(&["PROXY"]), a), "REVOKE PROXY ON 'o''k'@'%' FROM 'u'@'%'");
    }

    #[test]
    fn set_columns_read_as_privileges() {
        assert_eq!(
            set_members("Execute,Alter Routine,Grant").collect::<Vec<_>>(),
            ["EXECUTE", "ALTER ROUTINE", "GRANT OPTION"]
        );
        assert_eq!(set_members("").count(), 0);
    }

    #[test]
    fn extra_reads_by_flavour() {
        let out = [
            format!("-- MySQL 8.4: roles, column, routine, proxy\n{}", extras_sql(MYSQL_84, 2)),
            format!("-- MySQL 8.4: partial revokes\n{}", restrictions_sql(2)),
            format!("-- MariaDB 10.11: roles, column, routine, proxy\n{}", extras_sql(MARIADB_1011, 2)),
        ]
        .join("\n");
        // Five (user, host) lists, bound in order.
        assert_eq!(extras_sql(MYSQL_84, 2).matches("(?, ?), (?, ?)").count(), 5);
        assert_eq!(restrictions_sql(2).matches("(?, ?), (?, ?)").count(), 1);
        insta::assert_snapshot!(out);
    }

    #[test]
    fn partial_revokes_read_from_user_attributes() {
        let json = r#"[{"Database": "mysql", "Privileges": ["SELECT", "insert"]}, {"Database": "a`b", "Privileges": ["DROP"]}]"#;
        assert_eq!(
            restrictions(json).unwrap(),
            [
                ("mysql".to_owned(), vec!["SELECT".to_owned(), "INSERT".to_owned()]),
                ("a`b".to_owned(), vec!["DROP".to_owned()])
            ]
        );
        for bad in ["{}", "[{\"Database\": 1}]", "not json", "[{\"Database\": \"d\"}]"] {
            assert!(restrictions(bad).unwrap_err().message.contains("unexpected partial revokes"), "{bad}");
        }
        let lift = Extra::PartialRevoke { db: "a`b".into() };
        assert_eq!(lift.to_string(), "partial revoke on `a``b`.*");
        assert!(sql::On::parse(&lift.to_string()).is_err());
        assert_eq!(
            revoke_sql(false, &lift, &set(&["INSERT", "SELECT"]), "'u'@'%'"),
            "GRANT INSERT, SELECT ON `a``b`.* TO 'u'@'%'"
        );
    }
}

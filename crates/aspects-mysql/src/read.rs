//! Reading live state: one query per kind for any number of desired resources (plus one for
//! ownership), normalised by the same functions as the desired side, and the orphan scan.

use std::collections::{BTreeMap, BTreeSet};

use aspects_core::{Address, KindSchema, Live, Orphan, Resource, Secret, Value, Verification};
use aspects_engine::few_joined;
use aspects_engine::provider::ProviderError;

use crate::connect::{Handle, int, placeholders, text};
use crate::flavour::Flavour;
use crate::password;
use crate::privileges::GRANT_OPTION;
use crate::schema::{self, DATABASE, GRANT, USER, canonical_host, str_attr, str_list};
use crate::sql::{self, On};
use aspects_sql::records::{self as ownership, Record};

/// `(user, host)` of an account.
type Account = (String, String);

/// What `mysql.user` says about an account.
struct AccountRow {
    plugin: String,
    auth: String,
    /// A secondary password from `RETAIN CURRENT PASSWORD` still logs in (MySQL 8.0.14+).
    old_password: bool,
}

/// Raw privilege names (GRANT OPTION included) per account and target.
type Privileges = BTreeMap<(String, On), Vec<String>>;

fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn list(names: Vec<String>) -> Value {
    Value::List(names.into_iter().map(Value::Str).collect())
}

impl Handle {
    /// The one normaliser (desired side; live values are produced in the same form): schema
    /// defaults filled, hosts lowercased, `on` respelled, charset aliases resolved, the default
    /// collation filled in, privileges canonical.
    pub(crate) fn normalise(&self, kind: &KindSchema, resource: &mut Resource) {
        aspects_engine::ownership::fill_defaults(kind, resource);
        let a = &mut resource.attrs;
        match kind.kind {
            DATABASE => {
                let charset = self.charset(str_attr(a, "charset"));
                let collation = match a.get("collation").and_then(Value::as_str) {
                    Some(c) => self.collation(c),
                    None => self.charsets.get(&charset).cloned().unwrap_or_default(),
                };
                a.insert("charset".into(), Value::Str(charset));
                if !collation.is_empty() {
                    a.insert("collation".into(), Value::Str(collation));
                }
            }
            USER | GRANT => {
                let host = canonical_host(str_attr(a, "host"));
                a.insert("host".into(), Value::Str(host));
                if kind.kind == USER {
                    let default = if self.flavour.mariadb { password::NATIVE } else { password::CACHING_SHA2 };
                    let plugin = a.get("plugin").and_then(Value::as_str).unwrap_or(default);
                    a.insert("plugin".into(), Value::from(password::canonical_plugin(plugin)));
                    // Only servers with dual passwords can drift here; elsewhere the plan stays quiet.
                    if self.flavour.dual_passwords() {
                        a.entry(schema::OLD_PASSWORD_ACCEPTED.into()).or_insert(Value::Bool(false));
                    }
                }
                // `database`/`table` become the `on` they mean, the one form live grants are read in.
                if kind.kind == GRANT
                    && let Ok(on) = schema::target(a)
                {
                    a.remove("database");
                    a.remove("table");
                    let privileges = self.levels.normalise(on.level(), str_list(a.get("privileges")));
                    a.insert("on".into(), Value::Str(on.to_string()));
                    a.insert("privileges".into(), list(privileges));
                }
            }
            _ => {}
        }
    }

    /// Lowercase, with `utf8` read as the server reads it (`utf8mb3` on MariaDB 10.6+/MySQL 8).
    fn charset(&self, name: &str) -> String {
        let name = name.to_lowercase();
        match name.strip_prefix("utf8") {
            Some("") if !self.charsets.contains_key("utf8") && self.charsets.contains_key("utf8mb3") => {
                "utf8mb3".into()
            }
            _ => name,
        }
    }

    fn collation(&self, name: &str) -> String {
        let name = name.to_lowercase();
        match name.strip_prefix("utf8_") {
            Some(rest) if !self.charsets.contains_key("utf8") && self.charsets.contains_key("utf8mb3") => {
                format!("utf8mb3_{rest}")
            }
            _ => name,
        }
    }

    pub(crate) async fn read(
        &self,
        kind: &KindSchema,
        desired: &[Resource],
    ) -> Result<Vec<Option<Live>>, ProviderError> {
        if desired.is_empty() {
            return Ok(Vec::new());
        }
        let mut live = match kind.kind {
            DATABASE => self.read_databases(desired).await?,
            USER => self.read_users(desired).await?,
            GRANT => self.read_grants(desired).await?,
            other => {
                return Err(ProviderError::new(format!("the mysql provider has no kind `{other}`")));
            }
        };
        self.db
            .mark_owners(kind.kind, &mut live, desired.iter().map(|r| schema::identity(kind.kind, &r.attrs)))
            .await?;
        Ok(live)
    }

    async fn read_databases(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let names: Vec<&str> = desired.iter().map(|r| str_attr(&r.attrs, "name")).collect();
        let found = self.schemata(&names).await?;
        Ok(names
            .iter()
            .map(|name| {
                found.get(*name).map(|(charset, collation)| Live {
                    attrs: attrs([
                        ("name", Value::from(*name)),
                        ("charset", Value::from(charset.as_str())),
                        ("collation", Value::from(collation.as_str())),
                    ]),
                    ..Live::default()
                })
            })
            .collect())
    }

    /// Charset and collation of the named databases that exist (one query).
    pub(crate) async fn schemata(&self, names: &[&str]) -> Result<BTreeMap<String, (String, String)>, ProviderError> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let sql = format!(
            "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA \
             WHERE SCHEMA_NAME IN ({})",
            placeholders(names.len())
        );
        let rows = self.db.sql.rows(&sql, names).await.map_err(|e| self.db.sql.err(&e, "reading databases"))?;
        let wanted: BTreeSet<&str> = names.iter().copied().collect();
        let mut found = BTreeMap::new();
        for r in &rows {
            let name = text(r, 0)?;
            // The comparison in SQL follows the column's collation; identity is exact.
            if wanted.contains(name.as_str()) {
                found.insert(name, (text(r, 1)?.to_lowercase(), text(r, 2)?.to_lowercase()));
            }
        }
        Ok(found)
    }

    async fn read_users(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let accounts: Vec<Account> = desired
            .iter()
            .map(|r| (str_attr(&r.attrs, "user").to_owned(), canonical_host(str_attr(&r.attrs, "host"))))
            .collect();
        let found = self.accounts(&accounts).await?;
        // Accounts that exist, with a desired password, are compared off the async threads: one
        // caching_sha2_password hash costs ~1.2 ms (5000 rounds, release build; 1,000 accounts
        // ~1 s), which would stall every other read sharing the thread.
        let checks: Vec<(String, String, Secret)> = desired
            .iter()
            .zip(&accounts)
            .filter_map(|(r, account)| {
                let row = found.get(account)?;
                let pw = r.get("password").and_then(Value::as_secret)?;
                Some((row.plugin.clone(), row.auth.clone(), pw.clone()))
            })
            .collect();
        let verify = move || -> Vec<Verification> {
            checks.iter().map(|(plugin, stored, pw)| password::verify(plugin, stored, pw.expose())).collect()
        };
        let mut verified = tokio::task::spawn_blocking(verify)
            .await
            .map_err(|e| ProviderError::new(format!("comparing passwords failed: {e}")))?
            .into_iter();
        Ok(desired
            .iter()
            .zip(&accounts)
            .map(|(r, account)| {
                let row = found.get(account)?;
                let verification = match r.get("password").and_then(Value::as_secret) {
                    None => Verification::Unknown("no password was given to compare".into()),
                    Some(_) => verified.next()?,
                };
                Some(Live {
                    attrs: attrs([
                        ("user", Value::from(account.0.as_str())),
                        ("host", Value::from(account.1.as_str())),
                        ("plugin", Value::from(password::canonical_plugin(&row.plugin))),
                        (schema::OLD_PASSWORD_ACCEPTED, Value::Bool(row.old_password)),
                    ]),
                    verified: [("password".to_owned(), verification)].into(),
                    ..Live::default()
                })
            })
            .collect())
    }

    /// The named accounts that exist (one query).
    async fn accounts(&self, accounts: &[Account]) -> Result<BTreeMap<Account, AccountRow>, ProviderError> {
        if accounts.is_empty() {
            return Ok(BTreeMap::new());
        }
        let sql = accounts_sql(self.flavour, accounts.len());
        let binds: Vec<&str> = accounts.iter().flat_map(|(u, h)| [u.as_str(), h.as_str()]).collect();
        let rows =
            self.db.sql.rows(&sql, &binds).await.map_err(|e| self.db.sql.err(&e, "reading users from mysql.user"))?;
        let wanted: BTreeSet<&Account> = accounts.iter().collect();
        let mut found = BTreeMap::new();
        for r in &rows {
            let account = (text(r, 0)?, text(r, 1)?);
            if wanted.contains(&account) {
                let row = AccountRow { plugin: text(r, 2)?, auth: text(r, 3)?, old_password: int(r, 4)? == Some(1) };
                found.insert(account, row);
            }
        }
        Ok(found)
    }

    async fn read_grants(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let ids: Vec<BTreeMap<String, Value>> = desired.iter().map(|r| schema::identity(GRANT, &r.attrs)).collect();
        let accounts: BTreeSet<Account> =
            ids.iter().map(|id| (str_attr(id, "user").to_owned(), str_attr(id, "host").to_owned())).collect();
        let held = self.privileges(&accounts).await?;
        Ok(ids
            .into_iter()
            .map(|id| {
                let on = On::parse(str_attr(&id, "on")).ok()?;
                let raw = held.get(&(sql::grantee(str_attr(&id, "user"), str_attr(&id, "host")), on.clone()))?;
                let privileges = self.levels.normalise(on.level(), raw.iter().map(String::as_str));
                let mut attrs = id;
                attrs.insert("privileges".into(), list(privileges));
                Some(Live { attrs, ..Live::default() })
            })
            .collect())
    }

    /// Every privilege the accounts hold at global, database and table level, in one query
    /// over `information_schema` (exact GRANTEE match done here: the column compares
    /// case-insensitively). Targets with nothing but USAGE are left out.
    pub(crate) async fn privileges(&self, accounts: &BTreeSet<Account>) -> Result<Privileges, ProviderError> {
        if accounts.is_empty() {
            return Ok(Privileges::new());
        }
        let grantees: Vec<String> = accounts.iter().map(|(u, h)| sql::grantee(u, h)).collect();
        let sql = privileges_sql(self.flavour, grantees.len());
        let mut binds: Vec<&str> = (0..3).flat_map(|_| grantees.iter().map(String::as_str)).collect();
        if self.flavour.mysql8() {
            binds.extend(accounts.iter().flat_map(|(u, h)| [u.as_str(), h.as_str()]));
        }
        let rows = self
            .db
            .sql
            .rows(&sql, &binds)
            .await
            .map_err(|e| self.db.sql.err(&e, "reading privileges from information_schema"))?;
        let wanted: BTreeSet<&str> = grantees.iter().map(String::as_str).collect();
        let mut held = Privileges::new();
        for r in &rows {
            let col = |i| text(r, i);
            let (level, grantee, db, table) = (col(0)?, col(1)?, col(2)?, col(3)?);
            let (privilege, grantable) = (col(4)?, col(5)?);
            if !wanted.contains(grantee.as_str()) {
                continue;
            }
            let on = match level.as_str() {
                "g" => On::Global,
                // The stored pattern, verbatim: `on` maps one to one onto it (see `On`).
                "d" => On::Database(db),
                _ => On::Table(db, table),
            };
            let entry = held.entry((grantee, on)).or_default();
            entry.push(privilege);
            if grantable.eq_ignore_ascii_case("YES") {
                entry.push(GRANT_OPTION.to_owned());
            }
        }
        held.retain(|(_, on), raw| !self.levels.normalise(on.level(), raw.iter().map(String::as_str)).is_empty());
        Ok(held)
    }

    /// Records of this deployment the plan does not name (with what exists of each), and what
    /// managed users hold beyond the plan (roles, column, routine and proxy privileges included).
    /// At most six queries: records, databases, users, privileges, extras, grant owners (seven on
    /// MySQL 8.0.16+, whose partial revokes are read apart).
    async fn scan(&self, desired: &[Resource]) -> Result<Scan, ProviderError> {
        let wanted: BTreeSet<(String, String)> = desired
            .iter()
            .map(|r| {
                let kind = r.address.kind.as_str();
                (kind.to_owned(), ownership::key(kind, &schema::identity(kind, &r.attrs)))
            })
            .collect();
        let account = |id: &BTreeMap<String, Value>| (str_attr(id, "user").to_owned(), str_attr(id, "host").to_owned());
        let all = self.db.owned_records().await?;
        // A managed user without a record is being adopted: losing privileges it holds today
        // is a surprise, so its revocations say so.
        let owned_users: BTreeSet<Account> =
            all.iter().filter(|r| r.kind == USER && r.state.owns()).map(|r| account(&r.identity)).collect();
        let beyond_reason = |user: &str, host: &str| {
            if owned_users.contains(&(user.to_owned(), host.to_owned())) {
                "privileges beyond the plan".to_owned()
            } else {
                format!(
                    "privileges beyond the plan; WARNING: {} is being adopted and loses privileges it holds today",
                    sql::account(user, host)
                )
            }
        };
        let stale: Vec<Record> =
            all.into_iter().filter(|rec| !wanted.contains(&(rec.kind.clone(), rec.key.clone()))).collect();

        let of_kind = |kind: &'static str| stale.iter().filter(move |r| r.kind == kind);
        let db_names: Vec<&str> = of_kind(DATABASE).map(|r| str_attr(&r.identity, "name")).collect();
        let databases = self.schemata(&db_names).await?;
        let managed: BTreeSet<Account> = desired
            .iter()
            .filter(|r| r.address.kind == USER)
            .map(|r| account(&schema::identity(USER, &r.attrs)))
            .collect();
        // Grantees no mysql_user of the plan declares must exist, and must not be on their way out.
        let grantees: Vec<(&Resource, Account)> = desired
            .iter()
            .filter(|r| r.address.kind == GRANT)
            .map(|r| (r, account(&schema::identity(GRANT, &r.attrs))))
            .filter(|(_, a)| !managed.contains(a))
            .collect();
        let mut looked_up: Vec<Account> = of_kind(USER).map(|r| account(&r.identity)).collect();
        looked_up.extend(grantees.iter().map(|(_, a)| a.clone()));
        let users = self.accounts(&looked_up).await?;
        self.refuse_orphaned_grants(&grantees, &users, of_kind(USER))?;

        let mut scanned = managed.clone();
        scanned.extend(of_kind(GRANT).map(|r| account(&r.identity)));
        let held = self.privileges(&scanned).await?;
        let extras = self.extras(&managed).await?;
        let privileges_of = |(user, host): &Account, on: &On| {
            held.get(&(sql::grantee(user, host), on.clone()))
                .map(|raw| self.levels.normalise(on.level(), raw.iter().map(String::as_str)))
        };

        let mut records = Vec::new();
        let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
        for rec in stale {
            let live = match rec.kind.as_str() {
                DATABASE => {
                    let name = str_attr(&rec.identity, "name");
                    databases.get(name).map(|(charset, collation)| {
                        attrs([
                            ("name", Value::from(name)),
                            ("charset", Value::from(charset.as_str())),
                            ("collation", Value::from(collation.as_str())),
                        ])
                    })
                }
                USER => users.contains_key(&account(&rec.identity)).then(|| rec.identity.clone()),
                GRANT => On::parse(str_attr(&rec.identity, "on"))
                    .ok()
                    .and_then(|on| privileges_of(&account(&rec.identity), &on))
                    .map(|privileges| {
                        let mut attrs = rec.identity.clone();
                        attrs.insert("privileges".into(), list(privileges));
                        attrs
                    }),
                _ => None,
            };
            reported.insert((rec.kind.clone(), rec.key.clone()));
            records.push((rec, live));
        }

        // Privileges another deployment records as its grant are that deployment's business.
        let others: BTreeSet<String> = if held.is_empty() {
            BTreeSet::new()
        } else {
            self.db
                .owners(GRANT)
                .await?
                .into_iter()
                .filter(|(_, o)| o.deployment != self.db.deployment)
                .map(|(k, _)| k)
                .collect()
        };
        let managed_grantees: BTreeMap<String, &Account> =
            managed.iter().map(|a| (sql::grantee(&a.0, &a.1), a)).collect();
        let mut beyond = Vec::new();
        for ((grantee, on), raw) in &held {
            let Some(&(user, host)) = managed_grantees.get(grantee) else {
                continue;
            };
            let identity = attrs([
                ("user", Value::from(user.as_str())),
                ("host", Value::from(host.as_str())),
                ("on", Value::from(on.to_string())),
            ]);
            let key = ownership::key(GRANT, &identity);
            let key = (GRANT.to_owned(), key);
            if wanted.contains(&key) || reported.contains(&key) || others.contains(&key.1) {
                continue;
            }
            let mut attrs = identity.clone();
            attrs.insert("privileges".into(), list(self.levels.normalise(on.level(), raw.iter().map(String::as_str))));
            beyond.push(Orphan {
                address: Address::new(GRANT, format!("{} on {on}", sql::account(user, host))),
                identity,
                attrs,
                provider: self.provider.clone(),
                reason: beyond_reason(user, host),
                adopted: false,
            });
        }
        for ((user, host), found) in extras {
            for (extra, privileges) in found {
                let identity = attrs([
                    ("user", Value::from(user.as_str())),
                    ("host", Value::from(host.as_str())),
                    ("on", Value::from(extra.to_string())),
                ]);
                let mut attrs = identity.clone();
                attrs.insert("privileges".into(), list(privileges.into_iter().collect()));
                beyond.push(Orphan {
                    address: Address::new(GRANT, format!("{} {extra}", sql::account(&user, &host))),
                    identity,
                    attrs,
                    provider: self.provider.clone(),
                    reason: beyond_reason(&user, &host),
                    adopted: false,
                });
            }
        }
        Ok(Scan { records, beyond })
    }

    /// A grant to an account that will not exist would fail at apply (error 1133): refuse the
    /// plan instead, naming the grant and why the account is missing.
    fn refuse_orphaned_grants<'r>(
        &self,
        grantees: &[(&Resource, Account)],
        users: &BTreeMap<Account, AccountRow>,
        stale_users: impl Iterator<Item = &'r Record>,
    ) -> Result<(), ProviderError> {
        let leaving: BTreeMap<Account, &str> = stale_users
            .filter(|r| r.state.owns())
            .map(|r| {
                ((str_attr(&r.identity, "user").to_owned(), str_attr(&r.identity, "host").to_owned()), r.name.as_str())
            })
            .collect();
        let problems: Vec<String> = grantees
            .iter()
            .filter_map(|(r, a)| {
                let who = format!("{} at {} grants to {}", r.address, r.origin, sql::account(&a.0, &a.1));
                match (users.contains_key(a), leaving.get(a)) {
                    (true, Some(name)) => Some(format!(
                        "{who}, whose mysql_user.{name} left the plan and would be dropped (with its grants)"
                    )),
                    (false, _) => Some(format!("{who}, which does not exist and no mysql_user in the plan declares")),
                    (true, None) => None,
                }
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        // The message names the first few; -v logs every one.
        for p in &problems {
            tracing::info!("grant to an account that will not exist: {p}");
        }
        Err(ProviderError::new(format!("grants to accounts that will not exist: {}", few_joined(&problems, "; ")))
            .with_hint("keep (or add) the mysql_user the grant names, or remove the grant from the plan too"))
    }

    /// Owned objects the plan no longer names, and privileges managed users hold beyond the
    /// plan's grants. Records that prove nothing (the object is gone, or its create was never
    /// confirmed) are not shown: apply prunes them without counting them as destroys.
    pub(crate) async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        let Scan { records, beyond } = self.scan(desired).await?;
        Ok(ownership::orphans(records, &self.provider).chain(beyond).collect())
    }

    /// Drops the records [`Self::orphans`] does not show; returns how many.
    pub(crate) async fn prune(&self, desired: &[Resource]) -> Result<usize, ProviderError> {
        let Scan { records, .. } = self.scan(desired).await?;
        self.db.prune(records).await
    }
}

/// The accounts' plugin, stored form and whether an old password still logs in.
fn accounts_sql(flavour: Flavour, n: usize) -> String {
    let old_password = if flavour.dual_passwords() {
        "IF(JSON_CONTAINS_PATH(User_attributes, 'one', '$.additional_password'), 1, 0)"
    } else {
        "0"
    };
    format!(
        "SELECT User, Host, plugin, authentication_string, {old_password} FROM mysql.user WHERE (User, Host) IN ({})",
        vec!["(?, ?)"; n].join(", ")
    )
}

/// Global, database and table privileges of `n` grantees (`'user'@'host'`). MySQL 8 adds
/// dynamic privileges from `mysql.global_grants`, bound as `n` more (user, host) pairs.
fn privileges_sql(flavour: Flavour, n: usize) -> String {
    let p = placeholders(n);
    let mut sql = format!(
        "SELECT 'g', GRANTEE, '', '', PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES \
         WHERE GRANTEE IN ({p}) \
         UNION ALL SELECT 'd', GRANTEE, TABLE_SCHEMA, '', PRIVILEGE_TYPE, IS_GRANTABLE \
         FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE IN ({p}) \
         UNION ALL SELECT 't', GRANTEE, TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE, IS_GRANTABLE \
         FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN ({p})"
    );
    if flavour.mysql8() {
        // GRANTEE's spelling (see `sql::grantee`), built from the table's own columns.
        sql += &format!(
            " UNION ALL SELECT 'g', CONCAT('''', USER, '''@''', HOST, ''''), '', '', PRIV, \
             IF(WITH_GRANT_OPTION = 'Y', 'YES', 'NO') FROM mysql.global_grants WHERE (USER, HOST) IN ({})",
            vec!["(?, ?)"; n].join(", ")
        );
    }
    sql
}

/// What the orphan scan found.
struct Scan {
    /// Records of this deployment the plan does not name, with the object's attributes when it
    /// exists.
    records: Vec<ownership::Stale>,
    /// Privileges managed users hold that nothing records.
    beyond: Vec<Orphan>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flavour::{MARIADB_1011, MYSQL_84};

    #[test]
    fn account_and_privilege_reads_by_flavour() {
        let mysql_8013 = Flavour { mariadb: false, version: [8, 0, 13] };
        let mut out = Vec::new();
        for (server, flavour) in
            [("MySQL 8.4", MYSQL_84), ("MySQL 8.0.13", mysql_8013), ("MariaDB 10.11", MARIADB_1011)]
        {
            out.push(format!("-- {server}: accounts\n{}", accounts_sql(flavour, 2)));
            out.push(format!("-- {server}: privileges\n{}", privileges_sql(flavour, 2)));
        }
        let out = out.join("\n");
        // Binds line up: 3 grantee lists, then (user, host) pairs on MySQL 8.
        assert_eq!(privileges_sql(MYSQL_84, 2).matches('?').count(), 3 * 2 + 2 * 2);
        assert_eq!(privileges_sql(MARIADB_1011, 2).matches('?').count(), 3 * 2);
        assert_eq!(accounts_sql(MYSQL_84, 2).matches('?').count(), 2 * 2);
        insta::assert_snapshot!(out);
    }
}

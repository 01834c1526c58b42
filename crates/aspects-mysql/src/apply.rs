//! Carrying out one planned change. Every step is safe to repeat after a crash: ownership is
//! recorded before an object is created, records are removed after it is gone, and removing
//! something already gone counts as done.

use std::collections::{BTreeMap, BTreeSet};

use aspects_core::{Action, Change, KindSchema, Resource, Value};
use aspects_engine::provider::{ProviderError, SecretRotation};

use crate::connect::Handle;
use crate::flavour::Flavour;
use crate::password;
use crate::privileges::{self, GRANT_OPTION, LevelSets};
use crate::schema::{self, DATABASE, GRANT, USER, str_attr, str_list};
use crate::sql::{self, On, ident};
use aspects_sql::records::State;

type Identity = BTreeMap<String, Value>;

/// REVOKE errors that mean there is nothing left to revoke: no such grant (database or table
/// level), no such user, or the table itself is gone.
const NOTHING_TO_REVOKE: &[u16] = &[1141, 1147, 1133, 1146];
/// `CREATE DATABASE` of a database that exists.
const DATABASE_EXISTS: u16 = 1007;
/// `CREATE USER` of an account that exists ("Operation CREATE USER failed").
const USER_EXISTS: u16 = 1396;
/// `RETAIN CURRENT PASSWORD` on an account whose current password is empty.
const SECOND_PASSWORD_CANNOT_BE_EMPTY: u16 = 3878;

impl Handle {
    pub(crate) async fn apply(
        &self,
        kind: &KindSchema,
        change: &Change,
        desired: Option<&Resource>,
    ) -> Result<(), ProviderError> {
        tracing::debug!(address = %change.address, action = ?change.action, "apply");
        refuse_empty_identity(kind.kind, desired.map(|r| &r.attrs))?;
        refuse_empty_identity(kind.kind, change.old_identity.as_ref())?;
        let desired = || aspects_engine::provider::desired_for(change, desired);
        match change.action {
            Action::NoOp => Ok(()),
            Action::Adopt => self.adopt(kind.kind, desired()?).await,
            Action::Create => self.create(kind.kind, desired()?).await,
            Action::Update => {
                let r = desired()?;
                if change.adopt {
                    self.adopt(kind.kind, r).await?;
                }
                self.update(kind.kind, change, r).await
            }
            Action::Replace => {
                let r = desired()?;
                let new = schema::identity(kind.kind, &r.attrs);
                match &change.old_identity {
                    // Identity moved: bring up the new object, then take the old one down.
                    Some(old) if schema::identity(kind.kind, old) != new => {
                        self.create(kind.kind, r).await?;
                        let old = schema::identity(kind.kind, old);
                        // An adopted object existed before this deployment: moving away from it
                        // releases it, as `destroy` does, instead of dropping it.
                        if self.db.own_state(kind.kind, &old).await? == Some(State::Adopted) {
                            self.db.forget(kind.kind, &old).await
                        } else {
                            self.destroy(kind.kind, &old).await
                        }
                    }
                    _ => {
                        self.remove(kind.kind, &new).await?;
                        self.create(kind.kind, r).await
                    }
                }
            }
            Action::Delete | Action::Release => {
                let old = change.old_identity.as_ref().ok_or_else(|| {
                    ProviderError::new(format!("{}: the engine passed no identity to remove", change.address))
                })?;
                let id = schema::identity(kind.kind, old);
                if change.action == Action::Delete {
                    self.destroy(kind.kind, &id).await
                } else {
                    // Released: this deployment stops owning it; the object stays as it is.
                    self.db.forget(kind.kind, &id).await
                }
            }
        }
    }

    /// A `mysql_user` keeps its old password beside the new one through a rotation on MySQL
    /// 8.0.14+; MariaDB and older MySQL hold one password per account.
    pub(crate) fn secret_rotation(&self, kind: &KindSchema) -> SecretRotation {
        if kind.kind == USER && self.flavour.dual_passwords() { SecretRotation::Dual } else { SecretRotation::Replace }
    }

    /// A rotation's first step on a `Dual` account: the new password with `RETAIN CURRENT
    /// PASSWORD`, so clients still using the old one keep working until
    /// [`Self::discard_old_secret`]. What MySQL cannot keep is replaced as a plain apply does:
    /// a new account (no old password), a plugin change (error 3894: MySQL keeps an old
    /// password only on the same plugin) and an account whose current password is empty
    /// (error 3878).
    pub(crate) async fn apply_keeping_old_secret(
        &self,
        kind: &KindSchema,
        change: &Change,
        desired: &Resource,
    ) -> Result<(), ProviderError> {
        let changed = |name: &str| change.attrs.iter().any(|c| c.name == name);
        let keeps = self.secret_rotation(kind) == SecretRotation::Dual
            && change.action == Action::Update
            && changed("password")
            && !changed("plugin");
        if !keeps {
            if kind.kind == USER && changed("plugin") {
                tracing::warn!(
                    address = %change.address,
                    "the plugin changes too, and MySQL keeps an old password only on the same plugin: \
                     the old password stops working now"
                );
            }
            return self.apply(kind, change, Some(desired)).await;
        }
        if change.adopt {
            self.adopt(USER, desired).await?;
        }
        match self.set_password("ALTER", &desired.attrs, true).await {
            Err((_, Some(SECOND_PASSWORD_CANNOT_BE_EMPTY))) => {
                tracing::warn!(address = %change.address, "the account had an empty password: nothing to keep");
                self.set_password("ALTER", &desired.attrs, false).await.map_err(|(e, _)| e)
            }
            r => r.map_err(|(e, _)| e),
        }
    }

    /// The end of a `Dual` rotation: the old password stops working.
    pub(crate) async fn discard_old_secret(&self, kind: &KindSchema, desired: &Resource) -> Result<(), ProviderError> {
        if self.secret_rotation(kind) == SecretRotation::Dual {
            self.discard_old_password(&desired.attrs).await?;
        }
        Ok(())
    }

    /// Records ownership of an object that exists.
    async fn adopt(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        self.db.claim(kind, &r.address.name, &schema::identity(kind, &r.attrs), State::Adopted).await
    }

    /// Claims, creates with a statement that fails if the object exists, confirms
    /// (`Server::create_owned`).
    async fn create(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        self.db.create_owned(kind, &r.address.name, &schema::identity(kind, &r.attrs), self.make(kind, r)).await
    }

    /// Removes the object, then its ownership record.
    async fn destroy(&self, kind: &str, id: &Identity) -> Result<(), ProviderError> {
        self.remove(kind, id).await?;
        self.db.forget(kind, id).await
    }

    async fn make(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        let a = &r.attrs;
        let exists = |e: ProviderError, what: String| {
            e.with_hint(format!(
                "{what} appeared after the plan was read, so this deployment did not create it and recorded nothing; \
                 run plan again: it offers to adopt it if it matches"
            ))
        };
        match kind {
            DATABASE => {
                let name = str_attr(a, "name");
                let mut sql =
                    format!("CREATE DATABASE {} CHARACTER SET {}", ident(name), ident(str_attr(a, "charset")));
                if a.contains_key("collation") {
                    sql += &format!(" COLLATE {}", ident(str_attr(a, "collation")));
                }
                let doing = format!("creating database {}", ident(name));
                match self.db.sql.execute(&sql, false).await {
                    Err(e) if crate::error::number(&e) == Some(DATABASE_EXISTS) => {
                        Err(exists(self.db.sql.err(&e, &doing), format!("database {}", ident(name))))
                    }
                    r => r.map_err(|e| self.db.sql.err(&e, &doing)),
                }
            }
            USER => {
                let account = sql::account(str_attr(a, "user"), str_attr(a, "host"));
                self.set_password("CREATE", a, false).await.map_err(|(e, number)| match number {
                    Some(USER_EXISTS) => exists(e, format!("user {account}")),
                    _ => e,
                })
            }
            GRANT => {
                let on = self.on(a)?;
                let want = self.levels.expand(on.level(), str_list(a.get("privileges")));
                self.converge_grant(a, &on, &BTreeSet::new(), &want).await
            }
            other => Err(ProviderError::new(format!("the mysql provider has no kind `{other}`"))),
        }
    }

    async fn update(&self, kind: &str, change: &Change, r: &Resource) -> Result<(), ProviderError> {
        let a = &r.attrs;
        let changed = |name: &str| change.attrs.iter().find(|c| c.name == name);
        match kind {
            DATABASE => {
                let mut clauses = String::new();
                if changed("charset").is_some() {
                    clauses += &format!(" CHARACTER SET {}", ident(str_attr(a, "charset")));
                }
                if changed("collation").is_some() || (changed("charset").is_some() && a.contains_key("collation")) {
                    clauses += &format!(" COLLATE {}", ident(str_attr(a, "collation")));
                }
                if clauses.is_empty() {
                    return Ok(());
                }
                let name = str_attr(a, "name");
                self.db
                    .sql
                    .run(
                        &format!("ALTER DATABASE {}{clauses}", ident(name)),
                        &format!("altering database {}", ident(name)),
                        &[],
                    )
                    .await
            }
            USER => {
                if changed("password").is_some() || changed("plugin").is_some() {
                    self.set_password("ALTER", a, false).await.map_err(|(e, _)| e)?;
                }
                // Only the provider reads it `true` (MySQL 8.0.14+): a retained password is drift.
                if changed(schema::OLD_PASSWORD_ACCEPTED).is_some() {
                    self.discard_old_password(a).await?;
                }
                Ok(())
            }
            GRANT => {
                let Some(privileges) = changed("privileges") else {
                    return Ok(());
                };
                let on = self.on(a)?;
                let have = self.levels.expand(on.level(), str_list(privileges.before.as_ref()));
                let want = self.levels.expand(on.level(), str_list(privileges.after.as_ref().or(a.get("privileges"))));
                self.converge_grant(a, &on, &have, &want).await
            }
            _ => Ok(()),
        }
    }

    fn on(&self, a: &BTreeMap<String, Value>) -> Result<On, ProviderError> {
        On::parse(str_attr(a, "on")).map_err(ProviderError::new)
    }

    /// `CREATE USER` / `ALTER USER` with the password's stored form, computed here (see
    /// [`user_sql`]); `retain` keeps the current password as the secondary one (MySQL
    /// 8.0.14+: a rotation's first step). Errors keep the server's error number beside them.
    async fn set_password(
        &self,
        verb: &str,
        a: &BTreeMap<String, Value>,
        retain: bool,
    ) -> Result<(), (ProviderError, Option<u16>)> {
        let (user, host) = (str_attr(a, "user"), str_attr(a, "host"));
        let account = sql::account(user, host);
        let secret = a.get("password").and_then(Value::as_secret).ok_or_else(|| {
            let e =
                ProviderError::new(format!("user {account} has no password; set `password = \"${{secrets.NAME}}\"`"));
            (e, None)
        })?;
        let salt = password::fresh_salt();
        let set = Password {
            plugin: str_attr(a, "plugin"),
            password: secret.expose(),
            salt: &salt,
            rounds: self.sha2_rounds,
        };
        let (sql, stored) = user_sql(self.flavour, verb, &account, &set, retain);
        let mut forms = password::secret_forms(secret.expose());
        forms.extend(stored);
        let doing = match (verb, retain) {
            ("CREATE", _) => format!("creating user {account}"),
            (_, false) => format!("setting the password of user {account}"),
            (_, true) => format!("setting the password of user {account}, keeping the old one"),
        };
        let secrets: Vec<&str> = forms.iter().map(String::as_str).collect();
        self.db
            .sql
            .execute(&sql, true)
            .await
            .map_err(|e| (self.db.sql.endpoint.error(&e, &doing, &secrets), crate::error::number(&e)))
    }

    /// `ALTER USER ... DISCARD OLD PASSWORD`: the secondary password a rotation kept stops
    /// working. Repeating it is harmless.
    async fn discard_old_password(&self, a: &BTreeMap<String, Value>) -> Result<(), ProviderError> {
        let account = sql::account(str_attr(a, "user"), str_attr(a, "host"));
        self.db.sql.run(&discard_sql(&account), &format!("discarding the old password of user {account}"), &[]).await
    }

    /// GRANT what is missing, then REVOKE what is beyond the plan.
    async fn converge_grant(
        &self,
        a: &BTreeMap<String, Value>,
        on: &On,
        have: &BTreeSet<String>,
        want: &BTreeSet<String>,
    ) -> Result<(), ProviderError> {
        let account = sql::account(str_attr(a, "user"), str_attr(a, "host"));
        let add: BTreeSet<String> = want.difference(have).cloned().collect();
        let drop: BTreeSet<String> = have.difference(want).cloned().collect();
        if let Some(sql) = grant_sql(&self.levels, on, &account, &add) {
            self.db.sql.execute(&sql, false).await.map_err(|e| {
                let err = self.db.sql.err(&e, &format!("granting on {on} to {account}"));
                match crate::error::number(&e) {
                    Some(1133) => err.with_hint(format!(
                        "user {account} does not exist: declare it as a mysql_user or create it first"
                    )),
                    Some(1146) => {
                        err.with_hint(format!("table {on} does not exist yet: create it before granting on it"))
                    }
                    _ => err,
                }
            })?;
        }
        if let Some(sql) = revoke_sql(on, &account, &drop) {
            self.db.sql.run(&sql, &format!("revoking on {on} from {account}"), &[]).await?;
        }
        Ok(())
    }

    /// Removes the object; "already gone" is success.
    async fn remove(&self, kind: &str, id: &Identity) -> Result<(), ProviderError> {
        match kind {
            DATABASE => {
                let name = str_attr(id, "name");
                self.db
                    .sql
                    .run(
                        &format!("DROP DATABASE IF EXISTS {}", ident(name)),
                        &format!("dropping database {}", ident(name)),
                        &[],
                    )
                    .await
            }
            USER => {
                let account = sql::account(str_attr(id, "user"), str_attr(id, "host"));
                self.db
                    .sql
                    .run(&format!("DROP USER IF EXISTS {account}"), &format!("dropping user {account}"), &[])
                    .await
            }
            GRANT => {
                let (user, host) = (str_attr(id, "user"), str_attr(id, "host"));
                // Not one of the three levels: a role, column, routine or proxy privilege.
                let Ok(on) = On::parse(str_attr(id, "on")) else {
                    return self.revoke_extra(user, host, str_attr(id, "on")).await;
                };
                let account = sql::account(user, host);
                let mut all = self.levels.get(on.level()).clone();
                all.insert(GRANT_OPTION.to_owned());
                let Some(sql) = revoke_sql(&on, &account, &all) else {
                    return Ok(());
                };
                match self.db.sql.execute(&sql, false).await {
                    Ok(()) => Ok(()),
                    Err(e) if crate::error::number(&e).is_some_and(|n| NOTHING_TO_REVOKE.contains(&n)) => Ok(()),
                    Err(e) => Err(self.db.sql.err(&e, &format!("revoking everything on {on} from {account}"))),
                }
            }
            other => Err(ProviderError::new(format!("the mysql provider has no kind `{other}`"))),
        }
    }
}

/// No statement ever names an empty identity: `''@'%'` is MariaDB's anonymous account, and an
/// empty database name in a record would make a destroy aim at nothing. The loader refuses
/// these already; this is the last line, in front of the server.
fn refuse_empty_identity(kind: &str, attrs: Option<&BTreeMap<String, Value>>) -> Result<(), ProviderError> {
    let Some(attrs) = attrs else { return Ok(()) };
    let identity = schema::identity(kind, attrs);
    let empty: Vec<&str> =
        identity.iter().filter(|(_, v)| v.as_str().is_none_or(str::is_empty)).map(|(k, _)| k.as_str()).collect();
    if empty.is_empty() {
        return Ok(());
    }
    Err(ProviderError::new(format!("refusing to send {kind} with an empty {} to the server", empty.join(", ")))
        .with_hint("identities must be non-empty literal names; check what the plan file's references resolve to"))
}

/// A password to set, and how.
struct Password<'a> {
    plugin: &'a str,
    password: &'a str,
    /// Used by `caching_sha2_password` only; fresh for every statement.
    salt: &'a [u8; password::SALT_LEN],
    rounds: u32,
}

/// `CREATE USER` / `ALTER USER` giving `account` the password, and the stored forms the
/// statement carries (to scrub from errors, besides the password's own forms). The stored
/// form is computed here, so no password crosses the wire, TLS or not: the native hash, the
/// ed25519 key, or a `caching_sha2_password` hash with a fresh salt, written as a hex literal
/// where the server takes one (its salt holds arbitrary bytes). `retain` keeps the current
/// password as a secondary one: MySQL's grammar takes `RETAIN CURRENT PASSWORD` after
/// `IDENTIFIED WITH ... AS` (sql_yacc.yy, `alter_user`; WL#11540 FR2.1).
fn user_sql(flavour: Flavour, verb: &str, account: &str, set: &Password, retain: bool) -> (String, Vec<String>) {
    let pw = set.password;
    let (clause, forms) = match set.plugin {
        password::ED25519 => {
            (format!("IDENTIFIED VIA ed25519 USING {}", sql::literal(&password::ed25519_hash(pw))), Vec::new())
        }
        password::CACHING_SHA2 => {
            let stored = password::caching_sha2_stored(pw, set.salt, set.rounds);
            let hex = hex::encode_upper(&stored);
            let (text, quoted) = if flavour.hex_auth_strings() {
                (format!("0x{hex}"), None)
            } else {
                let quoted = sql::literal(&stored);
                let body = quoted[1..quoted.len() - 1].to_owned();
                (quoted, Some(body))
            };
            let forms = [Some(stored), Some(hex), quoted].into_iter().flatten().collect();
            (format!("IDENTIFIED WITH caching_sha2_password AS {text}"), forms)
        }
        _ if flavour.mariadb => {
            (format!("IDENTIFIED BY PASSWORD {}", sql::literal(&password::native_hash(pw))), Vec::new())
        }
        _ => (
            format!("IDENTIFIED WITH mysql_native_password AS {}", sql::literal(&password::native_hash(pw))),
            Vec::new(),
        ),
    };
    let retain = if retain { " RETAIN CURRENT PASSWORD" } else { "" };
    (format!("{verb} USER {account} {clause}{retain}"), forms)
}

fn discard_sql(account: &str) -> String {
    format!("ALTER USER {account} DISCARD OLD PASSWORD")
}

/// The privilege list of a GRANT/REVOKE: `ALL PRIVILEGES` when it is the level's full set.
fn privilege_list(levels: &LevelSets, on: &On, privileges: &BTreeSet<String>) -> String {
    let full = levels.get(on.level());
    if !full.is_empty() && privileges == full {
        "ALL PRIVILEGES".to_owned()
    } else {
        privileges.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// `GRANT ... ON ... TO ...`, with the grant option as `WITH GRANT OPTION`; None if nothing to do.
fn grant_sql(levels: &LevelSets, on: &On, account: &str, add: &BTreeSet<String>) -> Option<String> {
    let with = add.contains(GRANT_OPTION);
    let privileges: BTreeSet<String> = add.iter().filter(|p| *p != GRANT_OPTION).cloned().collect();
    let list = match (privileges.is_empty(), with) {
        (true, false) => return None,
        (true, true) => "USAGE".to_owned(),
        (false, _) => privilege_list(levels, on, &privileges),
    };
    let with = if with { " WITH GRANT OPTION" } else { "" };
    Some(format!("GRANT {list} ON {} TO {account}{with}", on.sql()))
}

/// `REVOKE ..., GRANT OPTION ON ... FROM ...` (MySQL has no `ALL PRIVILEGES, GRANT OPTION ON`
/// form, so privileges are always listed); None if nothing to do.
fn revoke_sql(on: &On, account: &str, drop: &BTreeSet<String>) -> Option<String> {
    if drop.is_empty() {
        return None;
    }
    Some(format!("REVOKE {} ON {} FROM {account}", privileges::revoke_list(drop), on.sql()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flavour::{MARIADB_1011, MYSQL_84};

    fn levels() -> LevelSets {
        let mut l = LevelSets::default();
        l.set_table("set('Select','Insert','Grant')");
        l.fill_missing();
        l
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grant_statements() {
        let l = levels();
        let t = On::Table("d".into(), "t".into());
        assert_eq!(grant_sql(&l, &t, "'u'@'%'", &set(&[])), None);
        assert_eq!(
            grant_sql(&l, &t, "'u'@'%'", &set(&["INSERT", "SELECT"])).unwrap(),
            "GRANT ALL PRIVILEGES ON `d`.`t` TO 'u'@'%'"
        );
        assert_eq!(
            grant_sql(&l, &On::Database("my_db".into()), "'u'@'%'", &set(&["SELECT", "GRANT OPTION"])).unwrap(),
            "GRANT SELECT ON `my_db`.* TO 'u'@'%' WITH GRANT OPTION"
        );
        assert_eq!(
            grant_sql(&l, &t, "'u'@'%'", &set(&["GRANT OPTION"])).unwrap(),
            "GRANT USAGE ON `d`.`t` TO 'u'@'%' WITH GRANT OPTION"
        );
    }

    #[test]
    fn revoke_statements() {
        assert_eq!(revoke_sql(&On::Global, "'u'@'%'", &set(&[])), None);
        assert_eq!(
            revoke_sql(&On::Global, "'u'@'%'", &set(&["SELECT", "GRANT OPTION", "INSERT"])).unwrap(),
            "REVOKE INSERT, SELECT, GRANT OPTION ON *.* FROM 'u'@'%'"
        );
        assert_eq!(
            revoke_sql(&On::Global, "'u'@'%'", &set(&["GRANT OPTION"])).unwrap(),
            "REVOKE GRANT OPTION ON *.* FROM 'u'@'%'"
        );
    }
    #[test]
    fn password_statements_by_flavour() {
        // The salt of MySQL's own example (SHOW CREATE USER in the reference manual), so the
        // MySQL 8.4 statement must carry exactly the hash MySQL printed for 'secret'.
        let salt = *b"\x0cwE`6&1=a<L\x10c>\n\x10K\x1e\x14\x13";
        let account = sql::account("app", "%");
        let mysql_8015 = Flavour { mariadb: false, version: [8, 0, 15] };
        let mut out = Vec::new();
        for (server, flavour, plugins) in [
            ("MySQL 8.4", MYSQL_84, [password::CACHING_SHA2, password::NATIVE]),
            ("MySQL 8.0.15", mysql_8015, [password::CACHING_SHA2, password::NATIVE]),
            ("MariaDB 10.11", MARIADB_1011, [password::NATIVE, password::ED25519]),
        ] {
            for plugin in plugins {
                let set = Password { plugin, password: "secret", salt: &salt, rounds: 5000 };
                for (verb, retain) in [("CREATE", false), ("ALTER", false), ("ALTER", true)] {
                    if retain && !flavour.dual_passwords() {
                        continue;
                    }
                    out.push(format!("-- {server}, {plugin}\n{}", user_sql(flavour, verb, &account, &set, retain).0));
                }
            }
        }
        out.push(format!("-- MySQL 8.4, after a rotation\n{}", discard_sql(&account)));
        // Control bytes of the salt (sent raw inside quotes before 8.0.17) shown as \xNN here.
        let out: String = out
            .join("\n")
            .chars()
            .map(|c| if c.is_control() && c != '\n' { format!("\\x{:02X}", u32::from(c)) } else { c.to_string() })
            .collect();
        assert!(!out.contains("secret"), "{out}");
        assert!(out.contains(
            "AS 0x244124303035240C7745603626313D613C4C10633E0A104B1E14135A544A7871567245614F4872344643546336546F624F6C78\
             61326932752F45622F4F473273597557627139"
        ));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn password_statements_carry_their_stored_forms_for_scrubbing() {
        let salt = password::fresh_salt();
        let set = Password { plugin: password::CACHING_SHA2, password: "pw", salt: &salt, rounds: 5000 };
        for flavour in [MYSQL_84, Flavour { mariadb: false, version: [8, 0, 15] }] {
            let (sql, forms) = user_sql(flavour, "ALTER", "'u'@'%'", &set, false);
            assert!(forms.iter().any(|f| f.starts_with("$A$005$")), "{forms:?}");
            assert!(forms.iter().any(|f| sql.contains(f.as_str())), "{sql} holds none of {forms:?}");
        }
        // Two statements for the same password never carry the same hash.
        let other = password::fresh_salt();
        let again = Password { salt: &other, ..set };
        assert_ne!(
            user_sql(MYSQL_84, "ALTER", "'u'@'%'", &set, false).0,
            user_sql(MYSQL_84, "ALTER", "'u'@'%'", &again, false).0
        );
    }
}

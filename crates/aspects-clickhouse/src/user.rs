//! `clickhouse_user`: the password is set as `IDENTIFIED WITH sha256_hash BY '<hex>' SALT '<salt>'`,
//! the hash computed here (sha256 of password and salt, the salt 32 random bytes in uppercase hex,
//! as ClickHouse makes them), so no plaintext crosses the wire. It is verified by an HTTP login as
//! the user (`SELECT 1`): the server keeps no readable hash (`auth_params` is `{}`).
//!
//! Rotation is zero-downtime on ClickHouse >= 24.9, which keeps several authentication methods
//! per user: the new password is added beside the old one (`ADD IDENTIFIED WITH ...`), every
//! client moves, then `RESET AUTHENTICATION METHODS TO NEW` keeps only the newest.

use std::collections::BTreeMap;

use aspects_core::secret::REDACTED;
use aspects_core::{Action, Change, KindSchema, Live, Resource, Value, Verification};
use aspects_engine::provider::{ProviderError, SecretRotation};
use sha2::{Digest, Sha256};

use crate::client::{ChError, Handle, array_param, attrs, code, col, ident, literal};
use crate::schema::{USER, str_attr};

/// The first version with several authentication methods per user.
const MULTIPLE_AUTH_METHODS: (u32, u32) = (24, 9);

/// The hash and salt a password is set with.
pub struct Credential {
    pub hash: String,
    pub salt: String,
}

impl Credential {
    pub fn new(password: &str) -> Credential {
        let salt: [u8; 32] = rand::random();
        let salt = hex::encode_upper(salt);
        Credential { hash: hash_with(password, &salt), salt }
    }

    /// The clause; secret material (a hash an attacker could test guesses against).
    fn clause(&self) -> String {
        format!("IDENTIFIED WITH sha256_hash BY {} SALT {}", literal(&self.hash), literal(&self.salt))
    }
}

fn password(r: &Resource) -> &str {
    r.attrs.get("password").and_then(Value::as_secret).map_or("", |s| s.expose())
}

/// Storages a server loads and never writes: users.xml (ClickHouse has called it both) and an LDAP
/// directory. SQL can neither alter their users and roles nor grant to them.
const READ_ONLY_STORAGES: &[&str] = &["users_xml", "users.xml", "ldap"];

/// Authentication done outside ClickHouse: a password aspects set would replace it.
const EXTERNAL_AUTH: &[&str] = &["ldap", "kerberos"];

/// A user or role as `system.users` / `system.roles` show it: where it is stored and how it
/// authenticates, which decide whether SQL may change it.
#[derive(Debug, Default)]
pub(crate) struct Entity {
    pub storage: String,
    /// `toString(auth_type)`: one method (`ldap`) or, on >= 24.9, a list (`['ldap']`).
    pub auth: String,
}

impl Entity {
    /// Why SQL cannot change this entity (nor grant to it), and what the operator can do, if so.
    /// `what`: "user `x`" or "role `x`".
    pub(crate) fn read_only_storage(&self, what: &str) -> Option<(String, String)> {
        if !READ_ONLY_STORAGES.contains(&self.storage.as_str()) {
            return None;
        }
        let (source, fix) = if self.storage == "ldap" {
            ("an LDAP directory", "manage it in the LDAP server and the `ldap` user directory")
        } else {
            ("the server's users.xml", "manage it in users.xml, or delete it there and let aspects create it in SQL")
        };
        Some((
            format!("{what} is defined by {source} (storage `{}`), which SQL cannot change", self.storage),
            format!("{fix}, or remove it from the plan; nothing was written"),
        ))
    }

    /// Why aspects cannot manage this user or role, if so: its storage, or (a user) an
    /// authentication a password would replace.
    fn unmanageable(&self, what: &str) -> Option<(String, String)> {
        if let Some(why) = self.read_only_storage(what) {
            return Some(why);
        }
        let external =
            EXTERNAL_AUTH.iter().find(|a| self.auth.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == **a))?;
        Some((
            format!("{what} authenticates through {external}, outside ClickHouse: a password would replace that"),
            "drop the user by hand (DROP USER) to let aspects create it with a password, or remove it from the \
             plan; nothing was written"
                .to_owned(),
        ))
    }
}

/// The resource names a user or role that SQL cannot manage: refused at plan time.
pub(crate) fn check_manageable(r: &Resource, what: &str, found: Option<&Entity>) -> Result<(), ProviderError> {
    refuse(r, found.and_then(|e| e.unmanageable(what)))
}

/// The plan fails at the resource, with the reason and the hint given.
pub(crate) fn refuse(r: &Resource, why: Option<(String, String)>) -> Result<(), ProviderError> {
    match why {
        Some((why, hint)) => Err(ProviderError::new(format!("{} ({}): {why}", r.address, r.origin)).with_hint(hint)),
        None => Ok(()),
    }
}

impl Handle {
    /// Which of the users exist (one query), then one login per existing user. A user SQL cannot
    /// manage fails the plan before any write.
    pub(crate) async fn read_users(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let found = self.users(desired.iter().map(|r| str_attr(&r.attrs, "name"))).await?;
        let mut out = Vec::with_capacity(desired.len());
        for r in desired {
            let name = str_attr(&r.attrs, "name");
            check_manageable(r, &format!("user {}", ident(name)), found.get(name))?;
            if !found.contains_key(name) {
                out.push(None);
                continue;
            }
            let verified = match self.login(name, password(r)).await {
                Ok(()) => Verification::Matches,
                Err(e) if code::LOGIN.contains(&e.code) => Verification::Differs,
                Err(e) => Verification::Unknown(format!("the login probe failed: {}", e.message)),
            };
            out.push(Some(Live {
                attrs: attrs([("name", Value::from(name))]),
                verified: [("password".to_owned(), verified)].into(),
                ..Live::default()
            }));
        }
        Ok(out)
    }

    /// The users that exist, of those given (one query).
    pub(crate) async fn users<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, Entity>, ProviderError> {
        self.entities("SELECT name, storage, toString(auth_type) AS auth FROM system.users", names, "reading users")
            .await
    }

    /// The roles that exist, of those given (one query).
    pub(crate) async fn roles<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, Entity>, ProviderError> {
        self.entities("SELECT name, storage, '' AS auth FROM system.roles", names, "reading roles").await
    }

    async fn entities<'a>(
        &self,
        select: &str,
        names: impl IntoIterator<Item = &'a str>,
        doing: &str,
    ) -> Result<BTreeMap<String, Entity>, ProviderError> {
        let rows = self
            .rows(&format!("{select} WHERE has({{names:Array(String)}}, name)"), &[("names", &array_param(names))])
            .await
            .map_err(|e| self.err(&e, doing))?;
        Ok(rows.iter().map(|r| (col(r, "name"), Entity { storage: col(r, "storage"), auth: col(r, "auth") })).collect())
    }

    pub(crate) fn secret_rotation(&self, kind: &KindSchema) -> SecretRotation {
        if kind.kind == USER && self.version >= MULTIPLE_AUTH_METHODS {
            SecretRotation::Dual
        } else {
            SecretRotation::Replace
        }
    }

    /// A rotation's first step: the new password beside the current one. A user that does not
    /// exist yet is simply created.
    pub(crate) async fn apply_keeping_old_secret(
        &self,
        kind: &KindSchema,
        change: &Change,
        desired: &Resource,
    ) -> Result<(), ProviderError> {
        if self.secret_rotation(kind) != SecretRotation::Dual || change.action != Action::Update {
            return self.apply(kind, change, Some(desired)).await;
        }
        if change.adopt {
            let id = crate::schema::identity(USER, &desired.attrs);
            self.claim(USER, &desired.address.name, &id, crate::ownership::State::Adopted).await?;
        }
        let what = format!("adding a password to user {}", ident(str_attr(&desired.attrs, "name")));
        self.set_user_as(desired, "ALTER", "ADD ").await?.map_err(|e| self.err(&e, &what))
    }

    /// The end of a rotation: only the newest password is kept (a no-op with one).
    pub(crate) async fn discard_old_secret(&self, kind: &KindSchema, desired: &Resource) -> Result<(), ProviderError> {
        if self.secret_rotation(kind) != SecretRotation::Dual {
            return Ok(());
        }
        let name = ident(str_attr(&desired.attrs, "name"));
        let sql = format!("ALTER USER {name}{} RESET AUTHENTICATION METHODS TO NEW", self.on_cluster());
        self.execute(&sql, &[], &format!("dropping the old passwords of user {name}")).await
    }

    /// `CREATE USER` (fails if it exists) or `ALTER USER` with a new hash and salt.
    pub(crate) async fn set_user(&self, r: &Resource, create: bool) -> Result<Result<(), ChError>, ProviderError> {
        self.set_user_as(r, if create { "CREATE" } else { "ALTER" }, "").await
    }

    /// `verb USER name [ON CLUSTER c] [ADD ]IDENTIFIED WITH sha256_hash ...`.
    async fn set_user_as(&self, r: &Resource, verb: &str, add: &str) -> Result<Result<(), ChError>, ProviderError> {
        let name = str_attr(&r.attrs, "name");
        let cred = Credential::new(password(r));
        let sql = format!("{verb} USER {}{} {add}{}", ident(name), self.on_cluster(), cred.clause());
        // Never logged: it carries the hash and salt.
        tracing::debug!("statement ({verb} USER {}: text withheld, it carries a password hash)", ident(name));
        let result = self.query(&sql, &[]).await;
        aspects_engine::fault::after_write();
        Ok(result
            .map(drop)
            .map_err(|e| ChError { code: e.code, message: scrub(&e.message, &[&cred.hash, &cred.salt]) }))
    }
}

/// A server message with the given secret strings replaced.
fn scrub(message: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(message.to_owned(), |m, s| m.replace(s, REDACTED))
}

/// sha256 of password and salt, in hex: what ClickHouse compares a login against.
fn hash_with(password: &str, salt: &str) -> String {
    hex::encode(Sha256::digest(format!("{password}{salt}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_of_password_and_salt() {
        let c = Credential::new("pw");
        assert_eq!(c.salt.len(), 64);
        assert!(c.salt.chars().all(|ch| ch.is_ascii_digit() || ch.is_ascii_uppercase()));
        assert_eq!(c.hash, hash_with("pw", &c.salt));
        // Known value: sha256("secretsalt123").
        assert_eq!(hash_with("secret", "salt123"), hex::encode(Sha256::digest(b"secretsalt123")));
        let clause = c.clause();
        assert!(clause.starts_with("IDENTIFIED WITH sha256_hash BY '") && !clause.contains("pw'"));
        assert_eq!(scrub("near 'abc' x", &["abc", ""]), "near '(sensitive)' x");
    }

    #[test]
    fn read_only_storages_and_external_authentication_are_not_manageable() {
        let e = |storage: &str, auth: &str| Entity { storage: storage.into(), auth: auth.into() };
        let why = |e: Entity| e.unmanageable("user `u`").map(|(why, _)| why);
        assert_eq!(why(e("local_directory", "['sha256_password']")), None);
        assert_eq!(why(e("replicated", "sha256_password")), None);
        for storage in ["users_xml", "users.xml"] {
            assert!(why(e(storage, "['no_password']")).unwrap().contains("users.xml (storage"));
        }
        assert!(why(e("ldap", "['ldap']")).unwrap().contains("an LDAP directory (storage `ldap`)"));
        // Stored by SQL, but authenticated elsewhere (one method before 24.9, a list after).
        assert!(why(e("local_directory", "ldap")).unwrap().contains("through ldap"));
        assert!(why(e("local_directory", "['kerberos']")).unwrap().contains("through kerberos"));
        // Granting to an externally authenticated user is fine; to a users.xml one it is not.
        assert!(e("local_directory", "['kerberos']").read_only_storage("user `u`").is_none());
        assert!(e("users_xml", "").read_only_storage("user `u`").is_some());
    }
}

//! `clickhouse_user`: the password is set as `IDENTIFIED WITH sha256_hash BY '<hex>' SALT '<salt>'`,
//! the hash computed here (sha256 of password and salt, the salt 32 random bytes in uppercase hex,
//! as ClickHouse makes them), so no plaintext crosses the wire. It is verified by an HTTP login as
//! the user (`SELECT 1`): the server keeps no readable hash (`auth_params` is `{}`).

use aspects_core::secret::REDACTED;
use aspects_core::{Live, Resource, Value, Verification};
use aspects_engine::provider::ProviderError;
use sha2::{Digest, Sha256};

use crate::client::{ChError, Handle, array_param, attrs, code, col, ident, literal};
use crate::schema::str_attr;

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

impl Handle {
    /// Which of the users exist (one query), then one login per existing user.
    pub(crate) async fn read_users(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let found = self.users(desired.iter().map(|r| str_attr(&r.attrs, "name"))).await?;
        let mut out = Vec::with_capacity(desired.len());
        for r in desired {
            let name = str_attr(&r.attrs, "name");
            if !found.contains(name) {
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

    /// User names that exist, of those given (one query).
    pub(crate) async fn users<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<std::collections::BTreeSet<String>, ProviderError> {
        let rows = self
            .rows(
                "SELECT name FROM system.users WHERE has({names:Array(String)}, name)",
                &[("names", &array_param(names))],
            )
            .await
            .map_err(|e| self.err(&e, "reading users"))?;
        Ok(rows.iter().map(|r| col(r, "name")).collect())
    }

    /// `CREATE USER` (fails if it exists) or `ALTER USER` with a new hash and salt.
    pub(crate) async fn set_user(&self, r: &Resource, create: bool) -> Result<Result<(), ChError>, ProviderError> {
        let name = str_attr(&r.attrs, "name");
        let cred = Credential::new(password(r));
        let verb = if create { "CREATE" } else { "ALTER" };
        let sql = format!("{verb} USER {}{} {}", ident(name), self.on_cluster(), cred.clause());
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
}

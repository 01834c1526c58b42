//! Turning driver errors into messages that say what failed, where, and what to do, without
//! secret material: server errors can quote statement text ("near '...'"), so statements that
//! carry a password or its hash have that text cut and every secret form replaced.

use aspects_core::secret::REDACTED;
use aspects_engine::provider::ProviderError;
use sqlx::mysql::MySqlDatabaseError;

/// What a provider's messages call its server and its settings, and what its login needs.
pub struct System {
    /// The server as messages name it ("MySQL").
    pub server: &'static str,
    /// The plan file block holding `url` and `password` ("[providers.mysql]").
    pub block: &'static str,
    /// The hint when the provider's own user lacks a privilege: what it needs.
    pub privileges: &'static str,
    /// The meta database when `meta_database` is not given.
    pub meta_default: &'static str,
    /// The `GET_LOCK` name's prefix: server-wide, so two providers that may lock one server in
    /// one apply need different prefixes (MySQL `aspects`, the LMS `aspects-lms`).
    pub lock_prefix: &'static str,
    /// The load-time check of `url`, run again at connect time for callers that skip loading.
    pub url_check: aspects_core::schema::Check,
}

/// One server as a provider reaches it, for messages.
pub struct Endpoint {
    /// `mysql://HOST:PORT` (never the password).
    pub target: String,
    /// The provider's login user.
    pub admin: String,
    pub system: &'static System,
}

/// "Access denied" at login: 1045, or 1698 when MariaDB refuses a login without a password.
pub const ACCESS_DENIED: &[u16] = &[1045, 1698];

/// The MySQL error number of a server error.
pub fn number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error().and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>()).map(MySqlDatabaseError::number)
}

/// Removes quoted statement text and every given secret string from a server message.
pub fn scrub(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_owned();
    if secrets.is_empty() {
        return out;
    }
    // A syntax error quotes up to 80 characters of the statement from the failure point, which
    // may start inside a secret: drop the quote rather than hope to match a fragment.
    if let Some(start) = out.find("near '") {
        let end = out[start..].find("' at line").map_or(out.len(), |i| start + i + 1);
        out.replace_range(start..end, "near (statement text withheld)");
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, REDACTED);
    }
    out
}

/// Server errors that mean the provider's own user lacks a privilege.
const PRIVILEGE_ERRORS: &[u16] = &[
    1044, // access denied to database
    1142, // command denied on table
    1143, // command denied on column
    1227, // need (at least one of) the X privilege(s)
    1410, // not allowed to create a user with GRANT
];

impl Endpoint {
    /// `doing` is a phrase like "creating user 'app'@'%'"; `secrets` the secret strings the
    /// failed statement carried.
    pub fn error(&self, e: &sqlx::Error, doing: &str, secrets: &[&str]) -> ProviderError {
        let Endpoint { target, admin, system } = self;
        let System { server, block, privileges, .. } = system;
        match e {
            sqlx::Error::Io(io) => ProviderError::new(format!("cannot reach {server} at {target} while {doing}: {io}"))
                .with_hint(format!("is the server running? check `url` in {block}")),
            sqlx::Error::PoolTimedOut => ProviderError::new(format!(
                "cannot reach {server} at {target} while {doing}: timed out waiting for a connection"
            ))
            .with_hint(format!("is the server running and accepting connections? check `url` in {block}")),
            sqlx::Error::Tls(tls) => {
                ProviderError::new(format!("TLS with {server} at {target} failed while {doing}: {tls}"))
                    .with_hint(format!("check the server's certificate, or `ssl-mode` in the `url` of {block}"))
            }
            _ => match (number(e), e.as_database_error()) {
                (Some(n), Some(db)) if ACCESS_DENIED.contains(&n) => ProviderError::new(format!(
                    "{server} at {target} refused the login of the provider user '{admin}': {}",
                    scrub(db.message(), secrets)
                ))
                .with_hint(format!("check the user in `url` and the secret behind `password` in {block}")),
                (Some(n), Some(db)) if PRIVILEGE_ERRORS.contains(&n) => ProviderError::new(format!(
                    "{doing} on {target} failed: the provider user '{admin}' lacks a privilege: {}",
                    scrub(db.message(), secrets)
                ))
                .with_hint(*privileges),
                (Some(1792), Some(db)) => ProviderError::new(format!(
                    "{doing} on {target} was refused: {} (this handle is read-only: plan and drift never write)",
                    scrub(db.message(), secrets)
                )),
                (Some(n), Some(db)) => ProviderError::new(format!(
                    "{doing} on {target} failed: {} (MySQL error {n})",
                    scrub(db.message(), secrets)
                )),
                _ => ProviderError::new(format!("{doing} on {target} failed: {}", scrub(&e.to_string(), secrets))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_cuts_statement_quotes_and_secrets() {
        let msg = "You have an error in your SQL syntax; check the manual near 'd3f' at line 1 (*ABC s3cr3t)";
        let out = scrub(msg, &["s3cr3t", "*ABC"]);
        assert_eq!(
            out,
            "You have an error in your SQL syntax; check the manual near (statement text withheld) at line 1 ((sensitive) (sensitive))"
        );
        assert_eq!(scrub("plain near 'x' at line 1", &[]), "plain near 'x' at line 1");
        assert_eq!(scrub("near 'unterminated", &["q"]), "near (statement text withheld)");
        assert_eq!(scrub("abc", &[""]), "abc");
    }
}

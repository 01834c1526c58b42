//! Checking a user's password without reading it back: `mysql_native_password` stores a
//! deterministic hash we can compute locally; any other plugin is checked by logging in.

use std::time::Duration;

use aspects_core::{Secret, Verification};
use sha1::{Digest, Sha1};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::error;
use crate::sql;

/// `'*' + UPPER(HEX(SHA1(SHA1(pw))))`, what `mysql.user.authentication_string` holds for
/// `mysql_native_password` (empty for an empty password, as the server does).
pub fn native_hash(password: &str) -> String {
    if password.is_empty() {
        return String::new();
    }
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1.as_slice());
    format!("*{}", hex::encode_upper(stage2.as_slice()))
}

/// Every form of a password that a statement may carry, for scrubbing error messages: the
/// plaintext, its escaped literal body, and the native hash in both cases.
pub fn secret_forms(password: &str) -> Vec<String> {
    let escaped = sql::literal(password);
    let hash = native_hash(password);
    vec![password.to_owned(), escaped[1..escaped.len() - 1].to_owned(), hash.to_lowercase(), hash]
}

/// Plugins whose `authentication_string` is the native hash (an empty plugin is an old-style
/// native account).
pub fn is_native(plugin: &str) -> bool {
    plugin.is_empty() || plugin.eq_ignore_ascii_case("mysql_native_password")
}

/// How long a login probe may take before we call the result unknown.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Logs in as `user` with `password` to the provider's server (same host, port and TLS).
/// Success = matches, "access denied" = differs, anything else = unknown with the reason.
pub async fn probe(options: &MySqlConnectOptions, user: &str, password: &Secret) -> Verification {
    let options = options.clone().username(user).password(password.expose()).disable_statement_logging();
    match tokio::time::timeout(PROBE_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => {
            // Closing politely is best effort; the check already succeeded.
            let _ = conn.close().await;
            Verification::Matches
        }
        Ok(Err(e)) if error::number(&e).is_some_and(|n| error::ACCESS_DENIED.contains(&n)) => Verification::Differs,
        Ok(Err(e)) => Verification::Unknown(format!(
            "logging in as '{user}' to check the password failed: {}",
            error::scrub(&e.to_string(), &[password.expose()])
        )),
        Err(_) => Verification::Unknown(format!(
            "logging in as '{user}' to check the password took longer than {}s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_known_vector() {
        assert_eq!(native_hash("password"), "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
        assert_eq!(native_hash(""), "");
    }

    #[test]
    fn secret_forms_cover_escaped_and_hashed() {
        let forms = secret_forms(r"a'b\c");
        assert_eq!(forms[0], r"a'b\c");
        assert_eq!(forms[1], r"a''b\\c");
        assert!(forms[3].starts_with('*') && forms[2] == forms[3].to_lowercase());
    }

    #[test]
    fn native_plugins() {
        assert!(is_native("mysql_native_password") && is_native(""));
        assert!(!is_native("caching_sha2_password") && !is_native("ed25519"));
    }
}

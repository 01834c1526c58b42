//! SQLAlchemy URIs with a password inside. Superset never gives a stored password back: it
//! answers with the URI masked (`XXXXXXXXXX` in the password's place). So a database is compared
//! in two parts: the masked URIs as text (user, host, port, database, query), and the password
//! through a fingerprint this provider keeps in the database's `extra` JSON, written in the same
//! request as the URI: sha256 of a random salt and the whole URI, as ClickHouse stores
//! passwords. A password changed by hand in Superset's UI keeps the old fingerprint, so that
//! drift is not seen; the fingerprint only proves that what aspects last wrote is the plan's.

use sha2::{Digest, Sha256};

/// What Superset writes in the password's place.
pub const MASK: &str = "XXXXXXXXXX";

/// Where the user information ends and the host starts: the `@` of the authority, if any.
fn userinfo(uri: &str) -> Option<(usize, usize)> {
    let start = uri.find("://")? + 3;
    let end = uri[start..].find(['/', '?', '#']).map_or(uri.len(), |e| start + e);
    let at = uri[start..end].rfind('@')? + start;
    Some((start, at))
}

/// The URI as Superset shows it: the password replaced by [`MASK`].
pub fn masked(uri: &str) -> String {
    match userinfo(uri) {
        // No password, or an empty one, is shown as it is.
        Some((start, at)) => match uri[start..at].find(':') {
            Some(colon) if start + colon + 1 < at => format!("{}{MASK}{}", &uri[..start + colon + 1], &uri[at..]),
            _ => uri.to_owned(),
        },
        None => uri.to_owned(),
    }
}

/// The password inside `uri`, percent-decoded (the importer's `passwords` field takes it raw).
pub fn password(uri: &str) -> Option<String> {
    let (start, at) = userinfo(uri)?;
    let (_, encoded) = uri[start..at].split_once(':')?;
    Some(percent_encoding::percent_decode_str(encoded).decode_utf8_lossy().into_owned())
}

/// A masked URI as plans show it.
pub fn shown(masked: &str) -> String {
    match userinfo(masked) {
        Some((start, at)) => {
            let user = masked[start..at].replacen(&format!(":{MASK}"), ":(sensitive)", 1);
            format!("{}{user}{}", &masked[..start], &masked[at..])
        }
        None => masked.to_owned(),
    }
}

/// `DIALECT[+DRIVER]://[USER[:PASSWORD]@]HOST...`; the message never quotes the URI.
pub fn check(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("the SQLAlchemy URI has no `://`".into());
    };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'));
    if !scheme_ok {
        return Err("the SQLAlchemy URI does not start with a dialect name such as `clickhousedb+connect`".into());
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the SQLAlchemy URI contains whitespace or a control character".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return Err("the SQLAlchemy URI names no host".into());
    }
    Ok(())
}

/// A new fingerprint of `uri`: `SALT$SHA256`, the salt 16 random bytes in hex.
pub fn fingerprint(uri: &str) -> String {
    let salt = hex::encode(rand::random::<[u8; 16]>());
    format!("{salt}${}", digest(&salt, uri))
}

/// Whether `marker` is a fingerprint of `uri`.
pub fn matches(marker: &str, uri: &str) -> bool {
    marker.split_once('$').is_some_and(|(salt, hash)| digest(salt, uri) == hash)
}

fn digest(salt: &str, uri: &str) -> String {
    hex::encode(Sha256::digest(format!("{salt}\n{uri}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_and_only_it_is_masked() {
        // Special characters in a password are percent-encoded in a URI: `@`, `:` and `/` never
        // appear raw in it.
        let uri = "clickhousedb+connect://ch_report:p%40ss%3Aw%2Frd@127.0.0.1:8123/xapi?x=1";
        let plain = "clickhousedb+connect://ch_report:s3cret@127.0.0.1:8123/xapi";
        assert_eq!(masked(plain), format!("clickhousedb+connect://ch_report:{MASK}@127.0.0.1:8123/xapi"));
        assert_eq!(shown(&masked(plain)), "clickhousedb+connect://ch_report:(sensitive)@127.0.0.1:8123/xapi");
        assert_eq!(password(uri).as_deref(), Some("p@ss:w/rd"));
        assert_eq!(password("mysql://u@h/d"), None);
        assert_eq!(masked(uri), format!("clickhousedb+connect://ch_report:{MASK}@127.0.0.1:8123/xapi?x=1"));
        assert_eq!(masked("sqlite:///x.db"), "sqlite:///x.db");
        assert_eq!(masked("mysql://u@h/d"), "mysql://u@h/d");
        assert_eq!(masked("clickhousedb://default:@h/d"), "clickhousedb://default:@h/d");
    }

    #[test]
    fn fingerprints_verify_without_the_password() {
        let f = fingerprint("db://u:pw@h/x");
        assert!(matches(&f, "db://u:pw@h/x"));
        assert!(!matches(&f, "db://u:pw2@h/x"));
        assert!(!f.contains("pw"));
        assert_ne!(f, fingerprint("db://u:pw@h/x"), "salted");
    }

    #[test]
    fn malformed_uris_are_refused_without_echo() {
        assert_eq!(check("clickhousedb+connect://u:pw@h:8123/xapi"), Ok(()));
        for bad in ["no-scheme-pw", "1db://h", "db://u:pw@/x", "db://u:p w@h/x"] {
            let e = check(bad).unwrap_err();
            assert!(!e.contains("pw"), "{e}");
        }
    }
}

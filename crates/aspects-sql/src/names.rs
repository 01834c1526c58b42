//! Load-time checks of what names a MySQL-protocol server and how a provider reaches it: the
//! server URL (never with a password) and database names. Shared by the MySQL and LMS providers.

use aspects_core::schema::Check;
use aspects_core::schema::check_max_concurrency;
use aspects_core::{AttrSchema, AttrType, Value};

/// What every `[providers.X]` block of a MySQL-protocol provider takes: the server `url` (checked
/// by `url_check`, documented by `url_doc`), the login's `password`, `max_concurrency` and the
/// `meta_database` holding the ownership records and lock holder rows.
pub fn provider_attrs(url_doc: &'static str, url_check: Check, meta_default: &'static str) -> Vec<AttrSchema> {
    vec![
        AttrSchema::new("url", AttrType::String, url_doc).required().check(url_check),
        AttrSchema {
            sensitive: true,
            ..AttrSchema::new("password", AttrType::String, "The login user's password, from `[secrets]`.")
        },
        AttrSchema::new("max_concurrency", AttrType::Int, "Statements this provider runs at once during apply.")
            .default(DEFAULT_MAX_CONCURRENCY)
            .check(check_max_concurrency),
        AttrSchema::new(
            "meta_database",
            AttrType::String,
            "Database holding this tool's ownership records and lock holder rows.",
        )
        .default(meta_default)
        .check(check_db_name),
    ]
}

pub const DEFAULT_MAX_CONCURRENCY: i64 = 4;

pub fn string(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| format!("expected a string, found {}", v.type_name()))
}

/// Characters a name must not hold: control characters, invisible ones that make two names look
/// alike or reorder text (bidi controls, zero-width characters), and characters outside the
/// Basic Multilingual Plane (emoji), which MySQL and MariaDB cannot store in a name.
pub fn no_control(what: &str, s: &str) -> Result<(), String> {
    use aspects_core::schema::invisible;
    match s.chars().find(|c| c.is_control() || invisible(*c) || u32::from(*c) > 0xffff) {
        Some(c) if c.is_control() => Err(format!("{what} {s:?} contains the control character {c:?}; remove it")),
        Some(c) if invisible(c) => Err(format!(
            "{what} {s:?} contains the invisible character U+{:04X} (zero-width or text direction), which makes \
             names look alike; remove it",
            u32::from(c)
        )),
        Some(c) => Err(format!(
            "{what} {s:?} contains {c:?} (U+{:X}), which MySQL and MariaDB cannot store in a name (only \
             characters up to U+FFFF); remove it",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// Query parameters that would carry a password (compared case-insensitively).
const PASSWORD_PARAMS: &[&str] = &["password", "pass", "pwd", "passwd"];

/// A URL carries no password in any spelling: `user:pw@`, `user%3Apw@` (decoded, it is the
/// same thing), or `?password=` / `pass` / `pwd`. The error never quotes the URL.
pub fn check_url(v: &Value) -> Result<(), String> {
    check_url_beside(v, "password")
}

/// [`check_url`] for a URL whose password goes in the attribute `password_attr`, which the
/// error names.
pub fn check_url_beside(v: &Value, password_attr: &str) -> Result<(), String> {
    let text = string(v)?;
    if !text.starts_with("mysql://") {
        return Err("this is not a MySQL URL; write it as `mysql://USER@HOST:PORT`".into());
    }
    let refused = format!(
        "the URL contains a password: put the password in `{password_attr} = \"${{secrets.NAME}}\"`, never in the URL"
    );
    let url =
        url::Url::parse(text).map_err(|e| format!("cannot read the URL: {e}; write it as `mysql://USER@HOST:PORT`"))?;
    // `url` reports `user:@` as no password; the colon still says one was meant.
    let user = percent_encoding::percent_decode_str(url.username()).decode_utf8_lossy();
    let authority = text["mysql://".len()..].split(['/', '?', '#']).next().unwrap_or_default();
    if url.password().is_some()
        || user.contains(':')
        || authority.rsplit_once('@').is_some_and(|(u, _)| u.contains(':'))
    {
        return Err(refused);
    }
    if url.query_pairs().any(|(k, _)| PASSWORD_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p))) {
        return Err(refused);
    }
    text.parse::<sqlx::mysql::MySqlConnectOptions>()
        .map(|_| ())
        .map_err(|_| "cannot read the URL; write it as `mysql://USER@HOST:PORT`".into())
}

pub fn check_db_name(v: &Value) -> Result<(), String> {
    let name = string(v)?;
    no_control("the database name", name)?;
    if name.is_empty() || name.chars().count() > 64 {
        return Err(format!("database name {name:?} must be 1 to 64 characters long"));
    }
    if name.ends_with(' ') {
        return Err(format!("database name {name:?} ends with a space, which MySQL does not allow"));
    }
    Ok(())
}

//! The ClickHouse side of the harness: the server the tests use, SQL over plain HTTP (to inject
//! drift and look at results), plan headers, and cleanup of what a sandbox created.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;

use crate::Sandbox;

const STACK_URL: &str = "ASPECTS_STACK_CLICKHOUSE_URL";
/// A real ClickHouse server to run the same tests against, when one exists.
const TEST_URL: &str = "ASPECTS_TEST_CLICKHOUSE_URL";

/// ASPECTS_TEST_CLICKHOUSE_URL, else the stack's ASPECTS_STACK_CLICKHOUSE_URL (environment, then
/// target/stack/env). `http://HOST:PORT`, user `default` without password.
pub fn url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var(TEST_URL) {
        Ok(url) if !url.is_empty() => url,
        _ => crate::stack_env(STACK_URL),
    })
    .clone()
}

/// One statement over HTTP as `default`: the body, or the server's error text.
pub fn query(sql: &str) -> Result<String, String> {
    query_as("default", "", sql)
}

/// Can `user` log in with `password`?
pub fn can_login(user: &str, password: &str) -> bool {
    query_as(user, password, "SELECT 1").is_ok()
}

/// The error code of a login (`X-ClickHouse-Exception-Code`), `None` when it succeeds.
pub fn login_code(user: &str, password: &str) -> Option<u32> {
    let err = query_as(user, password, "SELECT 1").err()?;
    err.strip_prefix("Code: ")?.split('.').next()?.parse().ok()
}

fn query_as(user: &str, password: &str, sql: &str) -> Result<String, String> {
    let url = url();
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(address).map_err(|e| format!("{url}: {e}"))?;
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: {address}\r\nX-ClickHouse-User: {user}\r\nX-ClickHouse-Key: {password}\r\n\
         Content-Length: {}\r\n\r\n{sql}",
        sql.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(body.to_owned())
    } else {
        Err(body.to_owned())
    }
}

/// Test-authored SQL (drift injection), panicking on error.
pub fn sql(statements: &[&str]) {
    for s in statements {
        query(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// The first line of a query's answer, if any.
pub fn one(statement: &str) -> Option<String> {
    let out = query(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
    out.lines().next().map(str::to_owned)
}

/// A plan file for a ClickHouse sandbox: its deployment, and a provider whose meta database is
/// the sandbox's own (so tests never wait on each other's apply lock). `@@` is the prefix. The
/// lease is long enough for a loaded machine: no test waits for it to run out.
pub fn plan(s: &Sandbox, body: &str) -> String {
    plan_leased(s, body, 30)
}

/// `plan` with a lease of `secs`: short where a test waits for a killed run's lease to run out
/// (its holder keeps it meanwhile by its heartbeat, however slow the machine).
pub fn plan_leased(s: &Sandbox, body: &str, secs: u32) -> String {
    format!(
        "[deployment]\nname = \"{p}dep\"\n\n[providers.clickhouse]\nurl = \"{url}\"\nmeta_database = \"{p}meta\"\n\
         lock_lease_seconds = {secs}\n\n{}",
        body.replace("@@", &s.prefix),
        p = s.prefix,
        url = url()
    )
}

/// sha256 of a text, in hex: a ClickHouse password hash (of password and salt).
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Drops every database, function, user and role whose name starts with the prefix.
pub fn cleanup(prefix: &str) {
    let like = prefix.replace('_', "\\_");
    let list = |sql: String| query(&sql).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>();
    for db in list(format!("SELECT name FROM system.databases WHERE name LIKE '{like}%'")) {
        let _ = query(&format!("DROP DATABASE IF EXISTS `{}` SYNC", db.replace('\\', "\\\\").replace('`', "\\`")));
    }
    for u in list(format!("SELECT name FROM system.users WHERE name LIKE '{like}%'")) {
        let _ = query(&format!("DROP USER IF EXISTS `{u}`"));
    }
    for r in list(format!("SELECT name FROM system.roles WHERE name LIKE '{like}%'")) {
        let _ = query(&format!("DROP ROLE IF EXISTS `{r}`"));
    }
    for f in list(format!("SELECT name FROM system.functions WHERE origin = 'SQLUserDefined' AND name LIKE '{like}%'"))
    {
        let _ = query(&format!("DROP FUNCTION IF EXISTS `{f}`"));
    }
}

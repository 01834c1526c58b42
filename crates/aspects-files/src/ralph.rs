//! Ralph's `auth.json`: a JSON array of `{username, hash, scopes, agent}` (Ralph's
//! `ServerUsersCredentials`). Hashes are bcrypt, made here; a live hash that still verifies
//! against the desired password is kept as it is, so a converged file is never rewritten (a
//! fresh salt on every run is what Tutor does, and it restarts Ralph for nothing).
//!
//! Rotation is `Replace`: Ralph refuses two entries with one username
//! (`ensure_unique_username`) and checks only the first match, so it cannot accept an old and a
//! new password at once. It also reads the file once per process and caches successful logins,
//! so the file's `on_change` must restart it.

use std::collections::BTreeMap;

use aspects_core::schema::AttrsError;
use aspects_core::{Resource, Secret, Text, Value};
use serde_json::{Map, Value as J};

/// The IFIs an xAPI agent is identified by; Ralph wants exactly one.
const IFIS: [&str; 4] = ["mbox", "mbox_sha1sum", "openid", "account"];

/// The load-time check of `users`: each a table with a `username`, a `password` from
/// `[secrets]`, `scopes` and an `agent` with exactly one IFI; usernames unique (Ralph refuses
/// the whole file otherwise).
pub fn check_users(attrs: &BTreeMap<String, Value>) -> Result<(), AttrsError> {
    let bad = |message: String, hint: &str| AttrsError { attr: Some("users"), message, hint: hint.to_owned() };
    let hint = "write users = [{ username = \"lms\", password = \"${secrets.RALPH_LMS_PASSWORD}\", scopes = [\"statements/write\"], agent = { mbox = \"mailto:lms@example.com\" } }]";
    let Some(users) = attrs.get("users").and_then(Value::as_list) else { return Ok(()) };
    let mut seen = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let Value::Map(m) = u else { return Err(bad(format!("users[{i}] is {}, not a table", u.type_name()), hint)) };
        let Some(name) = m.get("username").and_then(Value::as_str) else {
            return Err(bad(format!("users[{i}] has no `username`"), hint));
        };
        if seen.contains(&name) {
            return Err(bad(format!("username {name:?} appears twice; Ralph refuses the whole file then"), hint));
        }
        seen.push(name);
        if !matches!(m.get("password"), Some(Value::Sensitive(_))) {
            return Err(bad(format!("users[{i}].password must come from [secrets]"), hint));
        }
        let ifis = match m.get("agent") {
            Some(Value::Map(a)) => IFIS.iter().filter(|k| a.contains_key(**k)).count(),
            _ => 0,
        };
        if ifis != 1 {
            return Err(bad(format!("users[{i}].agent must have exactly one of {}", IFIS.join(", ")), hint));
        }
        if let Some(extra) = m.keys().find(|k| !["username", "password", "scopes", "agent"].contains(&k.as_str())) {
            return Err(bad(format!("users[{i}] has an unknown key `{extra}`"), hint));
        }
    }
    Ok(())
}

struct User<'a> {
    name: &'a str,
    password: &'a Secret,
    scopes: J,
    agent: J,
}

fn users(r: &Resource) -> Vec<User<'_>> {
    let list = r.get("users").and_then(Value::as_list).unwrap_or_default();
    list.iter()
        .filter_map(|u| match u {
            Value::Map(m) => Some(User {
                name: m.get("username").and_then(Value::as_str)?,
                password: m.get("password").and_then(Value::as_secret)?,
                scopes: m.get("scopes").map_or(J::Array(Vec::new()), Value::to_json),
                agent: m.get("agent").map_or(J::Object(Map::new()), Value::to_json),
            }),
            _ => None,
        })
        .collect()
}

/// The live file's entries, or none when it is missing or not Ralph's format.
fn entries(live: Option<&[u8]>) -> Vec<Map<String, J>> {
    let parsed: Option<Vec<J>> = live.and_then(|b| serde_json::from_slice(b).ok());
    parsed.unwrap_or_default().into_iter().filter_map(|e| if let J::Object(m) = e { Some(m) } else { None }).collect()
}

fn verifies(password: &Secret, hash: Option<&J>) -> bool {
    hash.and_then(J::as_str).is_some_and(|h| bcrypt::verify(password.expose(), h).unwrap_or(false))
}

/// The file to write: live hashes that still verify kept, others made with `cost`. Hashes are
/// marked sensitive, so no plan or diff shows them.
pub fn content(r: &Resource, live: Option<&[u8]>, cost: u32) -> Result<Text, String> {
    let live = entries(live);
    let mut out = Vec::new();
    let mut hashes = Vec::new();
    for u in users(r) {
        let old =
            live.iter().find(|e| e.get("username").and_then(J::as_str) == Some(u.name)).and_then(|e| e.get("hash"));
        let hash = match old {
            Some(h) if verifies(u.password, Some(h)) => h.as_str().unwrap_or_default().to_owned(),
            _ => bcrypt::hash(u.password.expose(), cost).map_err(|e| format!("bcrypt: {e}"))?,
        };
        hashes.push(Secret::new(hash.as_str()));
        let mut entry = Map::new();
        entry.insert("username".into(), J::from(u.name));
        entry.insert("hash".into(), J::from(hash));
        entry.insert("scopes".into(), u.scopes);
        entry.insert("agent".into(), u.agent);
        out.push(J::Object(entry));
    }
    let text = serde_json::to_string_pretty(&J::Array(out)).expect("JSON") + "\n";
    Ok(Text::with_secrets(text, &hashes))
}

/// The live users as the plan compares them: each entry's password is the desired secret when
/// its hash verifies against it, and a value no plan holds otherwise. Entries added by hand
/// appear too, so they are drift.
pub fn live_users(r: &Resource, live: &[u8]) -> Value {
    let desired = users(r);
    let list = entries(Some(live)).into_iter().map(|e| {
        let name = e.get("username").and_then(J::as_str).unwrap_or_default();
        let wanted = desired.iter().find(|u| u.name == name);
        let password = match wanted {
            Some(u) if verifies(u.password, e.get("hash")) => u.password.clone(),
            _ => Secret::new("\0differs"),
        };
        let mut m = BTreeMap::from([
            ("username".to_owned(), Value::from(name)),
            ("password".to_owned(), Value::Sensitive(password)),
        ]);
        for key in ["scopes", "agent"] {
            if let Some(v) = e.get(key) {
                m.insert(key.to_owned(), from_json(v));
            }
        }
        Value::Map(m)
    });
    Value::List(list.collect())
}

/// JSON as a plan value, in the shapes plan files write (tables, lists, strings).
fn from_json(v: &J) -> Value {
    match v {
        J::String(s) => Value::from(s.as_str()),
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => n.as_i64().map_or_else(|| Value::from(n.to_string()), Value::Int),
        J::Array(a) => Value::List(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
        J::Null => Value::from(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(pw: &str) -> Resource {
        let user = Value::Map(BTreeMap::from([
            ("username".to_owned(), Value::from("lms")),
            ("password".to_owned(), Value::Sensitive(Secret::new(pw))),
            ("scopes".to_owned(), Value::List(vec![Value::from("statements/write")])),
            ("agent".to_owned(), Value::Map(BTreeMap::from([("mbox".to_owned(), Value::from("mailto:lms@x"))]))),
        ]));
        Resource { attrs: BTreeMap::from([("users".to_owned(), Value::List(vec![user]))]), ..Resource::default() }
    }

    #[test]
    fn a_hash_that_verifies_is_kept_byte_for_byte_and_a_new_password_rehashes() {
        let first = content(&resource("pw-one"), None, 4).unwrap();
        assert!(!first.expose().contains("pw-one") && first.masked().contains(r#""hash": "(sensitive)""#));
        let again = content(&resource("pw-one"), Some(first.expose().as_bytes()), 4).unwrap();
        assert_eq!(again.expose(), first.expose());
        let live = live_users(&resource("pw-one"), first.expose().as_bytes());
        assert_eq!(&live, resource("pw-one").get("users").unwrap());
        let rotated = content(&resource("pw-two"), Some(first.expose().as_bytes()), 4).unwrap();
        assert_ne!(rotated.expose(), first.expose());
        assert_ne!(
            &live_users(&resource("pw-two"), first.expose().as_bytes()),
            resource("pw-two").get("users").unwrap()
        );
    }

    #[test]
    fn duplicate_names_and_plain_passwords_are_refused() {
        let mut r = resource("pw");
        let Some(Value::List(l)) = r.attrs.get_mut("users") else { unreachable!() };
        l.push(l[0].clone());
        assert!(check_users(&r.attrs).unwrap_err().message.contains("appears twice"));
        let mut r = resource("pw");
        let Some(Value::List(l)) = r.attrs.get_mut("users") else { unreachable!() };
        let Value::Map(m) = &mut l[0] else { unreachable!() };
        m.insert("password".into(), Value::from("plain"));
        assert!(check_users(&r.attrs).unwrap_err().message.contains("[secrets]"));
    }
}

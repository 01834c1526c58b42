//! `lms_router_configuration`: edx-event-routing-backends' RouterConfiguration, a
//! ConfigurationModel keyed by `route_url`. Rows are never changed: a change appends a row (what
//! `populate_model` does), the newest row per route_url is current, and removing a route appends
//! a disabled copy of it. `username`, `password`, `auth_key` and `configurations` are Fernet
//! tokens made with the LMS's key ([`crate::fernet`]).

use std::collections::BTreeMap;

use aspects_core::{Resource, Value, Verification};
use aspects_engine::provider::ProviderError;
use aspects_sql::{int, placeholders, text};
use sqlx::Row;
use sqlx::mysql::MySqlRow;

use crate::apply::{flag, secret};
use crate::connect::Handle;
use crate::read::{Found, fold};

const TABLE: &str = "event_routing_backends_routerconfiguration";
/// What a value encrypted with another key reads as: it differs from any plan, so apply writes
/// a new row with the configured key.
const OTHER_KEY: &str = "(encrypted with a key other than fernet_key)";

fn blob(r: &MySqlRow, i: usize) -> Result<Option<Vec<u8>>, ProviderError> {
    r.try_get(i).map_err(|e| ProviderError::new(format!("unexpected result from the server: {e}")))
}

pub async fn find(h: &Handle, keys: &[&str]) -> Result<BTreeMap<String, Found>, ProviderError> {
    let sql = format!(
        "SELECT r.route_url, r.enabled, r.backend_name, r.auth_scheme, r.username, r.password, r.auth_key, \
         r.configurations, u.username FROM {TABLE} r LEFT JOIN auth_user u ON u.id = r.changed_by_id \
         WHERE r.id IN (SELECT MAX(id) FROM {TABLE} WHERE route_url IN ({}) GROUP BY route_url)",
        placeholders(keys.len())
    );
    let rows = h.db.sql.rows(&sql, keys).await.map_err(|e| h.db.sql.err(&e, "reading router configurations"))?;
    let decrypt = |token: &[u8]| h.fernet.as_ref().and_then(|k| k.decrypt(token));
    rows.iter()
        .map(|r| {
            let url = text(r, 0)?;
            let mut attrs = BTreeMap::from([
                ("route_url".to_owned(), Value::from(url.as_str())),
                ("enabled".to_owned(), Value::Bool(int(r, 1)?.unwrap_or(0) != 0)),
                ("backend_name".to_owned(), Value::from(text(r, 2)?)),
                (
                    "auth_scheme".to_owned(),
                    Value::from(r.try_get::<Option<String>, _>(3).ok().flatten().unwrap_or_default()),
                ),
            ]);
            if let Some(token) = blob(r, 4)? {
                let user = decrypt(&token).map_or_else(|| OTHER_KEY.to_owned(), |b| String::from_utf8_lossy(&b).into());
                attrs.insert("username".to_owned(), Value::from(user));
            }
            let config = blob(r, 7)?.unwrap_or_default();
            let config = decrypt(&config)
                .and_then(|b| serde_json::from_slice(&b).ok())
                .map_or_else(|| Value::from(OTHER_KEY), |j: serde_json::Value| Value::Json(std::sync::Arc::new(j)));
            attrs.insert("configurations".to_owned(), config);
            if let Ok(Some(by)) = r.try_get::<Option<String>, _>(8) {
                attrs.insert("changed_by".to_owned(), Value::from(by));
            }
            let mut stored = BTreeMap::new();
            for (i, name) in [(5, "password"), (6, "auth_key")] {
                if let Some(token) = blob(r, i)? {
                    stored.insert(name, token);
                }
            }
            Ok((fold(&url), Found { attrs, stored }))
        })
        .collect()
}

/// The stored tokens decrypted and compared here; the plaintext never leaves.
pub fn verify(h: &Handle, desired: &Resource, found: &Found) -> BTreeMap<String, Verification> {
    ["password", "auth_key"]
        .into_iter()
        .filter_map(|attr| {
            let want = secret(desired, attr)?;
            let v = match (found.stored.get(attr), &h.fernet) {
                (None, _) => Verification::Differs,
                (Some(token), Some(key)) => match key.decrypt(token) {
                    Some(plain) if plain == want.as_bytes() => Verification::Matches,
                    Some(_) => Verification::Differs,
                    None => Verification::Unknown("it is encrypted with a key other than fernet_key".into()),
                },
                (Some(_), None) => Verification::Unknown("no fernet_key is configured".into()),
            };
            Some((attr.to_owned(), v))
        })
        .collect()
}

/// The first row of a route, unless the route has one already (then `false`).
pub async fn make(h: &Handle, r: &Resource) -> Result<bool, ProviderError> {
    insert(h, r, true).await
}

/// A new current row with the plan's values.
pub async fn append(h: &Handle, r: &Resource) -> Result<(), ProviderError> {
    insert(h, r, false).await.map(drop)
}

async fn insert(h: &Handle, r: &Resource, only_first: bool) -> Result<bool, ProviderError> {
    let url = r.str("route_url").unwrap_or_default();
    let key = h.fernet.as_ref().ok_or_else(|| ProviderError::new("[providers.lms] has no fernet_key"))?;
    let seal = |s: Option<&str>| s.map(|s| key.encrypt(s.as_bytes()));
    let config = r.get("configurations").map_or(serde_json::Value::Null, |v| v.to_json());
    let (password, auth_key) = (secret(r, "password"), secret(r, "auth_key"));
    let (pw_token, key_token) = (seal(password), seal(auth_key));
    let tokens: Vec<String> =
        [&pw_token, &key_token].into_iter().flatten().map(|t| String::from_utf8_lossy(t).into_owned()).collect();
    let mut secrets: Vec<&str> = [password, auth_key].into_iter().flatten().collect();
    secrets.extend(tokens.iter().map(String::as_str));
    let guard = if only_first {
        format!("WHERE NOT EXISTS (SELECT 1 FROM {TABLE} WHERE route_url = ?)")
    } else {
        String::new()
    };
    let sql = format!(
        "INSERT INTO {TABLE} (change_date, changed_by_id, enabled, backend_name, route_url, auth_scheme, auth_key, \
         username, password, configurations) \
         SELECT UTC_TIMESTAMP(6), (SELECT id FROM auth_user WHERE username = ?), ?, ?, ?, NULLIF(?, ''), ?, ?, ?, ? \
         FROM DUAL {guard}"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(r.str("changed_by"))
        .bind(flag(r, "enabled").unwrap_or(true))
        .bind(r.str("backend_name").unwrap_or("xAPI"))
        .bind(url)
        .bind(r.str("auth_scheme").unwrap_or_default())
        .bind(key_token.clone())
        .bind(seal(r.str("username")))
        .bind(pw_token.clone())
        .bind(key.encrypt(config.to_string().as_bytes()));
    if only_first {
        q = q.bind(url);
    }
    let n = h.db.sql.write(q, &format!("writing the router configuration of {url}"), &secrets).await?;
    Ok(n > 0)
}

/// A disabled copy of the current row: the route stops receiving events, its history stays.
pub async fn disable(h: &Handle, url: &str) -> Result<(), ProviderError> {
    let sql = format!(
        "INSERT INTO {TABLE} (change_date, changed_by_id, enabled, backend_name, route_url, auth_scheme, auth_key, \
         username, password, configurations) \
         SELECT UTC_TIMESTAMP(6), changed_by_id, 0, backend_name, route_url, auth_scheme, auth_key, username, password, \
         configurations FROM {TABLE} WHERE id = (SELECT MAX(id) FROM {TABLE} WHERE route_url = ?) AND enabled = 1"
    );
    h.db.sql
        .write(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(url), &format!("disabling the route to {url}"), &[])
        .await
        .map(drop)
}

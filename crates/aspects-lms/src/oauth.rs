//! `lms_oauth_application`: a django-oauth-toolkit application and edx-platform's
//! ApplicationAccess, as `create_dot_application --update` leaves them: client id, secret,
//! redirect URIs, grant and client type and owner are UPDATED when they differ (Tutor runs the
//! command without `--update`, so its changes never reach an existing application).

use std::collections::BTreeMap;

use aspects_core::{Resource, Value, Verification};
use aspects_engine::provider::ProviderError;
use aspects_sql::{int, placeholders, text};
use sqlx::Row;

use crate::apply::{flag, secret, strings};
use crate::connect::Handle;
use crate::password;
use crate::read::{Found, fold};

pub async fn find(h: &Handle, keys: &[&str]) -> Result<BTreeMap<String, Found>, ProviderError> {
    let sql = format!(
        "SELECT a.name, u.username, a.client_id, a.client_secret, a.redirect_uris, a.client_type, \
         a.authorization_grant_type, a.skip_authorization, a.algorithm, x.scopes, a.id \
         FROM oauth2_provider_application a LEFT JOIN auth_user u ON u.id = a.user_id \
         LEFT JOIN oauth_dispatch_applicationaccess x ON x.application_id = a.id \
         WHERE a.name IN ({}) ORDER BY a.id",
        placeholders(keys.len())
    );
    let rows = h.db.sql.rows(&sql, keys).await.map_err(|e| h.db.sql.err(&e, "reading OAuth applications"))?;
    let mut out: BTreeMap<String, Found> = BTreeMap::new();
    for r in &rows {
        let name = text(r, 0)?;
        if out.contains_key(&fold(&name)) {
            return Err(ProviderError::new(format!(
                "the LMS has several OAuth applications named {name:?} (one has id {})",
                int(r, 10)?.unwrap_or(0)
            ))
            .with_hint("aspects manages one application per name: delete or rename the extra ones in the LMS admin"));
        }
        let list = |s: String, sep: char| {
            Value::List(s.split(sep).map(str::trim).filter(|p| !p.is_empty()).map(Value::from).collect())
        };
        let mut attrs = BTreeMap::from([
            ("name".to_owned(), Value::from(name.as_str())),
            ("client_id".to_owned(), Value::from(text(r, 2)?)),
            ("redirect_uris".to_owned(), list(text(r, 4)?.replace(char::is_whitespace, " "), ' ')),
            ("client_type".to_owned(), Value::from(text(r, 5)?)),
            ("authorization_grant_type".to_owned(), Value::from(text(r, 6)?)),
            ("skip_authorization".to_owned(), Value::Bool(int(r, 7)?.unwrap_or(0) != 0)),
            ("algorithm".to_owned(), Value::from(text(r, 8)?)),
        ]);
        if let Ok(Some(user)) = r.try_get::<Option<String>, _>(1) {
            attrs.insert("user".to_owned(), Value::from(user));
        }
        if let Ok(Some(scopes)) = r.try_get::<Option<String>, _>(9) {
            attrs.insert("scopes".to_owned(), list(scopes, ','));
        }
        let stored = BTreeMap::from([("client_secret", text(r, 3)?.into_bytes())]);
        out.insert(fold(&name), Found { attrs, stored });
    }
    Ok(out)
}

/// DOT 1.x stores the secret in plain text, DOT >= 2 as a Django password hash: either is
/// verified without the stored value leaving this function.
pub fn verify(desired: &Resource, found: &Found) -> BTreeMap<String, Verification> {
    let Some(want) = secret(desired, "client_secret") else { return BTreeMap::new() };
    let stored = found.stored.get("client_secret").map(|b| String::from_utf8_lossy(b)).unwrap_or_default();
    let v = if password::is_hash(&stored) {
        password::verify(want, &stored)
    } else if constant_time_eq(want.as_bytes(), stored.as_bytes()) {
        Verification::Matches
    } else {
        Verification::Differs
    };
    BTreeMap::from([("client_secret".to_owned(), v)])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client secret as this LMS stores it.
fn stored_secret(h: &Handle, plain: &str) -> String {
    if h.hash_client_secrets { password::hash(plain) } else { plain.to_owned() }
}

/// Inserts the application unless one with that name exists, and its access row when the plan
/// gives scopes. `false` when nothing was made; an owner missing from the LMS is an error.
pub async fn make(h: &Handle, r: &Resource) -> Result<bool, ProviderError> {
    let name = r.str("name").unwrap_or_default();
    let user = r.str("user").unwrap_or_default();
    let plain = secret(r, "client_secret").unwrap_or_default();
    let stored = stored_secret(h, plain);
    let made =
        h.db.sql
            .write(
                sqlx::query(
                    "INSERT INTO oauth2_provider_application (client_id, user_id, redirect_uris, client_type, \
                 authorization_grant_type, client_secret, name, skip_authorization, created, updated, algorithm) \
                 SELECT ?, u.id, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), ? FROM auth_user u \
                 WHERE u.username = ? AND NOT EXISTS (SELECT 1 FROM oauth2_provider_application WHERE name = ?)",
                )
                .bind(r.str("client_id").unwrap_or_default())
                .bind(strings(r, "redirect_uris").unwrap_or_default().join(" "))
                .bind(r.str("client_type").unwrap_or("confidential"))
                .bind(r.str("authorization_grant_type").unwrap_or("authorization-code"))
                .bind(&stored)
                .bind(name)
                .bind(flag(r, "skip_authorization").unwrap_or(false))
                .bind(r.str("algorithm").unwrap_or_default())
                .bind(user)
                .bind(name),
                &format!("creating OAuth application {name}"),
                &[plain, &stored],
            )
            .await?;
    if made == 0 {
        require_user(h, user, name).await?;
        return Ok(false);
    }
    if r.get("scopes").is_some() {
        access(h, r).await?;
    }
    Ok(true)
}

/// The owner must exist: name it rather than report "nothing was made".
async fn require_user(h: &Handle, user: &str, app: &str) -> Result<(), ProviderError> {
    let rows =
        h.db.sql
            .rows("SELECT 1 FROM auth_user WHERE username = ?", &[user])
            .await
            .map_err(|e| h.db.sql.err(&e, "reading LMS users"))?;
    if rows.is_empty() {
        return Err(ProviderError::new(format!(
            "OAuth application {app}: its user {user:?} does not exist in the LMS; nothing was changed"
        ))
        .with_hint(
            "create the user first (an lms_user in the plan, referenced as `user = \"${lms_user.X.username}\"`)",
        ));
    }
    Ok(())
}

/// ApplicationAccess: the scopes, comma-separated, one row per application.
async fn access(h: &Handle, r: &Resource) -> Result<(), ProviderError> {
    let name = r.str("name").unwrap_or_default();
    h.db.sql
        .write(
            sqlx::query(
                "INSERT INTO oauth_dispatch_applicationaccess (scopes, filters, application_id) \
                 SELECT ?, NULL, id FROM oauth2_provider_application WHERE name = ? \
                 ON DUPLICATE KEY UPDATE scopes = VALUES(scopes)",
            )
            .bind(strings(r, "scopes").unwrap_or_default().join(","))
            .bind(name),
            &format!("writing the scopes of OAuth application {name}"),
            &[],
        )
        .await
        .map(drop)
}

/// Sets every application column to the plan's values in one statement (the owner through a
/// join, so a missing owner changes nothing), then the scopes when they changed.
pub async fn update(h: &Handle, changed: &[&str], r: &Resource) -> Result<(), ProviderError> {
    let name = r.str("name").unwrap_or_default();
    let user = r.str("user").unwrap_or_default();
    let app_changed = changed.iter().any(|c| *c != "scopes");
    if app_changed {
        let plain = secret(r, "client_secret").unwrap_or_default();
        // Re-hashing an unchanged secret would only churn the stored value.
        let stored = changed.contains(&"client_secret").then(|| stored_secret(h, plain));
        let updated =
            h.db.sql
                .write(
                    sqlx::query(
                        "UPDATE oauth2_provider_application a JOIN auth_user u ON u.username = ? \
                     SET a.user_id = u.id, a.client_id = ?, a.client_secret = IF(?, ?, a.client_secret), \
                     a.redirect_uris = ?, a.client_type = ?, a.authorization_grant_type = ?, \
                     a.skip_authorization = ?, a.algorithm = ?, a.updated = UTC_TIMESTAMP(6) WHERE a.name = ?",
                    )
                    .bind(user)
                    .bind(r.str("client_id").unwrap_or_default())
                    .bind(stored.is_some())
                    .bind(stored.as_deref().unwrap_or_default())
                    .bind(strings(r, "redirect_uris").unwrap_or_default().join(" "))
                    .bind(r.str("client_type").unwrap_or("confidential"))
                    .bind(r.str("authorization_grant_type").unwrap_or("authorization-code"))
                    .bind(flag(r, "skip_authorization").unwrap_or(false))
                    .bind(r.str("algorithm").unwrap_or_default())
                    .bind(name),
                    &format!("updating OAuth application {name}"),
                    &[plain, stored.as_deref().unwrap_or_default()],
                )
                .await?;
        if updated == 0 {
            require_user(h, user, name).await?;
        }
    }
    if changed.contains(&"scopes") {
        access(h, r).await?;
    }
    Ok(())
}

/// Deletes the application with what Django's cascade deletes: its tokens, grants and access
/// row. Refresh tokens point at access tokens and back, so that link is cut first.
pub async fn remove(h: &Handle, name: &str) -> Result<(), ProviderError> {
    let doing = format!("deleting OAuth application {name}");
    let of_app = "IN (SELECT id FROM oauth2_provider_application WHERE name = ?)";
    for sql in [
        format!("UPDATE oauth2_provider_refreshtoken SET access_token_id = NULL WHERE application_id {of_app}"),
        format!("DELETE FROM oauth2_provider_accesstoken WHERE application_id {of_app}"),
        format!("DELETE FROM oauth2_provider_refreshtoken WHERE application_id {of_app}"),
        format!("DELETE FROM oauth2_provider_idtoken WHERE application_id {of_app}"),
        format!("DELETE FROM oauth2_provider_grant WHERE application_id {of_app}"),
        format!("DELETE FROM oauth_dispatch_applicationaccess WHERE application_id {of_app}"),
        "DELETE FROM oauth2_provider_application WHERE name = ?".to_owned(),
    ] {
        h.db.sql.write(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name), &doing, &[]).await?;
    }
    Ok(())
}

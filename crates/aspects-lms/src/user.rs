//! `lms_user`: `auth_user` and its `auth_userprofile`, as edx-platform's `manage_user` writes them
//! (a new user without a password gets an unusable one; `is_staff` and `is_superuser` are never
//! touched when the plan does not give them, so nothing is demoted by omission). Removing a user
//! deactivates it.

use std::collections::BTreeMap;

use aspects_core::{Resource, Value, Verification};
use aspects_engine::provider::ProviderError;
use aspects_sql::{int, placeholders, text};
use sqlx::Row;

use crate::apply::{flag, secret};
use crate::connect::Handle;
use crate::password;
use crate::read::{Found, fold};

const FLAGS: [&str; 3] = ["is_staff", "is_superuser", "is_active"];

pub async fn find(h: &Handle, keys: &[&str]) -> Result<BTreeMap<String, Found>, ProviderError> {
    let sql = format!(
        "SELECT u.username, u.email, u.password, u.is_staff, u.is_superuser, u.is_active, p.name \
         FROM auth_user u LEFT JOIN auth_userprofile p ON p.user_id = u.id WHERE u.username IN ({})",
        placeholders(keys.len())
    );
    let rows = h.db.sql.rows(&sql, keys).await.map_err(|e| h.db.sql.err(&e, "reading LMS users"))?;
    rows.iter()
        .map(|r| {
            let username = text(r, 0)?;
            let mut attrs = BTreeMap::from([
                ("username".to_owned(), Value::from(username.as_str())),
                ("email".to_owned(), Value::from(text(r, 1)?)),
            ]);
            for (i, name) in FLAGS.iter().enumerate() {
                attrs.insert((*name).to_owned(), Value::Bool(int(r, 3 + i)?.unwrap_or(0) != 0));
            }
            // No profile row: the name reads as missing, so apply creates the profile.
            if let Ok(Some(name)) = r.try_get::<Option<String>, _>(6) {
                attrs.insert("name".to_owned(), Value::from(name));
            }
            let stored = BTreeMap::from([("password", text(r, 2)?.into_bytes())]);
            Ok((fold(&username), Found { attrs, stored }))
        })
        .collect()
}

pub fn verify(desired: &Resource, found: &Found) -> BTreeMap<String, Verification> {
    let Some(pw) = secret(desired, "password") else { return BTreeMap::new() };
    let stored = found.stored.get("password").map(|b| String::from_utf8_lossy(b)).unwrap_or_default();
    BTreeMap::from([("password".to_owned(), password::verify(pw, &stored))])
}

/// Inserts the user unless one with that name exists (then `false`: nothing was made), then its
/// profile.
pub async fn make(h: &Handle, r: &Resource) -> Result<bool, ProviderError> {
    let username = r.str("username").unwrap_or_default();
    let pw = secret(r, "password");
    let stored = pw.map_or_else(password::unusable, password::hash);
    let made = h
        .db
        .sql
        .write(
            sqlx::query(
                "INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name, email, \
                 is_staff, is_active, date_joined) \
                 SELECT ?, NULL, ?, ?, '', '', ?, ?, ?, UTC_TIMESTAMP(6) FROM DUAL \
                 WHERE NOT EXISTS (SELECT 1 FROM auth_user WHERE username = ?)",
            )
            .bind(&stored)
            .bind(flag(r, "is_superuser").unwrap_or(false))
            .bind(username)
            .bind(r.str("email").unwrap_or_default())
            .bind(flag(r, "is_staff").unwrap_or(false))
            .bind(flag(r, "is_active").unwrap_or(true))
            .bind(username),
            &format!("creating LMS user {username}"),
            &[pw.unwrap_or_default(), &stored],
        )
        .await?;
    if made == 0 {
        return Ok(false);
    }
    profile(h, r).await?;
    Ok(true)
}

/// The profile `manage_user` ensures, with the plan's full name.
async fn profile(h: &Handle, r: &Resource) -> Result<(), ProviderError> {
    let username = r.str("username").unwrap_or_default();
    h.db.sql
        .write(
            sqlx::query(
                "INSERT INTO auth_userprofile (user_id, name, meta, courseware, language, location) \
                 SELECT id, ?, '', 'course.xml', '', '' FROM auth_user WHERE username = ? \
                 ON DUPLICATE KEY UPDATE name = VALUES(name)",
            )
            .bind(r.str("name").unwrap_or_default())
            .bind(username),
            &format!("writing the profile of LMS user {username}"),
            &[],
        )
        .await
        .map(drop)
}

pub async fn update(h: &Handle, changed: &[&str], r: &Resource) -> Result<(), ProviderError> {
    let username = r.str("username").unwrap_or_default();
    let pw = secret(r, "password").filter(|_| changed.contains(&"password"));
    let hash = pw.map(password::hash);
    // Column names are constants chosen here, never input.
    let mut sets = Vec::new();
    if changed.contains(&"email") {
        sets.push("email = ?");
    }
    let flags: Vec<&str> = FLAGS.iter().copied().filter(|f| changed.contains(f)).collect();
    sets.extend(flags.iter().map(|f| match *f {
        "is_staff" => "is_staff = ?",
        "is_superuser" => "is_superuser = ?",
        _ => "is_active = ?",
    }));
    if hash.is_some() {
        sets.push("password = ?");
    }
    if !sets.is_empty() {
        let sql = format!("UPDATE auth_user SET {} WHERE username = ?", sets.join(", "));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if changed.contains(&"email") {
            q = q.bind(r.str("email").unwrap_or_default());
        }
        for f in &flags {
            q = q.bind(flag(r, f).unwrap_or(false));
        }
        if let Some(hash) = &hash {
            q = q.bind(hash.as_str());
        }
        q = q.bind(username);
        let secrets = [pw.unwrap_or_default(), hash.as_deref().unwrap_or_default()];
        h.db.sql.write(q, &format!("updating LMS user {username}"), &secrets).await?;
    }
    if changed.contains(&"name") {
        profile(h, r).await?;
    }
    Ok(())
}

/// Retires the user the way the LMS can bear: deactivated, with an unusable password. The row
/// stays, because LMS rows refer to users and some of those references are PROTECTed (the
/// RouterConfiguration history's `changed_by`, enrollments): edx-platform never deletes users.
pub async fn remove(h: &Handle, username: &str) -> Result<(), ProviderError> {
    let unusable = password::unusable();
    h.db.sql
        .write(
            sqlx::query("UPDATE auth_user SET is_active = 0, password = ? WHERE username = ?")
                .bind(&unusable)
                .bind(username),
            &format!("deactivating LMS user {username}"),
            &[&unusable],
        )
        .await
        .map(drop)
}

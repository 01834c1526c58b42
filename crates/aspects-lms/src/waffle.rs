//! `lms_waffle_flag`: a `waffle_flag` row as `waffle_flag NAME --create ...` leaves it: every
//! option the plan gives (each has a default) is set; `everyone` and `percent` only when given.

use std::collections::BTreeMap;

use aspects_core::{Resource, Value};
use aspects_engine::provider::ProviderError;
use aspects_sql::{int, placeholders, text};
use sqlx::Row;

use crate::apply::flag;
use crate::connect::Handle;
use crate::read::{Found, fold};

/// The boolean columns, in the order of the query below.
const BOOLS: [&str; 5] = ["testing", "superusers", "staff", "authenticated", "rollout"];

pub async fn find(h: &Handle, keys: &[&str]) -> Result<BTreeMap<String, Found>, ProviderError> {
    let sql = format!(
        "SELECT name, everyone, CAST(percent AS CHAR), testing, superusers, staff, authenticated, rollout, languages, \
         note FROM waffle_flag WHERE name IN ({})",
        placeholders(keys.len())
    );
    let rows = h.db.sql.rows(&sql, keys).await.map_err(|e| h.db.sql.err(&e, "reading waffle flags"))?;
    rows.iter()
        .map(|r| {
            let name = text(r, 0)?;
            let mut attrs = BTreeMap::from([
                ("name".to_owned(), Value::from(name.as_str())),
                ("languages".to_owned(), Value::from(text(r, 8)?)),
                ("note".to_owned(), Value::from(text(r, 9)?)),
            ]);
            if let Some(everyone) = int(r, 1)? {
                attrs.insert("everyone".to_owned(), Value::Bool(everyone != 0));
            }
            if let Ok(Some(percent)) = r.try_get::<Option<String>, _>(2) {
                attrs.insert("percent".to_owned(), Value::from(percent));
            }
            for (i, b) in BOOLS.iter().enumerate() {
                attrs.insert((*b).to_owned(), Value::Bool(int(r, 3 + i)?.unwrap_or(0) != 0));
            }
            Ok((fold(&name), Found { attrs, stored: BTreeMap::new() }))
        })
        .collect()
}

/// Inserts the flag unless one with that name exists (then `false`).
pub async fn make(h: &Handle, r: &Resource) -> Result<bool, ProviderError> {
    let name = r.str("name").unwrap_or_default();
    let made =
        h.db.sql
            .write(
                sqlx::query(
                    "INSERT INTO waffle_flag (name, everyone, percent, testing, superusers, staff, authenticated, \
                 languages, rollout, note, created, modified) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM DUAL \
                 WHERE NOT EXISTS (SELECT 1 FROM waffle_flag WHERE name = ?)",
                )
                .bind(name)
                .bind(flag(r, "everyone"))
                .bind(r.str("percent"))
                .bind_options(r)
                .bind(name),
                &format!("creating waffle flag {name}"),
                &[],
            )
            .await?;
    Ok(made > 0)
}

/// Sets what the plan gives, all at once (so the flag never passes through a mixed state).
pub async fn update(h: &Handle, _changed: &[&str], r: &Resource) -> Result<(), ProviderError> {
    let name = r.str("name").unwrap_or_default();
    // `everyone` and `percent` not given: kept as they are.
    h.db.sql
        .write(
            sqlx::query(
                "UPDATE waffle_flag SET everyone = IF(?, ?, everyone), percent = IF(?, ?, percent), testing = ?, \
                 superusers = ?, staff = ?, authenticated = ?, languages = ?, rollout = ?, note = ?, \
                 modified = UTC_TIMESTAMP(6) WHERE name = ?",
            )
            .bind(r.get("everyone").is_some())
            .bind(flag(r, "everyone"))
            .bind(r.get("percent").is_some())
            .bind(r.str("percent"))
            .bind_options(r)
            .bind(name),
            &format!("updating waffle flag {name}"),
            &[],
        )
        .await
        .map(drop)
}

/// Deletes the flag and its user and group assignments (what Django's cascade does).
pub async fn remove(h: &Handle, name: &str) -> Result<(), ProviderError> {
    let doing = format!("deleting waffle flag {name}");
    for sql in [
        "DELETE a FROM waffle_flag_users a JOIN waffle_flag f ON f.id = a.flag_id WHERE f.name = ?",
        "DELETE a FROM waffle_flag_groups a JOIN waffle_flag f ON f.id = a.flag_id WHERE f.name = ?",
        "DELETE FROM waffle_flag WHERE name = ?",
    ] {
        h.db.sql.write(sqlx::query(sql).bind(name), &doing, &[]).await?;
    }
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>;

/// Binds the options every write sets, in the column order `testing, superusers, staff,
/// authenticated, languages, rollout, note`.
trait BindOptions<'q> {
    fn bind_options(self, r: &'q Resource) -> Self;
}

impl<'q> BindOptions<'q> for Query<'q> {
    fn bind_options(self, r: &'q Resource) -> Self {
        let b = |a| flag(r, a).unwrap_or(false);
        self.bind(b("testing"))
            .bind(b("superusers"))
            .bind(b("staff"))
            .bind(b("authenticated"))
            .bind(r.str("languages").unwrap_or_default())
            .bind(b("rollout"))
            .bind(r.str("note").unwrap_or_default())
    }
}

//! `superset_embedded_dashboard`: a dashboard embedded under the fixed UUID the LMS asks for.
//!
//! Superset's API makes an embedded dashboard with a random UUID and cannot change it, so this
//! kind reads and writes the `embedded_dashboards` table of Superset's metadata database
//! (`metadata_url`), as Aspects' own `create_assets.py` does through Superset's models. One
//! resource is a dashboard's embedding and the embeddings of its locale copies (slug
//! `<slug>-<locale>`, UUID `uuid5(uuid5(base, "superset"), locale)`). A dashboard has one
//! embedding in Superset's API, so writing one replaces whatever embedding the dashboard had,
//! as Aspects does; each write is one transaction, so a kill leaves the old row or the new one.

use std::collections::BTreeMap;

use aspects_core::{Live, Resource, Value};
use aspects_engine::provider::ProviderError;
use aspects_sql::{Sql, System};
use sqlx::Row;

use crate::assets::localized_uuid;
use crate::client::{Handle, attrs, sorted_list};
use crate::schema::{str_attr, str_list};

pub static METADATA: System = System {
    server: "Superset's metadata database",
    block: "[providers.superset] (`metadata_url`)",
    privileges: "the metadata login needs SELECT on `dashboards` and SELECT, INSERT, DELETE on \
                 `embedded_dashboards` of Superset's metadata database",
    meta_default: "",
    lock_prefix: "aspects-superset",
    url_check: crate::schema::check_metadata_url,
};

/// An `embedded_dashboards` row: the slug of its dashboard and its allowed domains.
pub(crate) struct EmbeddedRow {
    pub slug: String,
    pub domains: Vec<String>,
}

/// `UUIDType(binary=True)`: 16 bytes, shown 8-4-4-4-12.
fn uuid_text(bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    if hex.len() != 32 {
        return hex;
    }
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The UUID's 16 bytes (schema checks made it 8-4-4-4-12 hexadecimal digits).
fn uuid_bytes(uuid: &str) -> Vec<u8> {
    hex::decode(uuid.replace('-', "")).unwrap_or_default()
}

/// The rows one resource manages: its own UUID on its dashboard, and one per locale.
fn wanted(r: &Resource) -> Vec<(String, String)> {
    let uuid = str_attr(&r.attrs, "uuid");
    let slug = str_attr(&r.attrs, "dashboard");
    let mut out = vec![(uuid.to_owned(), slug.to_owned())];
    for locale in str_list(r.get("locales")) {
        out.push((localized_uuid(uuid, locale), format!("{slug}-{locale}")));
    }
    out
}

/// The locale copies of `base` that exist: rows on `<slug>-<locale>` under the locale's UUID.
fn live_locales<'a>(base: &str, slug: &str, rows: &'a BTreeMap<String, EmbeddedRow>) -> Vec<(&'a str, &'a str)> {
    rows.iter()
        .filter_map(|(uuid, row)| {
            let locale = row.slug.strip_prefix(slug)?.strip_prefix('-')?;
            (localized_uuid(base, locale) == *uuid).then_some((uuid.as_str(), locale))
        })
        .collect()
}

impl Handle {
    fn metadata(&self) -> Result<&Sql, ProviderError> {
        self.metadata.as_ref().ok_or_else(|| {
            ProviderError::new(format!(
                "[providers.{}] has no `metadata_url`: superset_embedded_dashboard writes Superset's metadata database",
                self.provider
            ))
            .with_hint("set metadata_url = \"mysql://USER@HOST:PORT/superset\" and metadata_password from [secrets]")
        })
    }

    /// Every embedding: UUID -> its dashboard's slug and domains (one query).
    pub(crate) async fn embedded_rows(&self) -> Result<BTreeMap<String, EmbeddedRow>, ProviderError> {
        let sql = self.metadata()?;
        let rows = sql
            .rows(
                "SELECT e.uuid, COALESCE(d.slug, ''), COALESCE(e.allow_domain_list, '') FROM embedded_dashboards e \
                 LEFT JOIN dashboards d ON d.id = e.dashboard_id",
                &[],
            )
            .await
            .map_err(|e| sql.err(&e, "reading embedded dashboards"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let uuid: Vec<u8> = row.try_get(0).map_err(|e| sql.err(&e, "reading embedded dashboards"))?;
            let slug = aspects_sql::text(&row, 1)?;
            let domains = aspects_sql::text(&row, 2)?.split(',').filter(|d| !d.is_empty()).map(str::to_owned).collect();
            out.insert(uuid_text(&uuid), EmbeddedRow { slug, domains });
        }
        Ok(out)
    }

    /// The base row's dashboard and domains; `locales` lists the locale copies embedded with
    /// the same domains.
    pub(crate) async fn read_embedded(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let rows = self.embedded_rows().await?;
        Ok(desired
            .iter()
            .map(|r| {
                let uuid = str_attr(&r.attrs, "uuid");
                let base = rows.get(uuid)?;
                let slug = str_attr(&r.attrs, "dashboard");
                let locales: Vec<&str> = live_locales(uuid, slug, &rows)
                    .into_iter()
                    .filter(|(u, _)| rows[*u].domains == base.domains)
                    .map(|(_, l)| l)
                    .collect();
                Some(Live {
                    attrs: attrs([
                        ("uuid", Value::from(uuid)),
                        ("dashboard", Value::from(base.slug.as_str())),
                        ("allowed_domains", sorted_list(base.domains.iter().map(String::as_str))),
                        ("locales", sorted_list(locales)),
                    ]),
                    ..Live::default()
                })
            })
            .collect())
    }

    /// Writes every row the resource wants (each replacing its dashboard's embedding) and
    /// deletes the locale copies it no longer wants.
    pub(crate) async fn put_embedded(&self, r: &Resource) -> Result<(), ProviderError> {
        let sql = self.metadata()?;
        let domains = str_list(r.get("allowed_domains")).join(",");
        let want = wanted(r);
        // Every dashboard the resource embeds, in one query.
        let slugs: Vec<&str> = want.iter().map(|(_, slug)| slug.as_str()).collect();
        let sql_text =
            format!("SELECT slug, id FROM dashboards WHERE slug IN ({})", aspects_sql::placeholders(slugs.len()));
        let ids: BTreeMap<String, i64> = sql
            .rows(&sql_text, &slugs)
            .await
            .map_err(|e| sql.err(&e, "looking up dashboards"))?
            .iter()
            .map(|row| Ok((aspects_sql::text(row, 0)?, aspects_sql::int(row, 1)?.unwrap_or_default())))
            .collect::<Result<_, ProviderError>>()?;
        for (uuid, slug) in &want {
            let Some(&id) = ids.get(slug) else {
                return Err(ProviderError::new(format!("{}: Superset has no dashboard with slug {slug:?}", r.address))
                    .with_hint(
                        "when a superset_assets bundle imports it, add that bundle to depends_on so it is imported \
                         first; locale copies exist only for the bundle's `locales`",
                    ));
            };
            let doing = format!("embedding dashboard {slug:?} as {uuid}");
            let mut tx = sql.pool.begin().await.map_err(|e| sql.err(&e, &doing))?;
            sql.count();
            sqlx::query("DELETE FROM embedded_dashboards WHERE uuid = ? OR dashboard_id = ?")
                .bind(uuid_bytes(uuid))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| sql.err(&e, &doing))?;
            sql.count();
            sqlx::query(
                "INSERT INTO embedded_dashboards (uuid, allow_domain_list, dashboard_id, created_on, changed_on) \
                 VALUES (?, ?, ?, NOW(), NOW())",
            )
            .bind(uuid_bytes(uuid))
            .bind(&domains)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| sql.err(&e, &doing))?;
            sql.count();
            tx.commit().await.map_err(|e| sql.err(&e, &doing))?;
            aspects_engine::fault::after_write();
        }
        let rows = self.embedded_rows().await?;
        let base = str_attr(&r.attrs, "uuid");
        for (uuid, _) in live_locales(base, str_attr(&r.attrs, "dashboard"), &rows) {
            if !want.iter().any(|(u, _)| u == uuid) {
                self.delete_embedded_row(uuid).await?;
            }
        }
        Ok(())
    }

    /// Deletes the embedding and its locale copies; already gone counts as done.
    pub(crate) async fn remove_embedded(&self, uuid: &str) -> Result<(), ProviderError> {
        let rows = self.embedded_rows().await?;
        let Some(base) = rows.get(uuid) else { return Ok(()) };
        for (copy, _) in live_locales(uuid, &base.slug, &rows) {
            self.delete_embedded_row(copy).await?;
        }
        self.delete_embedded_row(uuid).await
    }

    async fn delete_embedded_row(&self, uuid: &str) -> Result<(), ProviderError> {
        let sql = self.metadata()?;
        let query = sqlx::query("DELETE FROM embedded_dashboards WHERE uuid = ?").bind(uuid_bytes(uuid));
        sql.write(query, &format!("deleting embedded dashboard {uuid}"), &[]).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_through_binary() {
        let u = "c0e64194-33d1-4d5a-8c10-4f51530c5ee9";
        assert_eq!(uuid_bytes(u).len(), 16);
        assert_eq!(uuid_text(&uuid_bytes(u)), u);
    }

    #[test]
    fn locale_copies_are_found_by_slug_and_derived_uuid() {
        let base = "c0e64194-33d1-4d5a-8c10-4f51530c5ee9";
        let row = |slug: &str| EmbeddedRow { slug: slug.to_owned(), domains: Vec::new() };
        let rows: BTreeMap<String, EmbeddedRow> = [
            (base.to_owned(), row("course-dashboard")),
            (localized_uuid(base, "fr_CA"), row("course-dashboard-fr_CA")),
            // Someone else's embedding of a copy: not ours.
            ("00000000-0000-4000-8000-000000000001".to_owned(), row("course-dashboard-es")),
        ]
        .into();
        let found = live_locales(base, "course-dashboard", &rows);
        assert_eq!(found.into_iter().map(|(_, l)| l).collect::<Vec<_>>(), ["fr_CA"]);
    }
}

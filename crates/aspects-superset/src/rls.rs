//! `superset_rls_filter`: a row-level security filter over REST (`/api/v1/rowlevelsecurity/`).
//!
//! Aspects selects a filter's tables by schema (every dataset of `xapi`, every one of
//! `event_sink` but `user_pii`), so `tables` takes `SCHEMA.*` as well as `SCHEMA.TABLE`. A
//! pattern is expanded against the datasets that will exist once the plan is applied: the ones
//! Superset has now and the ones the plan's asset bundles import. A dataset a bundle adds in the
//! same apply therefore shows up in this plan, not the next one. Superset's PUT clears the tables
//! and roles it is not sent, so every update sends the whole filter.

use std::collections::{BTreeMap, BTreeSet};

use aspects_core::{Live, Resource, Value};
use aspects_engine::provider::ProviderError;
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::client::{Handle, attrs, sorted_list};
use crate::schema::{str_attr, str_list};

pub const RLS_API: &str = "/api/v1/rowlevelsecurity/";
const DATASETS: &str = "/api/v1/dataset/";

/// A filter as listed: its attributes, and its tables as `schema.table`.
pub(crate) struct RlsRow {
    pub attrs: BTreeMap<String, Value>,
    pub tables: BTreeSet<String>,
}

fn text(row: &Json, key: &str) -> String {
    row.get(key).and_then(Json::as_str).unwrap_or_default().to_owned()
}

/// `schema.table` as plans name a dataset.
fn dotted(schema: &str, table: &str) -> String {
    format!("{schema}.{table}")
}

/// The datasets `tables` (with `SCHEMA.*` patterns) and `exclude` select out of `known`.
pub(crate) fn expand<'a>(
    tables: &[&str],
    exclude: &[&str],
    known: impl IntoIterator<Item = &'a String> + Clone,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in tables {
        match t.strip_suffix(".*") {
            Some(schema) => out.extend(
                known
                    .clone()
                    .into_iter()
                    .filter(|k| k.split_once('.').is_some_and(|(s, table)| s == schema && !exclude.contains(&table)))
                    .cloned(),
            ),
            None => {
                out.insert((*t).to_owned());
            }
        }
    }
    out
}

impl Handle {
    /// Every filter by name (one list).
    pub(crate) async fn rls_filters(&self) -> Result<BTreeMap<String, RlsRow>, ProviderError> {
        let rows = self
            .list(RLS_API, "name", &[], &[])
            .await
            .map_err(|e| self.err(&e, "reading row-level security filters"))?;
        Ok(rows
            .iter()
            .map(|f| {
                let names = |key: &str, name: &dyn Fn(&Json) -> String| -> Vec<String> {
                    f.get(key).and_then(Json::as_array).map(|a| a.iter().map(name).collect()).unwrap_or_default()
                };
                let roles = names("roles", &|r| text(r, "name"));
                let tables: BTreeSet<String> =
                    names("tables", &|t| dotted(&text(t, "schema"), &text(t, "table_name"))).into_iter().collect();
                let a = attrs([
                    ("name", Value::from(text(f, "name"))),
                    ("filter_type", Value::from(text(f, "filter_type"))),
                    ("roles", sorted_list(roles.iter().map(String::as_str))),
                    ("group_key", Value::from(text(f, "group_key"))),
                    ("clause", Value::from(text(f, "clause"))),
                    ("description", Value::from(text(f, "description"))),
                ]);
                (text(f, "name"), RlsRow { attrs: a, tables })
            })
            .collect())
    }

    /// Every dataset Superset has: `schema.table` -> ids (a name may exist in several databases).
    async fn datasets_by_name(&self) -> Result<BTreeMap<String, Vec<i64>>, ProviderError> {
        let rows = self
            .list(DATASETS, "table_name", &["id", "schema", "table_name"], &[])
            .await
            .map_err(|e| self.err(&e, "listing datasets"))?;
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for d in rows {
            let id = d.get("id").and_then(Json::as_i64).unwrap_or_default();
            out.entry(dotted(&text(&d, "schema"), &text(&d, "table_name"))).or_default().push(id);
        }
        Ok(out)
    }

    /// The datasets of every asset bundle this plan holds (rendered by `normalise`).
    fn planned_datasets(&self) -> BTreeSet<String> {
        let bundles = self.bundles.lock().expect("not poisoned");
        bundles
            .values()
            .flat_map(|b| b.iter())
            .filter(|a| a.kind == crate::assets::Kind::Dataset)
            .map(|a| dotted(a.content.get("schema").and_then(Json::as_str).unwrap_or_default(), &a.title))
            .collect()
    }

    /// The live filters. `tables` reads as the plan wrote it when the filter holds exactly the
    /// datasets the plan's names and patterns select; otherwise as the datasets it holds.
    pub(crate) async fn read_rls(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let filters = self.rls_filters().await?;
        let mut known: BTreeSet<String> = self.datasets_by_name().await?.into_keys().collect();
        known.extend(self.planned_datasets());
        Ok(desired
            .iter()
            .map(|r| {
                let row = filters.get(str_attr(&r.attrs, "name"))?;
                let exclude = str_list(r.get("exclude"));
                let wanted = expand(&str_list(r.get("tables")), &exclude, &known);
                let mut a = row.attrs.clone();
                if wanted == row.tables {
                    for key in ["tables", "exclude"] {
                        a.insert(key.into(), r.get(key).cloned().unwrap_or(Value::List(Vec::new())));
                    }
                } else {
                    a.insert("tables".into(), sorted_list(row.tables.iter().map(String::as_str)));
                    a.insert("exclude".into(), Value::List(Vec::new()));
                }
                Some(Live { attrs: a, ..Live::default() })
            })
            .collect())
    }

    /// The filter as Superset takes it: tables and roles resolved to ids (at apply time, after
    /// the bundles that import the datasets).
    pub(crate) async fn rls_body(&self, r: &Resource) -> Result<Json, ProviderError> {
        let datasets = self.datasets_by_name().await?;
        let exclude = str_list(r.get("exclude"));
        let mut tables = Vec::new();
        for name in expand(&str_list(r.get("tables")), &exclude, datasets.keys()) {
            let ids = datasets.get(&name).ok_or_else(|| {
                ProviderError::new(format!("{}: Superset has no dataset {name:?}", r.address)).with_hint(
                    "name datasets as SCHEMA.TABLE; when a superset_assets bundle imports it, add that bundle to \
                     depends_on so it is imported first",
                )
            })?;
            tables.extend(ids.iter().copied());
        }
        Ok(json!({
            "name": str_attr(&r.attrs, "name"),
            "filter_type": str_attr(&r.attrs, "filter_type"),
            "tables": tables,
            "roles": self.role_ids(r).await?,
            "group_key": str_attr(&r.attrs, "group_key"),
            "clause": str_attr(&r.attrs, "clause"),
            "description": str_attr(&r.attrs, "description"),
        }))
    }

    pub(crate) async fn create_rls(&self, r: &Resource, doing: &str) -> Result<(), ProviderError> {
        let body = self.rls_body(r).await?;
        self.write(Method::POST, RLS_API, Some(&body), doing).await.map(drop)
    }

    pub(crate) async fn update_rls(&self, id: i64, r: &Resource, doing: &str) -> Result<(), ProviderError> {
        let body = self.rls_body(r).await?;
        self.write(Method::PUT, &format!("{RLS_API}{id}"), Some(&body), doing).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_select_a_schema_minus_exclusions() {
        let known: Vec<String> =
            ["xapi.a", "xapi.b", "event_sink.user_pii", "event_sink.course_names", "xapix.c"].map(String::from).into();
        let got = expand(&["xapi.*", "event_sink.*"], &["user_pii"], &known);
        let want: BTreeSet<String> = ["event_sink.course_names", "xapi.a", "xapi.b"].map(String::from).into();
        assert_eq!(got, want);
        // A plain name is kept even when unknown: apply reports it, naming the resource.
        assert_eq!(expand(&["reporting.t"], &[], &known), ["reporting.t".to_owned()].into());
        assert!(expand(&["nothing.*"], &[], &known).is_empty());
    }
}

//! Reading live state, a constant number of queries per kind whatever the number of resources.
//!
//! SQL the operator writes is compared in the server's canonical form, both sides through the
//! same `formatQuerySingleLine` (the desired statements of a kind in one query, the live ones
//! inside the query that reads them). The canonical forms are compared part by part here; where
//! a part matches, the live attribute is reported in the desired spelling (so the diff is empty),
//! and where it differs, in the server's spelling (so the plan shows what the server has). This is
//! the "one normaliser" of this provider: the server's formatter, applied to both sides.
//!
//! The desired statements are also judged here, at plan time and before any write: a statement
//! the parser refuses, or an expression that runs into the next clause (`order_by = "a TTL ..."`),
//! fails the plan naming the resource and the server's message.

use std::collections::{BTreeMap, BTreeSet};

use aspects_core::{Address, KindSchema, Live, Orphan, Resource, Value};
use aspects_engine::ownership::unplanned;
use aspects_engine::provider::ProviderError;

use crate::client::{Handle, array_param, attrs, col};
use crate::ddl::{self, Table};
use crate::ownership::{self, Record};
use crate::schema::{self, CLAUSES, DATABASE, FUNCTION, GRANT, ROLE, SQL, TABLE, USER, str_attr, str_list};

/// The settings the server writes into every MergeTree table it creates.
const IMPLICIT_SETTINGS: &[(&str, &str)] = &[("index_granularity", "8192")];

fn statements(a: &BTreeMap<String, Value>) -> Vec<String> {
    str_list(a.get("statements")).into_iter().map(str::to_owned).collect()
}

impl Handle {
    pub(crate) async fn read(
        &self,
        kind: &KindSchema,
        desired: &[Resource],
    ) -> Result<Vec<Option<Live>>, ProviderError> {
        if desired.is_empty() {
            return Ok(Vec::new());
        }
        let records = self.records(Some(kind.kind)).await?;
        let mut live = match kind.kind {
            DATABASE => self.read_databases(desired).await?,
            TABLE => self.read_tables(desired).await?,
            FUNCTION => self.read_functions(desired).await?,
            SQL => self.read_sql(desired, &records).await?,
            USER => self.read_users(desired).await?,
            ROLE => self.read_roles(desired).await?,
            GRANT => self.read_grants(desired).await?,
            other => return Err(ProviderError::new(format!("the clickhouse provider has no kind `{other}`"))),
        };
        let owners: BTreeMap<&str, &Record> = records.iter().map(|r| (r.key.as_str(), r)).collect();
        for (l, r) in live.iter_mut().zip(desired) {
            let k = ownership::key(kind.kind, &schema::identity(kind.kind, &r.attrs));
            let (Some(l), Some(owner)) = (l, owners.get(k.as_str())) else { continue };
            aspects_engine::ownership::mark_owner(l, &self.deployment, &owner.deployment, owner.state);
        }
        Ok(live)
    }

    async fn read_databases(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let found = self.databases(desired.iter().map(|r| str_attr(&r.attrs, "name"))).await?;
        Ok(desired
            .iter()
            .map(|r| {
                let name = str_attr(&r.attrs, "name");
                found.get(name).map(|engine| Live {
                    attrs: attrs([("name", Value::from(name)), ("engine", Value::from(engine.as_str()))]),
                    ..Live::default()
                })
            })
            .collect())
    }

    /// Database name -> engine, for the names given (one query).
    pub(crate) async fn databases<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let rows = self
            .rows(
                "SELECT name, engine FROM system.databases WHERE has({names:Array(String)}, name)",
                &[("names", &array_param(names))],
            )
            .await
            .map_err(|e| self.err(&e, "reading databases"))?;
        Ok(rows.iter().map(|r| (col(r, "name"), col(r, "engine"))).collect())
    }

    /// The server's canonical form of each statement (one query); a statement it refuses fails
    /// with its message, naming the resource.
    pub(crate) async fn canonical(&self, items: &[(&Resource, String)]) -> Result<Vec<String>, ProviderError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                "SELECT arrayMap(q -> formatQuerySingleLineOrNull(q), {q:Array(String)}) AS f",
                &[("q", &array_param(items.iter().map(|(_, s)| s.as_str())))],
            )
            .await
            .map_err(|e| self.err(&e, "canonicalising the desired SQL"))?;
        let formatted = rows.first().and_then(|r| r.get("f")).and_then(|f| f.as_array()).cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(items.len());
        for (i, (r, sql)) in items.iter().enumerate() {
            match formatted.get(i).and_then(|v| v.as_str()) {
                Some(text) => out.push(text.to_owned()),
                None => {
                    // Only on failure: ask again for the parser's message.
                    let why = match self.query("SELECT formatQuerySingleLine({q:String})", &[("q", sql)]).await {
                        Err(e) => e.message,
                        Ok(_) => "the server could not format it".to_owned(),
                    };
                    return Err(refused(r, &why));
                }
            }
        }
        Ok(out)
    }

    async fn read_tables(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let on = self.on_cluster();
        let items: Vec<(&Resource, String)> = desired.iter().map(|r| (r, ddl::create_table(&r.attrs, &on))).collect();
        let wanted = self.desired_tables(&items).await?;
        let live =
            self.tables(desired.iter().map(|r| (str_attr(&r.attrs, "database"), str_attr(&r.attrs, "name")))).await?;
        Ok(desired
            .iter()
            .zip(wanted)
            .map(|(r, want)| {
                let key = (str_attr(&r.attrs, "database").to_owned(), str_attr(&r.attrs, "name").to_owned());
                let have = live.get(&key)?;
                let mut a = attrs([("database", Value::from(key.0.as_str())), ("name", Value::from(key.1.as_str()))]);
                let Some(have) = have else {
                    a.insert("engine".into(), Value::from("(not a table aspects can manage: a view or dictionary)"));
                    return Some(Live { attrs: a, ..Live::default() });
                };
                let same_or = |attr: &str, equal: bool, theirs: Value| {
                    if equal { r.attrs.get(attr).cloned() } else { Some(theirs) }
                };
                let columns = Value::List(have.columns.iter().map(|c| Value::from(c.as_str())).collect());
                a.extend(same_or("columns", want.columns == have.columns, columns).map(|v| ("columns".to_owned(), v)));
                let engine = Value::from(have.engine.as_str());
                let same_engine = ddl::without_replica_args(&want.engine) == ddl::without_replica_args(&have.engine);
                a.extend(same_or("engine", same_engine, engine).map(|v| ("engine".to_owned(), v)));
                for (attr, _) in CLAUSES {
                    let theirs = have.clauses.get(attr).map(|t| Value::from(t.as_str()));
                    let value = if want.clauses.get(attr) == have.clauses.get(attr) {
                        r.attrs.get(*attr).cloned()
                    } else {
                        theirs
                    };
                    a.extend(value.map(|v| ((*attr).to_owned(), v)));
                }
                let (want_settings, have_settings) = (explicit(&want.settings), explicit(&have.settings));
                if want_settings == have_settings {
                    a.extend(r.attrs.get("settings").map(|v| ("settings".to_owned(), v.clone())));
                } else if !have_settings.is_empty() {
                    let map = have_settings.into_iter().map(|(k, v)| (k, Value::Str(v))).collect();
                    a.insert("settings".into(), Value::Map(map));
                }
                Some(Live { attrs: a, ..Live::default() })
            })
            .collect())
    }

    /// The desired tables in canonical form, checked to have exactly the parts the resource
    /// sets (an expression cannot run into another clause).
    pub(crate) async fn desired_tables(&self, items: &[(&Resource, String)]) -> Result<Vec<Table>, ProviderError> {
        let texts = self.canonical(items).await?;
        items
            .iter()
            .zip(texts)
            .map(|((r, _), text)| {
                let t = ddl::parse_table(&text).ok_or_else(|| refused(r, "it is not a table definition"))?;
                let columns = str_list(r.attrs.get("columns")).len();
                if t.columns.len() != columns {
                    return Err(refused(
                        r,
                        &format!("`columns` lists {columns} entries but the server reads {}", t.columns.len()),
                    ));
                }
                for (attr, keyword) in CLAUSES {
                    if r.attrs.contains_key(*attr) != t.clauses.contains_key(attr) {
                        return Err(refused(r, &format!("a {keyword} clause appears inside another attribute")));
                    }
                }
                if !t.other.is_empty() {
                    return Err(refused(r, &format!("an attribute carries extra clauses: {}", t.other.join(", "))));
                }
                let has_settings = matches!(r.attrs.get("settings"), Some(Value::Map(m)) if !m.is_empty());
                if has_settings == t.settings.is_empty() {
                    return Err(refused(r, "a SETTINGS clause appears inside another attribute"));
                }
                Ok(t)
            })
            .collect()
    }

    /// (database, name) -> the table in canonical form, or `None` for an object that is not a
    /// table with columns and an engine clause (a view); one query.
    pub(crate) async fn tables<'a>(
        &self,
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<BTreeMap<(String, String), Option<Table>>, ProviderError> {
        let keys: Vec<String> = keys.into_iter().map(|(d, n)| format!("{d}\t{n}")).collect();
        let rows = self
            .rows(
                "SELECT database, name, formatQuerySingleLine(create_table_query) AS ddl FROM system.tables \
                 WHERE has({keys:Array(String)}, concat(database, '\t', name))",
                &[("keys", &array_param(keys.iter().map(String::as_str)))],
            )
            .await
            .map_err(|e| self.err(&e, "reading tables"))?;
        Ok(rows.iter().map(|r| ((col(r, "database"), col(r, "name")), ddl::parse_table(&col(r, "ddl")))).collect())
    }

    async fn read_functions(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        // Without ON CLUSTER: the server stores (and reports) each host's statement without it.
        let items: Vec<(&Resource, String)> =
            desired.iter().map(|r| (r, ddl::create_function(&r.attrs, "", false))).collect();
        let wanted = self.canonical(&items).await?;
        let found = self.functions(desired.iter().map(|r| str_attr(&r.attrs, "name"))).await?;
        Ok(desired
            .iter()
            .zip(wanted)
            .map(|(r, want)| {
                let name = str_attr(&r.attrs, "name");
                let have = found.get(name)?;
                let lambda = if *have == want {
                    r.attrs.get("lambda").cloned().unwrap_or_else(|| Value::Sql(String::new()))
                } else {
                    Value::Sql(ddl::after_as(have).unwrap_or(have).to_owned())
                };
                Some(Live { attrs: attrs([("name", Value::from(name)), ("lambda", lambda)]), ..Live::default() })
            })
            .collect())
    }

    /// Function name -> its canonical CREATE statement (one query).
    pub(crate) async fn functions<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let rows = self
            .rows(
                "SELECT name, formatQuerySingleLine(create_query) AS q FROM system.functions \
                 WHERE origin = 'SQLUserDefined' AND has({names:Array(String)}, name)",
                &[("names", &array_param(names))],
            )
            .await
            .map_err(|e| self.err(&e, "reading functions"))?;
        Ok(rows.iter().map(|r| (col(r, "name"), col(r, "q"))).collect())
    }

    /// Extra SQL has no object to read: what was last applied lives in its record. Every
    /// statement is judged by the parser first (one query for all).
    async fn read_sql(&self, desired: &[Resource], records: &[Record]) -> Result<Vec<Option<Live>>, ProviderError> {
        let items: Vec<(&Resource, String)> =
            desired.iter().flat_map(|r| statements(&r.attrs).into_iter().map(move |s| (r, s))).collect();
        self.canonical(&items).await?;
        Ok(desired
            .iter()
            .map(|r| {
                let k = ownership::key(SQL, &schema::identity(SQL, &r.attrs));
                let rec =
                    records.iter().find(|rec| rec.key == k && rec.deployment == self.deployment && rec.state.owns())?;
                let applied: Vec<String> = serde_json::from_str(&rec.applied).unwrap_or_default();
                let list = Value::List(applied.into_iter().map(Value::Sql).collect());
                Some(Live {
                    attrs: attrs([("name", Value::from(str_attr(&r.attrs, "name"))), ("statements", list)]),
                    owned: true,
                    ..Live::default()
                })
            })
            .collect())
    }

    pub(crate) async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        let scan = self.scan(desired).await?;
        // Grants recorded here that the plan no longer names: apply revokes them.
        let leaving = scan
            .iter()
            .filter(|(rec, _)| rec.kind == GRANT)
            .map(|(rec, _)| {
                let (attr, name) = crate::grant::grantee(&rec.identity);
                (attr, name.to_owned())
            })
            .collect();
        let extras = self.grant_extras(desired, leaving).await?;
        Ok(scan
            .into_iter()
            .filter(|(rec, exists)| *exists && rec.state.owns())
            .map(|(rec, _)| {
                let address = Address::new(rec.kind.clone(), rec.name.clone());
                unplanned(address, rec.identity.clone(), rec.identity, &self.provider, rec.state)
            })
            .chain(extras)
            .collect())
    }

    /// Drops this deployment's records that prove nothing: the object is gone, or a create
    /// was claimed but never confirmed and the plan no longer names it.
    pub(crate) async fn prune(&self, desired: &[Resource]) -> Result<usize, ProviderError> {
        let mut pruned = 0;
        for (rec, exists) in self.scan(desired).await? {
            if !exists || !rec.state.owns() {
                self.forget(&rec.kind, &rec.identity).await?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// This deployment's records that `desired` does not name, each with whether its object
    /// exists (one query per kind).
    async fn scan(&self, desired: &[Resource]) -> Result<Vec<(Record, bool)>, ProviderError> {
        let named: BTreeSet<String> = desired
            .iter()
            .map(|r| ownership::key(&r.address.kind, &schema::identity(&r.address.kind, &r.attrs)))
            .collect();
        let records: Vec<Record> = self
            .records(None)
            .await?
            .into_iter()
            .filter(|r| r.deployment == self.deployment && !named.contains(&r.key))
            .collect();
        let of = |kind: &'static str| records.iter().filter(move |r| r.kind == kind);
        let id = |r: &Record, k: &str| r.identity.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let databases = if of(DATABASE).next().is_some() {
            let names: Vec<String> = of(DATABASE).map(|r| id(r, "name")).collect();
            self.databases(names.iter().map(String::as_str)).await?
        } else {
            BTreeMap::new()
        };
        let tables = if of(TABLE).next().is_some() {
            let keys: Vec<(String, String)> = of(TABLE).map(|r| (id(r, "database"), id(r, "name"))).collect();
            self.tables(keys.iter().map(|(d, n)| (d.as_str(), n.as_str()))).await?
        } else {
            BTreeMap::new()
        };
        let users = if of(USER).next().is_some() {
            let names: Vec<String> = of(USER).map(|r| id(r, "name")).collect();
            self.users(names.iter().map(String::as_str)).await?
        } else {
            BTreeMap::new()
        };
        let roles = if of(ROLE).next().is_some() {
            let names: Vec<String> = of(ROLE).map(|r| id(r, "name")).collect();
            self.roles(names.iter().map(String::as_str)).await?
        } else {
            BTreeMap::new()
        };
        let functions = if of(FUNCTION).next().is_some() {
            let names: Vec<String> = of(FUNCTION).map(|r| id(r, "name")).collect();
            self.functions(names.iter().map(String::as_str)).await?
        } else {
            BTreeMap::new()
        };
        Ok(records
            .into_iter()
            .map(|r| {
                let exists = match r.kind.as_str() {
                    DATABASE => databases.contains_key(&id(&r, "name")),
                    TABLE => tables.contains_key(&(id(&r, "database"), id(&r, "name"))),
                    FUNCTION => functions.contains_key(&id(&r, "name")),
                    USER => users.contains_key(&id(&r, "name")),
                    ROLE => roles.contains_key(&id(&r, "name")),
                    _ => true,
                };
                (r, exists)
            })
            .collect())
    }
}

/// Settings without the ones the server adds by itself at their implicit values.
pub(crate) fn explicit(settings: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    settings
        .iter()
        .filter(|(k, v)| !IMPLICIT_SETTINGS.iter().any(|(ik, iv)| k == ik && v == iv))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The server refuses (or would misread) the SQL of a resource: before any write.
fn refused(r: &Resource, why: &str) -> ProviderError {
    ProviderError::new(format!("{} ({}): the ClickHouse parser refuses its SQL: {why}", r.address, r.origin))
        .with_hint("fix the SQL in the plan file; nothing was written")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_settings_are_not_differences() {
        let s = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(explicit(&s(&[("index_granularity", "8192")])).is_empty());
        assert_eq!(explicit(&s(&[("index_granularity", "1024")])).len(), 1);
    }
}

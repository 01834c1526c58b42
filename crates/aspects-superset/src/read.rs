//! Reading live state: one list per kind (pages of 100 fetched at once), plus what cannot be listed —
//! a login probe per existing user (the password is never read back) and the masked URI of each
//! existing database (`/connection`, the only place Superset shows it). Orphans and pruning read
//! this deployment's records (records.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use aspects_core::{Address, KindSchema, Live, Orphan, Resource, Secret, Value, Verification};
use aspects_engine::ownership::{State, mark_owner};
use aspects_engine::provider::{Invalid, ProviderError, ProviderRead};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value as Json;

use crate::client::{Handle, SsError, attrs, filter, sorted_list};
use crate::schema::{
    ASSETS, DATABASE, EMBEDDED, RLS, ROLE, USER, deployment_scoped, identity, identity_attr, split_permission,
    str_attr, str_list,
};
use crate::uri;

/// A role as listed, with its permission ids.
pub struct RoleRow {
    pub id: i64,
    pub name: String,
    pub permissions: Vec<i64>,
}

/// A database as listed: its id, its attributes without the URI, and its `extra` JSON.
pub struct DatabaseRow {
    pub id: i64,
    pub attrs: BTreeMap<String, Value>,
    pub extra: serde_json::Map<String, Json>,
}

/// The key a database keeps its URI fingerprint under, inside `extra`.
pub const MARKER: &str = "aspects";

fn text(row: &Json, key: &str) -> String {
    row.get(key).and_then(Json::as_str).unwrap_or_default().to_owned()
}

fn id_of(row: &Json) -> i64 {
    row.get("id").and_then(Json::as_i64).unwrap_or_default()
}

impl Handle {
    /// Every role with its permission ids (Superset's `roles/search/`, which lists them).
    pub(crate) async fn roles(&self) -> Result<Vec<RoleRow>, ProviderError> {
        let rows = self
            .list("/api/v1/security/roles/search/", "id", &[], &[])
            .await
            .map_err(|e| self.err(&e, "reading roles"))?;
        Ok(rows
            .iter()
            .map(|r| RoleRow {
                id: id_of(r),
                name: text(r, "name"),
                permissions: r
                    .get("permission_ids")
                    .and_then(Json::as_array)
                    .map(|ids| ids.iter().filter_map(Json::as_i64).collect())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// One list; the permission catalogue too when a planned role has permissions to name.
    async fn read_roles(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let roles: BTreeMap<String, RoleRow> = self.roles().await?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let named = |r: &Resource| roles.get(str_attr(&r.attrs, "name"));
        let catalogue = if desired.iter().filter_map(named).any(|role| !role.permissions.is_empty()) {
            Some(self.catalogue().await?)
        } else {
            None
        };
        Ok(desired
            .iter()
            .map(|r| {
                let role = roles.get(str_attr(&r.attrs, "name"))?;
                let names: Vec<String> = role
                    .permissions
                    .iter()
                    .map(|id| {
                        catalogue
                            .and_then(|c| c.names.get(id).cloned())
                            .unwrap_or_else(|| format!("(permission #{id})"))
                    })
                    .collect();
                let permissions = sorted_list(names.iter().map(String::as_str));
                Some(Live {
                    attrs: attrs([("name", Value::from(role.name.as_str())), ("permissions", permissions)]),
                    ..Live::default()
                })
            })
            .collect())
    }

    /// Every user: username -> (id, attributes without the password).
    pub(crate) async fn users(&self) -> Result<BTreeMap<String, (i64, BTreeMap<String, Value>)>, ProviderError> {
        let columns = ["id", "username", "first_name", "last_name", "email", "active", "roles.name"];
        let rows = self
            .list("/api/v1/security/users/", "id", &columns, &[])
            .await
            .map_err(|e| self.err(&e, "reading users"))?;
        Ok(rows
            .iter()
            .map(|u| {
                let roles: Vec<String> = u
                    .get("roles")
                    .and_then(Json::as_array)
                    .map(|rs| rs.iter().map(|r| text(r, "name")).collect())
                    .unwrap_or_default();
                let a = attrs([
                    ("username", Value::from(text(u, "username"))),
                    ("first_name", Value::from(text(u, "first_name"))),
                    ("last_name", Value::from(text(u, "last_name"))),
                    ("email", Value::from(text(u, "email"))),
                    ("active", Value::Bool(u.get("active").and_then(Json::as_bool).unwrap_or(false))),
                    ("roles", sorted_list(roles.iter().map(String::as_str))),
                ]);
                (text(u, "username"), (id_of(u), a))
            })
            .collect())
    }

    /// One list, then a login probe per existing user. Superset refuses every login of an
    /// inactive user, so an inactive user's password cannot be verified: it counts as matching
    /// when the plan keeps the user inactive, and is set again when the plan activates it.
    async fn read_users(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let users = self.users().await?;
        let mut out = Vec::with_capacity(desired.len());
        for r in desired {
            let name = str_attr(&r.attrs, "username");
            let Some((_, a)) = users.get(name) else {
                out.push(None);
                continue;
            };
            let password = r.get("password").and_then(Value::as_secret).map_or("", Secret::expose);
            let verified = if a.get("active") != Some(&Value::Bool(true)) {
                if r.get("active") == Some(&Value::Bool(true)) { Verification::Differs } else { Verification::Matches }
            } else {
                match self.probe_login(name, password).await {
                    Ok(true) => Verification::Matches,
                    Ok(false) => Verification::Differs,
                    Err(e) => Verification::Unknown(format!("the login probe failed: {}", e.message)),
                }
            };
            out.push(Some(Live {
                attrs: a.clone(),
                verified: [("password".to_owned(), verified)].into(),
                ..Live::default()
            }));
        }
        Ok(out)
    }

    /// Every database connection (without its URI), or the ones with `uuid`.
    pub(crate) async fn databases(&self, uuid: Option<&str>) -> Result<BTreeMap<String, DatabaseRow>, SsError> {
        let columns = ["id", "uuid", "database_name", "expose_in_sqllab", "allow_run_async", "allow_dml", "extra"];
        let filters: Vec<String> = uuid.map(|u| filter("uuid", "eq", u)).into_iter().collect();
        let rows = self.list("/api/v1/database/", "database_name", &columns, &filters).await?;
        Ok(rows
            .iter()
            .map(|d| {
                let flag = |k: &str| Value::Bool(d.get(k).and_then(Json::as_bool).unwrap_or(false));
                let a = attrs([
                    ("uuid", Value::from(text(d, "uuid"))),
                    ("database_name", Value::from(text(d, "database_name"))),
                    ("expose_in_sqllab", flag("expose_in_sqllab")),
                    ("allow_run_async", flag("allow_run_async")),
                    ("allow_dml", flag("allow_dml")),
                ]);
                let extra = serde_json::from_str(&text(d, "extra")).ok().and_then(|j: Json| j.as_object().cloned());
                (text(d, "uuid"), DatabaseRow { id: id_of(d), attrs: a, extra: extra.unwrap_or_default() })
            })
            .collect())
    }

    /// One list, then the masked URI of each existing database. The URI matches when the masked
    /// forms are equal and the fingerprint in `extra` is one of the plan's whole URI.
    async fn read_databases(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let found = self.databases(None).await.map_err(|e| self.err(&e, "reading databases"))?;
        let mut out = Vec::with_capacity(desired.len());
        for r in desired {
            let Some(row) = found.get(str_attr(&r.attrs, "uuid")) else {
                out.push(None);
                continue;
            };
            let path = format!("/api/v1/database/{}/connection", row.id);
            let connection =
                self.call(Method::GET, &path, None).await.map_err(|e| self.err(&e, "reading a database"))?;
            let live_masked = connection.pointer("/result/sqlalchemy_uri").and_then(Json::as_str).unwrap_or_default();
            let want = r.get("sqlalchemy_uri").and_then(Value::as_secret).map_or("", Secret::expose);
            let marker = row.extra.get(MARKER).and_then(|m| m.get("uri")).and_then(Json::as_str).unwrap_or_default();
            let same = uri::masked(want) == live_masked && uri::matches(marker, want);
            let value = match r.get("sqlalchemy_uri") {
                Some(v) if same => v.clone(),
                _ => Value::Sensitive(Secret::with_shown(live_masked, uri::shown(live_masked))),
            };
            let mut a = row.attrs.clone();
            a.insert("sqlalchemy_uri".into(), value);
            out.push(Some(Live { attrs: a, ..Live::default() }));
        }
        Ok(out)
    }

    /// This deployment's records that `desired` does not name, each with whether its object
    /// exists (one list per kind that has such records).
    pub(crate) async fn scan(&self, desired: &[Resource]) -> Result<Vec<Scanned>, ProviderError> {
        let named: BTreeSet<(String, String)> = desired
            .iter()
            .map(|r| {
                let kind = r.address.kind.as_str();
                (
                    kind.to_owned(),
                    identity(kind, &r.attrs)
                        .into_values()
                        .next()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                )
            })
            .collect();
        let own = self.own_records().await?;
        let left: Vec<(&(String, String), &crate::records::Record)> =
            own.entries.iter().filter(|(k, _)| !named.contains(*k)).collect();
        let has = |kind: &str| left.iter().any(|((k, _), _)| k == kind);
        let roles: BTreeSet<String> =
            if has(ROLE) { self.roles().await?.into_iter().map(|r| r.name).collect() } else { BTreeSet::new() };
        let users: BTreeSet<String> =
            if has(USER) { self.users().await?.into_keys().collect() } else { BTreeSet::new() };
        let databases: BTreeSet<String> = if has(DATABASE) {
            self.databases(None).await.map_err(|e| self.err(&e, "reading databases"))?.into_keys().collect()
        } else {
            BTreeSet::new()
        };
        let bundles = if has(ASSETS) { self.bundles_recorded().await? } else { BTreeSet::new() };
        let filters: BTreeSet<String> =
            if has(RLS) { self.rls_filters().await?.into_keys().collect() } else { BTreeSet::new() };
        let embedded: BTreeSet<String> =
            if has(EMBEDDED) { self.embedded_rows().await?.into_keys().collect() } else { BTreeSet::new() };
        Ok(left
            .into_iter()
            .map(|((kind, id), record)| {
                let exists = match kind.as_str() {
                    ROLE => roles.contains(id),
                    USER => users.contains(id),
                    DATABASE => databases.contains(id),
                    ASSETS => bundles.contains(id),
                    RLS => filters.contains(id),
                    EMBEDDED => embedded.contains(id),
                    _ => true,
                };
                Scanned { kind: kind.clone(), id: id.clone(), name: record.name.clone(), state: record.state, exists }
            })
            .collect())
    }
}

/// A permission on a database, schema or dataset (`schema_access on [OpenedX Clickhouse].[xapi]`):
/// Superset makes it when the object appears, which may be in the same apply, so its absence at
/// plan time is not an error; apply looks it up again.
fn data_permission(p: &str) -> bool {
    split_permission(p).is_some_and(|(perm, view)| {
        matches!(perm, "database_access" | "schema_access" | "catalog_access" | "datasource_access")
            && view.starts_with('[')
    })
}

pub(crate) struct Scanned {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub state: State,
    pub exists: bool,
}

#[async_trait]
impl ProviderRead for Handle {
    fn target(&self) -> String {
        self.target.clone()
    }
    fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }
    fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
    /// Defaults, then sets as sorted lists (Superset keeps no order of roles or permissions);
    /// an asset bundle is rendered.
    fn normalise(&self, kind: &KindSchema, resource: &mut Resource) {
        aspects_engine::ownership::fill_defaults(kind, resource);
        if kind.kind == ASSETS {
            self.normalise_assets(resource);
        }
        for list in ["permissions", "roles", "tables", "exclude", "allowed_domains", "locales", "owners"] {
            if let Some(v) = resource.attrs.get(list) {
                let sorted = sorted_list(str_list(Some(v)));
                resource.attrs.insert(list.to_owned(), sorted);
            }
        }
    }
    /// Permissions Superset does not know, database URIs that cannot be read, asset bundles
    /// that do not load.
    fn check(&self, kind: &KindSchema, resource: &Resource) -> Vec<Invalid> {
        if kind.kind == ASSETS {
            return self.check_assets(resource);
        }
        let mut out = Vec::new();
        if kind.kind == EMBEDDED && self.metadata.is_none() {
            out.push(Invalid::new("uuid", format!("[providers.{}] has no `metadata_url`", self.provider)).with_hint(
                "Superset's API cannot choose an embedded dashboard's UUID, so this kind writes Superset's \
                     metadata database: set metadata_url = \"mysql://USER@HOST:PORT/superset\" and metadata_password \
                     from [secrets] in the provider block",
            ));
        }
        // `prepare` read the catalogue when a role lists permissions.
        if kind.kind == ROLE
            && let Some(catalogue) = self.learnt_catalogue()
        {
            let unknown: Vec<&str> = str_list(resource.get("permissions"))
                .into_iter()
                .filter(|p| !catalogue.ids.contains_key(*p) && !data_permission(p))
                .collect();
            if let Some(first) = unknown.first() {
                let view = split_permission(first).map_or("", |(_, v)| v);
                out.push(
                    Invalid::new(
                        "permissions",
                        format!(
                            "Superset at {} has no permission {}{}",
                            self.target,
                            unknown.iter().take(5).map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", "),
                            if unknown.len() > 5 { format!(" (and {} more)", unknown.len() - 5) } else { String::new() }
                        ),
                    )
                    .with_hint(format!(
                        "names are `PERMISSION on VIEW` as Superset lists them (Settings > List Roles); `superset init` \
                         creates the standard ones; check the spelling of {view:?}"
                    )),
                );
            }
        }
        if let Some(uri) = resource.get("sqlalchemy_uri").and_then(Value::as_secret)
            && let Err(why) = crate::uri::check(uri.expose())
        {
            out.push(Invalid::new("sqlalchemy_uri", why).with_hint(
                "write it as DIALECT+DRIVER://USER:${secrets.NAME}@HOST:PORT/DATABASE, e.g. \
                 clickhousedb+connect://ch_report:${secrets.CH_REPORT}@clickhouse:8123/xapi",
            ));
        }
        out
    }
    /// The permission catalogue, when a role lists permissions: `check` names the unknown ones.
    async fn prepare(&self, desired: &[Resource]) -> Result<(), ProviderError> {
        self.session().await?;
        if desired.iter().any(|r| r.address.kind == ROLE && !str_list(r.get("permissions")).is_empty()) {
            self.catalogue().await?;
        }
        Ok(())
    }
    async fn read(&self, kind: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        if desired.is_empty() {
            return Ok(Vec::new());
        }
        self.session().await?;
        let read = async {
            match kind.kind {
                ROLE => self.read_roles(desired).await,
                USER => self.read_users(desired).await,
                DATABASE => self.read_databases(desired).await,
                ASSETS => self.read_assets(desired).await,
                RLS => self.read_rls(desired).await,
                EMBEDDED => self.read_embedded(desired).await,
                other => Err(ProviderError::new(format!("the superset provider has no kind `{other}`"))),
            }
        };
        // The records and the kind's objects at once.
        let (records, live) = tokio::join!(self.all_records(), read);
        let (records, mut live) = (records?, live?);
        let key = identity_attr(kind.kind);
        for (l, r) in live.iter_mut().zip(desired) {
            let Some(l) = l else { continue };
            let object = (kind.kind.to_owned(), str_attr(&r.attrs, key).to_owned());
            for owner in records.iter().filter(|o| !deployment_scoped(kind.kind) || o.deployment == self.deployment) {
                if let Some(record) = owner.entries.get(&object) {
                    mark_owner(l, &self.deployment, &owner.deployment, record.state);
                }
            }
        }
        Ok(live)
    }

    async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        self.session().await?;
        Ok(self
            .scan(desired)
            .await?
            .into_iter()
            .filter(|s| s.exists && s.state.owns())
            .map(|s| {
                let identity: BTreeMap<String, Value> = [(identity_attr(&s.kind).to_owned(), Value::from(s.id))].into();
                Orphan {
                    address: Address::new(s.kind, s.name),
                    attrs: identity.clone(),
                    identity,
                    provider: self.provider.clone(),
                    reason: "not in the plan".into(),
                    adopted: s.state == State::Adopted,
                }
            })
            .collect())
    }
}

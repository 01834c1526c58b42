//! Carrying out one planned change. Every step is safe to repeat after a crash: ownership is
//! claimed before an object is created (Superset refuses a second role, user or database of the
//! same name, so success proves this deployment made it), records go after the object, and
//! deleting something already gone counts as done. Role permissions and user roles are sent as
//! whole sets, which Superset replaces: extras go in the same request.

use std::collections::BTreeMap;
use std::time::Duration;

use aspects_core::{Action, Change, KindSchema, Resource, Secret, Value};
use aspects_engine::ownership::State;
use aspects_engine::provider::{LockGuard, ProviderError, ProviderWrite, desired_for};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};

use crate::client::{Handle, SsError, filter};
use crate::read::MARKER;
use crate::records::Record;
use crate::rls::RLS_API;
use crate::schema::{ASSETS, DATABASE, EMBEDDED, RLS, ROLE, USER, describe, identity_attr, str_attr, str_list};
use crate::uri;

type Identity = BTreeMap<String, Value>;

const ROLES: &str = "/api/v1/security/roles/";
const USERS: &str = "/api/v1/security/users/";
const DATABASES: &str = "/api/v1/database/";

fn bool_attr(r: &Resource, name: &str) -> bool {
    r.get(name) == Some(&Value::Bool(true))
}

fn secret<'r>(r: &'r Resource, name: &str) -> &'r str {
    r.get(name).and_then(Value::as_secret).map_or("", Secret::expose)
}

#[async_trait]
impl ProviderWrite for Handle {
    async fn apply(&self, kind: &KindSchema, change: &Change, desired: Option<&Resource>) -> Result<(), ProviderError> {
        tracing::debug!(address = %change.address, action = ?change.action, "apply");
        let kind = kind.kind;
        let desired = || desired_for(change, desired);
        let id_of = |attrs: &Identity| str_attr(attrs, identity_attr(kind)).to_owned();
        match change.action {
            Action::NoOp => Ok(()),
            Action::Adopt => {
                let r = desired()?;
                self.claim(kind, &id_of(&r.attrs), &r.address.name, State::Adopted).await
            }
            Action::Create => self.create(kind, desired()?).await,
            Action::Update => {
                let r = desired()?;
                if change.adopt {
                    self.claim(kind, &id_of(&r.attrs), &r.address.name, State::Adopted).await?;
                }
                if kind == ASSETS {
                    let before = change.attrs.iter().find(|a| a.name == "assets").and_then(|a| match &a.before {
                        Some(Value::Json(j)) => Some(&**j),
                        _ => None,
                    });
                    return self.sync_assets(r, before).await;
                }
                let password = change.attrs.iter().any(|a| a.name == "password");
                self.update(kind, r, password).await
            }
            Action::Replace => {
                let r = desired()?;
                if let Some(old) = &change.old_identity {
                    // Removed first: the new object may need the old one's unique name or e-mail.
                    let old = id_of(old);
                    let adopted = self
                        .own_records()
                        .await?
                        .entries
                        .get(&(kind.to_owned(), old.clone()))
                        .is_some_and(|rec| rec.state == State::Adopted);
                    if !adopted {
                        self.remove(kind, &old).await?;
                    }
                    self.set_record(kind, &old, None).await?;
                }
                self.create(kind, r).await
            }
            Action::Delete | Action::Release => {
                let old = change.old_identity.as_ref().ok_or_else(|| {
                    ProviderError::new(format!("{}: the engine passed no identity to remove", change.address))
                })?;
                let old = id_of(old);
                if change.action == Action::Delete {
                    self.remove(kind, &old).await?;
                }
                self.set_record(kind, &old, None).await
            }
        }
    }

    /// Drops this deployment's records that prove nothing: the object is gone, or a create was
    /// claimed but never confirmed and the plan no longer names it.
    async fn prune(&self, desired: &[Resource]) -> Result<usize, ProviderError> {
        let mut pruned = 0;
        for s in self.scan(desired).await? {
            if !s.exists || !s.state.owns() {
                self.set_record(&s.kind, &s.id, None).await?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Box<dyn LockGuard>, ProviderError> {
        let me = self.me.upgrade().ok_or_else(|| ProviderError::new("the Superset handle is gone"))?;
        Ok(Box::new(me.take_lock(holder, wait, waiting).await?))
    }
}

impl Handle {
    /// Claim, create (Superset refuses a duplicate), confirm. A failed create drops the claim.
    async fn create(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        let id = str_attr(&r.attrs, identity_attr(kind)).to_owned();
        self.claim(kind, &id, &r.address.name, State::Creating).await?;
        if let Err(e) = self.make(kind, r).await {
            if let Err(forget) = self.set_record(kind, &id, None).await {
                // The claim stays `creating`, which proves nothing: pruned or claimed again later.
                tracing::warn!("{forget}");
            }
            return Err(e);
        }
        self.set_record(kind, &id, Some(Record { name: r.address.name.clone(), state: State::Created })).await
    }

    async fn make(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        let what = describe(kind, &crate::schema::identity(kind, &r.attrs));
        let doing = format!("creating {what}");
        // A duplicate is a 500 ("Fatal error", or the database's unique-key message) or a 422.
        let appeared = |e: ProviderError| {
            let duplicate = ["Fatal error", "Duplicate", "UNIQUE", "already exists", "must be unique"];
            if !duplicate.iter().any(|d| e.message.contains(d)) {
                return e;
            }
            e.with_hint(format!(
                "if {what} appeared after the plan was read, this deployment did not create it and recorded nothing; \
                 run plan again: it offers to adopt it"
            ))
        };
        match kind {
            ROLE => {
                let body = json!({"name": str_attr(&r.attrs, "name")});
                let answer = self.write(Method::POST, ROLES, Some(&body), &doing).await.map_err(appeared)?;
                let id = answer.get("id").and_then(Json::as_i64).ok_or_else(|| {
                    ProviderError::new(format!("{doing}: Superset answered without the new role's id"))
                })?;
                self.set_permissions(id, r).await
            }
            USER => {
                let mut body = self.user_body(r).await?;
                body["username"] = json!(str_attr(&r.attrs, "username"));
                body["password"] = json!(secret(r, "password"));
                self.write(Method::POST, USERS, Some(&body), &doing).await.map(drop).map_err(appeared)
            }
            DATABASE => {
                let mut body = database_body(r, serde_json::Map::new());
                body["uuid"] = json!(str_attr(&r.attrs, "uuid"));
                self.write(Method::POST, DATABASES, Some(&body), &doing).await.map(drop).map_err(appeared)
            }
            ASSETS => self.sync_assets(r, None).await,
            RLS => self.create_rls(r, &doing).await.map_err(appeared),
            EMBEDDED => self.put_embedded(r).await,
            other => Err(ProviderError::new(format!("the superset provider cannot create a `{other}`"))),
        }
    }

    async fn update(&self, kind: &str, r: &Resource, password: bool) -> Result<(), ProviderError> {
        let name = str_attr(&r.attrs, identity_attr(kind));
        let what = describe(kind, &crate::schema::identity(kind, &r.attrs));
        let gone = || ProviderError::new(format!("{what} is gone; run plan again"));
        match kind {
            ROLE => {
                let id = self.find(ROLES, "name", name).await?.ok_or_else(gone)?;
                self.set_permissions(id, r).await
            }
            USER => {
                let id = self.find(USERS, "username", name).await?.ok_or_else(gone)?;
                let mut body = self.user_body(r).await?;
                if password {
                    body["password"] = json!(secret(r, "password"));
                }
                // The answer echoes the password: dropped unread.
                self.write(Method::PUT, &format!("{USERS}{id}"), Some(&body), &format!("updating {what}"))
                    .await
                    .map(drop)
            }
            DATABASE => {
                let found = self.databases(Some(name)).await.map_err(|e| self.err(&e, &format!("reading {what}")))?;
                let row = found.get(name).ok_or_else(gone)?;
                let body = database_body(r, row.extra.clone());
                self.write(Method::PUT, &format!("{DATABASES}{}", row.id), Some(&body), &format!("updating {what}"))
                    .await
                    .map(drop)
            }
            RLS => {
                let id = self.find(RLS_API, "name", name).await?.ok_or_else(gone)?;
                self.update_rls(id, r, &format!("updating {what}")).await
            }
            EMBEDDED => self.put_embedded(r).await,
            _ => Ok(()),
        }
    }

    /// Deletes the object; already gone counts as done.
    async fn remove(&self, kind: &str, id: &str) -> Result<(), ProviderError> {
        match kind {
            ASSETS => return self.remove_assets(id).await,
            EMBEDDED => return self.remove_embedded(id).await,
            _ => {}
        }
        let what = describe(kind, &[(identity_attr(kind).to_owned(), Value::from(id))].into());
        let found = match kind {
            ROLE => self.find(ROLES, "name", id).await?.map(|n| format!("{ROLES}{n}")),
            USER => self.find(USERS, "username", id).await?.map(|n| format!("{USERS}{n}")),
            RLS => self.find(RLS_API, "name", id).await?.map(|n| format!("{RLS_API}{n}")),
            DATABASE => {
                let found = self.databases(Some(id)).await.map_err(|e| self.err(&e, &format!("reading {what}")))?;
                found.get(id).map(|row| format!("{DATABASES}{}", row.id))
            }
            _ => None,
        };
        let Some(path) = found else { return Ok(()) };
        let result = self.call(Method::DELETE, &path, None).await;
        aspects_engine::fault::after_write();
        match result {
            Ok(_) => Ok(()),
            Err(SsError { status: Some(StatusCode::NOT_FOUND), .. }) => Ok(()),
            Err(e) => Err(self.err(&e, &format!("deleting {what}"))),
        }
    }

    /// The id of the object whose `column` equals `value`, if any: one request.
    async fn find(&self, path: &str, column: &str, value: &str) -> Result<Option<i64>, ProviderError> {
        let rows = self
            // Ordered by the column itself, which every one of these endpoints can order by.
            .list(path, column, &["id", column], &[filter(column, "eq", value)])
            .await
            .map_err(|e| self.err(&e, &format!("looking up {value:?}")))?;
        // `eq` may compare without case on some databases: keep the exact match.
        Ok(rows
            .iter()
            .find(|r| r.get(column).and_then(Json::as_str) == Some(value))
            .and_then(|r| r.get("id")?.as_i64()))
    }

    /// Replaces the role's whole permission set (one request, names resolved to ids from the
    /// catalogue, read again when it lacks one: Superset makes data permissions as this apply
    /// creates databases and datasets).
    async fn set_permissions(&self, role: i64, r: &Resource) -> Result<(), ProviderError> {
        let wanted = str_list(r.get("permissions"));
        let known = self.catalogue().await?;
        let fresh;
        let catalogue = if wanted.iter().all(|p| known.ids.contains_key(*p)) {
            known
        } else {
            fresh = self.permission_catalogue().await?;
            &fresh
        };
        let mut ids = Vec::with_capacity(wanted.len());
        for p in wanted {
            let id = catalogue.ids.get(p).ok_or_else(|| {
                ProviderError::new(format!("{}: Superset has no permission {p:?}", r.address)).with_hint(
                    "check the name against Settings > List Roles; `superset init` creates the standard ones",
                )
            })?;
            ids.push(*id);
        }
        let body = json!({"permission_view_menu_ids": ids});
        let doing = format!("setting the permissions of role {:?}", str_attr(&r.attrs, "name"));
        self.write(Method::POST, &format!("{ROLES}{role}/permissions"), Some(&body), &doing).await.map(drop)
    }

    /// The ids of the resource's `roles` (one request).
    pub(crate) async fn role_ids(&self, r: &Resource) -> Result<Vec<i64>, ProviderError> {
        let roles: BTreeMap<String, i64> = self.roles().await?.into_iter().map(|role| (role.name, role.id)).collect();
        let mut ids = Vec::new();
        for name in str_list(r.get("roles")) {
            let id = roles.get(name).ok_or_else(|| {
                ProviderError::new(format!("{}: Superset has no role {name:?}", r.address)).with_hint(
                    "declare it as a superset_role and refer to it (roles = [\"${superset_role.NAME.name}\"]) so it \
                     is created first, or fix the name",
                )
            })?;
            ids.push(*id);
        }
        Ok(ids)
    }

    /// A user's attributes as Superset takes them, its roles resolved to ids.
    async fn user_body(&self, r: &Resource) -> Result<Json, ProviderError> {
        Ok(json!({
            "first_name": str_attr(&r.attrs, "first_name"),
            "last_name": str_attr(&r.attrs, "last_name"),
            "email": str_attr(&r.attrs, "email"),
            "active": bool_attr(r, "active"),
            "roles": self.role_ids(r).await?,
        }))
    }
}

/// A database's attributes as Superset takes them; `extra` keeps what others put there and gets
/// a fresh fingerprint of the URI (see uri.rs).
fn database_body(r: &Resource, mut extra: serde_json::Map<String, Json>) -> Json {
    let uri = secret(r, "sqlalchemy_uri");
    extra.insert(MARKER.into(), json!({"uri": uri::fingerprint(uri)}));
    json!({
        "database_name": str_attr(&r.attrs, "database_name"),
        "sqlalchemy_uri": uri,
        "expose_in_sqllab": bool_attr(r, "expose_in_sqllab"),
        "allow_run_async": bool_attr(r, "allow_run_async"),
        "allow_dml": bool_attr(r, "allow_dml"),
        "extra": Json::Object(extra).to_string(),
    })
}

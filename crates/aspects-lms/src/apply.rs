//! Carrying out one planned change. Every step is safe to repeat after a crash: ownership is
//! claimed before an object is created (`aspects_sql::Server::create_owned`), records go after the
//! object is gone, and a create that finds the object already there changes nothing and says so.

use std::collections::BTreeMap;

use aspects_core::{Action, Change, KindSchema, Resource, Value};
use aspects_engine::provider::{ProviderError, desired_for};
use aspects_sql::records::State;

use crate::connect::Handle;
use crate::schema::{APPLICATION, FLAG, ROUTER, USER, identity, key_attr};
use crate::{oauth, router, user, waffle};

impl Handle {
    pub(crate) async fn apply_change(
        &self,
        kind: &KindSchema,
        change: &Change,
        desired: Option<&Resource>,
    ) -> Result<(), ProviderError> {
        tracing::debug!(address = %change.address, action = ?change.action, "apply");
        let k = kind.kind;
        let desired = || desired_for(change, desired);
        let old_identity = || {
            change.old_identity.as_ref().ok_or_else(|| {
                ProviderError::new(format!("{}: the engine passed no identity to remove", change.address))
            })
        };
        match change.action {
            Action::NoOp => Ok(()),
            Action::Adopt => {
                let r = desired()?;
                self.db.claim(k, &r.address.name, &identity(k, &r.attrs), State::Adopted).await
            }
            Action::Create => self.create(k, desired()?).await,
            Action::Update => {
                let r = desired()?;
                if change.adopt {
                    self.db.claim(k, &r.address.name, &identity(k, &r.attrs), State::Adopted).await?;
                }
                let changed: Vec<&str> = change.attrs.iter().map(|a| a.name.as_str()).collect();
                self.update(k, &changed, r).await
            }
            // Only an identity change replaces: bring up the new object, then take the old one
            // down (an adopted one is released, as `destroy` does, instead of removed).
            Action::Replace => {
                let r = desired()?;
                self.create(k, r).await?;
                let old = old_identity()?;
                if self.db.own_state(k, old).await? == Some(State::Adopted) {
                    self.db.forget(k, old).await
                } else {
                    self.destroy(k, old).await
                }
            }
            Action::Delete => self.destroy(k, old_identity()?).await,
            Action::Release => self.db.forget(k, old_identity()?).await,
        }
    }

    async fn create(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        let id = identity(kind, &r.attrs);
        let make = async {
            let made = match kind {
                USER => user::make(self, r).await?,
                FLAG => waffle::make(self, r).await?,
                APPLICATION => oauth::make(self, r).await?,
                ROUTER => router::make(self, r).await?,
                other => return Err(unknown(other)),
            };
            if made {
                return Ok(());
            }
            Err(ProviderError::new(format!(
                "{kind} {} appeared after the plan was read, so this deployment did not create it and recorded nothing",
                r.str(key_attr(kind)).unwrap_or_default()
            ))
            .with_hint("run plan again: it offers to adopt it"))
        };
        self.db.create_owned(kind, &r.address.name, &id, make).await
    }

    async fn update(&self, kind: &str, changed: &[&str], r: &Resource) -> Result<(), ProviderError> {
        match kind {
            USER => user::update(self, changed, r).await,
            FLAG => waffle::update(self, changed, r).await,
            APPLICATION => oauth::update(self, changed, r).await,
            // A ConfigurationModel change is a new current row.
            ROUTER => router::append(self, r).await,
            other => Err(unknown(other)),
        }
    }

    /// Removes the object, then its ownership record.
    async fn destroy(&self, kind: &str, id: &BTreeMap<String, Value>) -> Result<(), ProviderError> {
        let key = id.get(key_attr(kind)).and_then(Value::as_str).unwrap_or_default();
        if key.is_empty() {
            return Err(ProviderError::new(format!("refusing to remove a {kind} with an empty identity")));
        }
        match kind {
            USER => user::remove(self, key).await?,
            FLAG => waffle::remove(self, key).await?,
            APPLICATION => oauth::remove(self, key).await?,
            ROUTER => router::disable(self, key).await?,
            other => return Err(unknown(other)),
        }
        self.db.forget(kind, id).await
    }
}

fn unknown(kind: &str) -> ProviderError {
    ProviderError::new(format!("the lms provider has no kind `{kind}`"))
}

/// A boolean attribute as the LMS's tinyint columns store it.
pub fn flag(r: &Resource, attr: &str) -> Option<bool> {
    match r.get(attr) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// A list attribute's strings.
pub fn strings<'r>(r: &'r Resource, attr: &str) -> Option<Vec<&'r str>> {
    match r.get(attr) {
        Some(Value::List(items)) => Some(items.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// A secret attribute's value (sensitive values from `[secrets]`).
pub fn secret<'r>(r: &'r Resource, attr: &str) -> Option<&'r str> {
    match r.get(attr) {
        Some(Value::Sensitive(s)) => Some(s.expose()),
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

//! Reading: every kind in one query for all its resources, objects matched by the attribute the
//! LMS looks them up by (compared as the database's case-insensitive collation compares them),
//! and the records this deployment keeps for what the plan no longer names.

use std::collections::{BTreeMap, BTreeSet};

use aspects_core::{KindSchema, Live, Orphan, Resource, Value, Verification};
use aspects_engine::provider::ProviderError;
use aspects_sql::records::{self, Record, Stale};

use crate::connect::Handle;
use crate::schema::{self, APPLICATION, FLAG, ROUTER, USER, identity, key_attr};
use crate::{oauth, router, user, waffle};

/// What one query found for one object.
#[derive(Default)]
pub struct Found {
    /// Comparable attributes, normalised as desired ones are.
    pub attrs: BTreeMap<String, Value>,
    /// Stored secret forms (a hash, a plaintext client secret, Fernet tokens), never shown: only
    /// used to verify write-only attributes.
    pub stored: BTreeMap<&'static str, Vec<u8>>,
}

/// The map key of an object: its identity as the database's `_ci` collation compares it.
pub fn fold(key: &str) -> String {
    key.to_lowercase()
}

/// Desired resources in the form live reads take: defaults filled, percentages canonical.
pub fn normalise(kind: &KindSchema, resource: &mut Resource) {
    aspects_engine::ownership::fill_defaults(kind, resource);
    if let Some(Value::Str(p)) = resource.attrs.get_mut("percent") {
        *p = schema::canonical_percent(p);
    }
}

impl Handle {
    /// Objects of `kind` by folded key (one query).
    pub(crate) async fn find(&self, kind: &str, keys: &[&str]) -> Result<BTreeMap<String, Found>, ProviderError> {
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        match kind {
            USER => user::find(self, keys).await,
            FLAG => waffle::find(self, keys).await,
            APPLICATION => oauth::find(self, keys).await,
            ROUTER => router::find(self, keys).await,
            other => Err(ProviderError::new(format!("the lms provider has no kind `{other}`"))),
        }
    }

    fn verify(&self, kind: &str, desired: &Resource, found: &Found) -> BTreeMap<String, Verification> {
        match kind {
            USER => user::verify(desired, found),
            APPLICATION => oauth::verify(desired, found),
            ROUTER => router::verify(self, desired, found),
            _ => BTreeMap::new(),
        }
    }

    pub(crate) async fn read_kind(
        &self,
        kind: &KindSchema,
        desired: &[Resource],
    ) -> Result<Vec<Option<Live>>, ProviderError> {
        let keys: Vec<&str> = desired.iter().map(|r| r.str(key_attr(kind.kind)).unwrap_or_default()).collect();
        let found = self.find(kind.kind, &keys).await?;
        let mut live: Vec<Option<Live>> = desired
            .iter()
            .zip(&keys)
            .map(|(r, k)| {
                found.get(&fold(k)).map(|f| Live {
                    attrs: f.attrs.clone(),
                    verified: self.verify(kind.kind, r, f),
                    ..Live::default()
                })
            })
            .collect();
        self.db.mark_owners(kind.kind, &mut live, desired.iter().map(|r| identity(kind.kind, &r.attrs))).await?;
        Ok(live)
    }

    /// Records of this deployment that `desired` does not name, with the object each names
    /// (absent when it is gone): one query for the records and one per kind.
    async fn stale(&self, desired: &[Resource]) -> Result<Vec<Stale>, ProviderError> {
        let wanted: BTreeSet<(String, String)> = desired
            .iter()
            .map(|r| {
                let kind = r.address.kind.as_str();
                (kind.to_owned(), records::key(kind, &identity(kind, &r.attrs)))
            })
            .collect();
        let mut stale: Vec<Record> = self
            .db
            .owned_records()
            .await?
            .into_iter()
            .filter(|r| !wanted.contains(&(r.kind.clone(), r.key.clone())))
            .collect();
        let mut out = Vec::with_capacity(stale.len());
        for kind in [USER, FLAG, APPLICATION, ROUTER] {
            let of_kind: Vec<Record>;
            (of_kind, stale) = stale.into_iter().partition(|r| r.kind == kind);
            let keys: Vec<String> = of_kind
                .iter()
                .map(|r| r.identity.get(key_attr(kind)).and_then(Value::as_str).unwrap_or("").to_owned())
                .collect();
            let mut found = self.find(kind, &keys.iter().map(String::as_str).collect::<Vec<_>>()).await?;
            for (rec, key) in of_kind.into_iter().zip(&keys) {
                out.push((rec, found.remove(&fold(key)).map(|f| f.attrs)));
            }
        }
        Ok(out)
    }

    /// Owned objects the plan no longer names.
    pub(crate) async fn orphans_of(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        Ok(records::orphans(self.stale(desired).await?, &self.provider).collect())
    }

    /// Drops the records [`Self::orphans_of`] does not show.
    pub(crate) async fn prune_records(&self, desired: &[Resource]) -> Result<usize, ProviderError> {
        self.db.prune(self.stale(desired).await?).await
    }
}

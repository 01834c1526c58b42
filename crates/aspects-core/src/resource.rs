//! Desired resources, what providers read back, and objects owned by the deployment that the plan
//! no longer names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// `kind.name`, the address a plan file gives a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address {
    pub kind: String,
    pub name: String,
}

/// The kind of the graph nodes that stand for secrets: `secrets.NAME`, as plan files refer to
/// them. Resources that use a secret depend on its node, so its consumers are its dependents.
pub const SECRET_KIND: &str = "secrets";

impl Address {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self { kind: kind.into(), name: name.into() }
    }

    /// The graph node of secret `name`.
    pub fn secret(name: impl Into<String>) -> Self {
        Self::new(SECRET_KIND, name)
    }

    pub fn is_secret(&self) -> bool {
        self.kind == SECRET_KIND
    }

    /// Parses `kind.name` (the name may itself be quoted: `kind["a b"]`).
    pub fn parse(s: &str) -> Option<Self> {
        if let Some((kind, rest)) = s.split_once("[\"") {
            let name = rest.strip_suffix("\"]")?;
            return Some(Self::new(kind, name));
        }
        let (kind, name) = s.split_once('.')?;
        (!kind.is_empty() && !name.is_empty()).then(|| Self::new(kind, name))
    }
}

fn is_bare(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_bare(&self.name) {
            write!(f, "{}.{}", self.kind, self.name)
        } else {
            write!(f, "{}[{:?}]", self.kind, self.name)
        }
    }
}

/// `mysql` or `mysql.lms`: which configured provider instance serves a resource.
pub type ProviderId = String;

/// A resource as the plan file wants it, references resolved.
#[derive(Clone, Debug, Default)]
pub struct Resource {
    pub address: Address,
    pub provider: ProviderId,
    pub attrs: BTreeMap<String, Value>,
    /// Shared (like `attr_origins`): the planner's normalised copy of each resource changes only
    /// its attributes, and thousands of resources would otherwise carry these twice.
    pub depends_on: Arc<BTreeSet<Address>>,
    /// `file:line:col` of its table, for messages.
    pub origin: String,
    /// `file:line:col` of each attribute's value as written (defaults have none), so a provider
    /// can report a plan-time problem at the attribute. A short list keyed by the schema's
    /// names: a map per resource cost ~550 bytes for a handful of entries.
    pub attr_origins: Arc<Vec<(&'static str, String)>>,
    /// Names of every secret its attribute values derive from: directly, through vars, or
    /// through another resource's attribute. Shared with the normalised copy, as above.
    pub secrets: Arc<BTreeSet<String>>,
    /// The subset of `secrets` that flows into write-only secret attributes: credentials the
    /// target itself checks (a user's password), as opposed to copies a client presents (a
    /// connection URI). A rotation changes these first.
    pub credential_secrets: Arc<BTreeSet<String>>,
}

impl Resource {
    pub fn get(&self, attr: &str) -> Option<&Value> {
        self.attrs.get(attr)
    }

    pub fn str(&self, attr: &str) -> Option<&str> {
        self.attrs.get(attr).and_then(Value::as_str)
    }

    /// Where an attribute is written, falling back to the resource's table.
    pub fn origin_of(&self, attr: &str) -> &str {
        self.attr_origins.iter().find(|(name, _)| *name == attr).map_or(&self.origin, |(_, at)| at)
    }
}

/// The result of checking a write-only attribute against the live object without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    Matches,
    Differs,
    /// The provider could not tell (e.g. an auth plugin it cannot verify); treated as a change.
    Unknown(String),
}

/// What a provider read for one desired resource, normalised by the same function as the desired
/// value. Write-only attributes appear only in `verified`.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub attrs: BTreeMap<String, Value>,
    pub verified: BTreeMap<String, Verification>,
    /// The deployment records this object as its own (adopted objects are not, until applied).
    pub owned: bool,
    /// Another deployment records this object as its own: planning refuses to manage it too.
    pub other_owner: Option<String>,
}

/// An object this deployment owns (or a managed parent carries) that the plan does not name.
#[derive(Clone, Debug)]
pub struct Orphan {
    /// The address it was created under, when known; otherwise a synthesised one.
    pub address: Address,
    /// The identity attributes, enough for the provider to delete it.
    pub identity: BTreeMap<String, Value>,
    /// What it looks like now, shown in the plan.
    pub attrs: BTreeMap<String, Value>,
    pub provider: ProviderId,
    /// Why it is going: "not in the plan", "privileges beyond the plan".
    pub reason: String,
    /// The deployment adopted it rather than created it: `destroy` releases it unless told
    /// otherwise.
    pub adopted: bool,
}

/// One `[providers.X]` block, references resolved.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub id: ProviderId,
    pub system: String,
    pub attrs: BTreeMap<String, Value>,
    pub origin: String,
}

/// Everything the plan files ask for.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// Names this deployment in the targets' ownership records, so several deployments can share
    /// a server without touching each other's objects.
    pub deployment: String,
    pub providers: BTreeMap<ProviderId, ProviderConfig>,
    pub resources: BTreeMap<Address, Resource>,
}

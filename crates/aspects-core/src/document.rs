//! The versioned JSON plan document: what `plan --json` prints and `plan --out` saves. A DTO kept
//! apart from engine types so the format changes only on purpose (bump `FORMAT_VERSION`).
//! Sensitive values appear only as `{"sensitive": true}`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::diff::{Action, Change, Plan, Summary};
use crate::render::verdict;

pub const FORMAT_VERSION: &str = "1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanDocument {
    pub format_version: String,
    pub aspects_version: String,
    pub created_at: String,
    pub deployment: String,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    pub changes: Vec<ChangeDoc>,
    /// The plan files as they were read, so `apply PLANFILE` applies exactly this configuration.
    /// Plan files never hold secret values: sensitive attributes must come from `[secrets]`.
    pub config: Vec<SourceDoc>,
    /// Vars overridden by `--var` or `ASPECTS_VAR_*` when the plan was made; applying the saved
    /// plan uses exactly these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// Where each secret comes from, and a keyed fingerprint (HMAC, key in the secrets file) so a
    /// saved plan can tell that a secret changed without holding it.
    pub secrets: Vec<SecretDoc>,
    /// Rotations this plan carries on: asked for (`aspects rotate`) or left pending by an
    /// earlier run, with each consumer and whether it already uses the new value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<RotationDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RotationDoc {
    pub secret: String,
    /// When the rotation began, if an earlier run left it pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<String>,
    /// Every credential keeps the old secret until all clients moved.
    pub zero_downtime: bool,
    /// In the order the rotation touches them.
    pub consumers: Vec<ConsumerDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsumerDoc {
    pub address: String,
    /// `credential` (the target checks the secret) or `client` (it presents or embeds it).
    pub role: String,
    /// For credentials: `dual` (holds old and new at once) or `replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
    /// Already uses the new value.
    pub converged: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub changes: bool,
    pub summary: Summary,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeDoc {
    pub address: String,
    pub provider: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_bearing: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<AttrDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttrDoc {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replace: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverifiable: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceDoc {
    pub path: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretDoc {
    pub name: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl From<&Change> for ChangeDoc {
    fn from(c: &Change) -> Self {
        Self {
            address: c.address.to_string(),
            provider: c.provider.clone(),
            action: c.action,
            reason: c.reason.clone(),
            adopt: c.adopt,
            data_bearing: c.data_bearing,
            attrs: c
                .attrs
                .iter()
                .map(|a| AttrDoc {
                    name: a.name.clone(),
                    before: a.before.as_ref().map(|v| v.to_json()),
                    after: a.after.as_ref().map(|v| v.to_json()),
                    sensitive: a.sensitive,
                    forces_replace: a.forces_replace,
                    unverifiable: a.unverifiable.clone(),
                })
                .collect(),
        }
    }
}

impl PlanDocument {
    pub fn new(plan: &Plan, created_at: String, config: Vec<SourceDoc>, secrets: Vec<SecretDoc>) -> Self {
        Self {
            format_version: FORMAT_VERSION.into(),
            aspects_version: env!("CARGO_PKG_VERSION").into(),
            created_at,
            deployment: plan.deployment.clone(),
            verdict: Verdict { changes: plan.has_changes(), summary: plan.summary(), text: verdict(plan) },
            targets: plan.targets.as_ref().map(|t| t.iter().map(ToString::to_string).collect()),
            changes: plan.changes.iter().map(ChangeDoc::from).collect(),
            config,
            vars: BTreeMap::new(),
            secrets,
            rotations: Vec::new(),
        }
    }

    /// Addresses whose planned change differs between two documents (stale saved plans).
    pub fn moved_since<'a>(&'a self, now: &'a PlanDocument) -> Vec<String> {
        // By address through maps: a saved plan can hold thousands of changes.
        let first_by_address = |changes: &'a [ChangeDoc]| {
            let mut by: HashMap<&'a str, &'a ChangeDoc> = HashMap::new();
            for c in changes {
                by.entry(c.address.as_str()).or_insert(c);
            }
            by
        };
        let (saved, current) = (first_by_address(&self.changes), first_by_address(&now.changes));
        let mut moved: Vec<String> = Vec::new();
        for c in &self.changes {
            if current.get(c.address.as_str()) != Some(&c) {
                moved.push(c.address.clone());
            }
        }
        for n in &now.changes {
            if !saved.contains_key(n.address.as_str()) {
                moved.push(n.address.clone());
            }
        }
        moved.sort();
        moved.dedup();
        moved
    }
}

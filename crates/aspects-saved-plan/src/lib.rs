//! Saved plans: the versioned plan document (`plan --json`, `plan --out`), written atomically,
//! read back for `apply PLANFILE`, and checked against a fresh plan before anything is applied.
//!
//! A saved plan holds no resolved desired state (that would hold secrets): it embeds the plan
//! files, the var overrides in effect and a keyed fingerprint of each secret (HMAC, key in the
//! secrets file). Applying it reloads that configuration, re-plans under the lock and refuses,
//! naming what moved, if any change or secret differs from what was reviewed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aspects_config::{LoadOptions, Loaded, SecretState, SecretValues, SourceFile, fingerprint};
use aspects_core::document::{ConsumerDoc, FORMAT_VERSION, PlanDocument, RotationDoc, SecretDoc, SourceDoc};
use aspects_engine::plan::Planned;
use aspects_engine::rotate::{Role, Rotation};

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot read saved plan {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is a plan document of format {found}; this aspects reads format {FORMAT_VERSION}")]
    Version { path: PathBuf, found: String },
    #[error("{path}:{line}:{column}: not a saved plan: {message}")]
    Malformed { path: PathBuf, line: usize, column: usize, message: String },
    #[error("the saved plan {path} is stale: {why}")]
    Stale { path: PathBuf, why: String, moved: Vec<String> },
}

impl SavedPlanError {
    pub fn hint(&self) -> &'static str {
        match self {
            SavedPlanError::Read { .. } => "save one with: aspects plan --out FILE",
            SavedPlanError::Write { .. } => "check that the folder exists and is writable",
            SavedPlanError::Version { .. } => "make the plan again with this version of aspects",
            SavedPlanError::Malformed { .. } => "pass a file written by `aspects plan --out FILE`, unmodified",
            SavedPlanError::Stale { .. } => "nothing was changed; make and review a new plan: aspects plan --out FILE",
        }
    }

    /// Every address that moved (the message names the first few).
    pub fn moved(&self) -> &[String] {
        match self {
            SavedPlanError::Stale { moved, .. } => moved,
            _ => &[],
        }
    }
}

/// The plan document of `planned` over `loaded`, with the rotations it carries on. Secret
/// fingerprints need the key from the secrets file: without one (drift before any plan) they
/// are left out, and a saved plan then counts every secret as changed.
pub fn document(planned: &Planned, loaded: &Loaded, rotations: &[Rotation]) -> PlanDocument {
    let key = loaded.store.existing_fingerprint_key();
    let mut secrets: Vec<SecretDoc> = loaded
        .secrets
        .iter()
        .map(|s| SecretDoc {
            name: s.name.clone(),
            source: s.source.to_string(),
            fingerprint: key.as_ref().map(|k| fingerprint(k, &s.name, &s.value)),
        })
        .collect();
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    let config = loaded
        .sources
        .files
        .iter()
        .map(|f| SourceDoc { path: f.path.display().to_string(), text: f.text.clone() })
        .collect();
    let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut doc = PlanDocument::new(&planned.plan, created, config, secrets);
    doc.vars = loaded.overrides.clone();
    doc.rotations = rotations.iter().map(|r| rotation_doc(r, loaded)).collect();
    doc
}

fn rotation_doc(r: &Rotation, loaded: &Loaded) -> RotationDoc {
    let pending_since = loaded.secrets.iter().find(|s| s.name == r.secret).and_then(|s| match &s.state {
        SecretState::Pending { started } => Some(started.clone()),
        _ => None,
    });
    let consumers = r
        .consumers
        .iter()
        .map(|c| {
            let (role, rotation) = match c.role {
                Role::Credential(mode) => ("credential", Some(format!("{mode:?}").to_lowercase())),
                Role::Client => ("client", None),
            };
            ConsumerDoc { address: c.address.to_string(), role: role.into(), rotation, converged: c.converged() }
        })
        .collect();
    RotationDoc { secret: r.secret.clone(), pending_since, zero_downtime: r.zero_downtime(), consumers }
}

/// Writes the document atomically: a crash leaves the old file or the new one, never half.
pub fn write(path: &Path, doc: &PlanDocument) -> Result<(), SavedPlanError> {
    let text = serde_json::to_string_pretty(doc).expect("plan documents serialise");
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| SavedPlanError::Write { path: path.to_owned(), source })
}

pub fn read(path: &Path) -> Result<PlanDocument, SavedPlanError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| SavedPlanError::Read { path: path.to_owned(), source })?;
    let version: Option<String> = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("format_version").and_then(|f| f.as_str()).map(str::to_owned));
    if let Some(found) = version.filter(|v| v != FORMAT_VERSION) {
        return Err(SavedPlanError::Version { path: path.to_owned(), found });
    }
    serde_json::from_str(&text).map_err(|e| SavedPlanError::Malformed {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// The plan files a saved plan carries, to load instead of the ones on disk.
pub fn sources(doc: &PlanDocument) -> Vec<SourceFile> {
    doc.config.iter().map(|s| SourceFile { path: PathBuf::from(&s.path), text: s.text.clone() }).collect()
}

/// Load options for a saved plan: its own vars, never the environment's, and only secret
/// values that already exist (a saved plan never generates one).
pub fn load_options(doc: &PlanDocument, base: LoadOptions) -> LoadOptions {
    LoadOptions { vars: doc.vars.clone(), vars_from_env: false, secret_values: SecretValues::Existing, ..base }
}

/// Refuses to apply `saved` when the plan made now differs from it, change by change, or a
/// secret's fingerprint moved.
pub fn check_not_stale(path: &Path, saved: &PlanDocument, now: &PlanDocument) -> Result<(), SavedPlanError> {
    let moved = saved.moved_since(now);
    let secrets: Vec<&str> = saved
        .secrets
        .iter()
        .filter(|s| {
            !now.secrets.iter().any(|n| n.name == s.name && n.fingerprint == s.fingerprint && s.fingerprint.is_some())
        })
        .map(|s| s.name.as_str())
        .collect();
    if moved.is_empty() && secrets.is_empty() {
        return Ok(());
    }
    let mut why = Vec::new();
    if !moved.is_empty() {
        why.push(format!("live state or the planned change moved for {}", aspects_engine::few(&moved)));
    }
    if !secrets.is_empty() {
        why.push(format!("secret value changed for {}", secrets.join(", ")));
    }
    Err(SavedPlanError::Stale { path: path.to_owned(), why: why.join("; "), moved })
}

//! Plan files on disk: reading them, parsing each, layering them into one tree, and where their
//! secrets file lives by default.

use std::path::{Path, PathBuf};

use crate::source::{Diagnostic, SourceFile, SourceMap};
use crate::tree::{self, NodeValue, Table};

const SECRETS_SUFFIX: &str = ".secrets.toml";
/// Beside the first plan file; created 0700 when a secret is first saved.
const SECRETS_DIR: &str = ".aspects";

/// Reads plan files in layering order; every file that cannot be read is reported.
pub(super) fn read(paths: &[PathBuf]) -> Result<Vec<SourceFile>, (Vec<Diagnostic>, Vec<SourceFile>)> {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        // Its syntax errors would quote its lines, which are secret values.
        if path.to_string_lossy().ends_with(SECRETS_SUFFIX) {
            diags.push(
                Diagnostic::new(format!("{} is a secrets file, not a plan file", path.display()), None)
                    .hint("pass it with --secrets PATH (or ASPECTS_SECRETS); plan files go to -f"),
            );
            continue;
        }
        match std::fs::read_to_string(path) {
            Ok(text) => files.push(SourceFile { path: path.clone(), text }),
            Err(e) => diags.push(
                Diagnostic::new(format!("cannot read plan file {}: {e}", path.display()), None)
                    .hint("pass the plan with -f PATH; the default is ./aspects.toml"),
            ),
        }
    }
    if diags.is_empty() { Ok(files) } else { Err((diags, files)) }
}

/// Parses every file and layers them: a later file overrides an earlier one, key by key, except
/// that a secret declared again replaces the earlier declaration whole (its source is one key:
/// `{ env = ".." }` over `{ generate = 24 }` must not become a source with two keys).
/// The files that parse are layered even when others do not, so the deployment name (and with it
/// the secrets file) is known for masking the syntax errors.
pub(super) fn layer(sources: &SourceMap) -> (Table, Vec<Diagnostic>) {
    let mut root = Table::default();
    let mut diags = Vec::new();
    for (i, f) in sources.files.iter().enumerate() {
        match tree::parse(i, &f.text) {
            Ok(t) => {
                if let (Some(mine), Some(theirs)) = (secrets_mut(&mut root), secrets(&t)) {
                    mine.entries.retain(|e| theirs.get(&e.key).is_none());
                }
                root.merge(t);
            }
            Err(d) => diags.push(d),
        }
    }
    (root, diags)
}

fn secrets(root: &Table) -> Option<&Table> {
    match &root.get("secrets")?.node.value {
        NodeValue::Table(t) => Some(t),
        _ => None,
    }
}

fn secrets_mut(root: &mut Table) -> Option<&mut Table> {
    match &mut root.entries.iter_mut().find(|e| e.key == "secrets")?.node.value {
        NodeValue::Table(t) => Some(t),
        _ => None,
    }
}

/// Bound to the deployment, not to a plan file's name: renaming or copying the plan file must
/// find the same secrets. `<folder of the first plan file>/.aspects/<deployment>.secrets.toml`.
pub fn default_secrets_path(first_plan: &Path, deployment: &str) -> PathBuf {
    first_plan.with_file_name(SECRETS_DIR).join(format!("{deployment}{SECRETS_SUFFIX}"))
}

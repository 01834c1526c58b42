//! Plan files on disk: reading them, parsing each, layering them into one tree, and where their
//! secrets file lives by default.

use std::path::{Path, PathBuf};

use crate::source::{Diagnostic, SourceFile, SourceMap};
use crate::tree::{self, Table};

const SECRETS_SUFFIX: &str = ".secrets.toml";

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

/// Parses every file and layers them: a later file overrides an earlier one.
pub(super) fn layer(sources: &SourceMap) -> Result<Table, Vec<Diagnostic>> {
    let mut root = Table::default();
    let mut diags = Vec::new();
    for (i, f) in sources.files.iter().enumerate() {
        match tree::parse(i, &f.text) {
            Ok(t) => root.merge(t),
            Err(d) => diags.push(d),
        }
    }
    if diags.is_empty() { Ok(root) } else { Err(diags) }
}

pub fn default_secrets_path(plan: &Path) -> PathBuf {
    let stem = plan.file_stem().map_or("aspects".into(), |s| s.to_string_lossy().into_owned());
    plan.with_file_name(format!("{stem}{SECRETS_SUFFIX}"))
}

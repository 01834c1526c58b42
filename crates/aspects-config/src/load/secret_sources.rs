//! `[secrets]`: where each secret's value comes from (an environment variable, a file, or
//! generated into the secrets file), and the check that no value was pasted into a plan file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use aspects_core::Secret;

use super::{Loader, SecretValues, valid_ident};
use crate::secrets::{SecretStore, generate};
use crate::source::{Diagnostic, Location, SourceMap, did_you_mean};
use crate::tree::{Entry, NodeValue};

const FORMS: &str = "NAME = { generate = 24 }, { env = \"VAR\" } or { file = \"/path\" }";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    Generate(usize),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "env:{v}"),
            SecretSource::File(p) => write!(f, "file:{}", p.display()),
            SecretSource::Generate(n) => write!(f, "generate:{n}"),
        }
    }
}

#[derive(Debug)]
pub struct LoadedSecret {
    pub name: String,
    pub source: SecretSource,
    pub value: Secret,
    pub state: SecretState,
}

/// Where a loaded secret's value stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// As the secrets file or the source holds it.
    Current,
    /// A `generate` secret made by this load for the first time (saved by `Loaded::save_secrets`).
    Generated,
    /// A rotation in progress, recorded in the secrets file since `started`: the value is the
    /// pending one (a `generate` secret) or the source's (env, file).
    Pending { started: String },
    /// A new value made by this load for `aspects rotate`, not saved yet: it must be recorded as
    /// pending before any target uses it.
    Rotated,
}

/// A `[secrets]` entry whose source is well formed; its value is read on first use.
pub(super) struct Declared {
    source: SecretSource,
    /// The source's value (for read errors) and key (for a missing generated value).
    at: Location,
    key_at: Location,
    /// `None` until first referenced; then the value, or `None` if reading it failed.
    value: Option<Option<Secret>>,
}

/// The secrets of one load: the store generated ones live in, each declared source, and the
/// values read so far.
pub(super) struct Secrets {
    pub store: SecretStore,
    /// Every declared name; `None` when its source is malformed (already reported).
    pub declared: BTreeMap<String, Option<Declared>>,
    /// Values read or generated, in first-use order.
    pub loaded: Vec<LoadedSecret>,
}

impl Secrets {
    pub fn new(store: SecretStore) -> Self {
        Self { store, declared: BTreeMap::new(), loaded: Vec::new() }
    }
}

impl Loader<'_> {
    /// Checks the form of every source; values are read only where they are used.
    pub(super) fn read_secrets(&mut self, entry: &Entry) {
        let hint = "write [secrets] then NAME = { generate = 24 }";
        let Some(t) = self.table(&entry.node, "`secrets` must be a table".into(), Some(hint.into())) else {
            return;
        };
        for e in &t.entries {
            let declared = self.declare(e);
            self.secrets.declared.insert(e.key.clone(), declared);
        }
    }

    fn declare(&mut self, e: &Entry) -> Option<Declared> {
        if !valid_ident(&e.key) {
            self.err(
                Diagnostic::new(format!("secret name `{}` is not valid", e.key), Some(e.key_loc.clone()))
                    .hint("secret names start with a letter and use letters, digits and `_`"),
            );
            return None;
        }
        let NodeValue::Table(t) = &e.node.value else {
            self.err(
                Diagnostic::new(
                    format!("secret `{}` must say where its value comes from", e.key),
                    Some(e.node.loc.clone()),
                )
                .hint(format!("write {FORMS}; secret values never go in the plan file")),
            );
            return None;
        };
        if t.entries.len() != 1 {
            self.err(
                Diagnostic::new(format!("secret `{}` needs exactly one source", e.key), Some(e.node.loc.clone()))
                    .hint(format!("write {FORMS}")),
            );
            return None;
        }
        let src = &t.entries[0];
        let source = match (src.key.as_str(), &src.node.value) {
            ("env", NodeValue::Str(var)) if valid_env_name(var) => SecretSource::Env(var.clone()),
            ("env", NodeValue::Str(var)) if !var.is_empty() => {
                self.err(
                    Diagnostic::new(format!("`{var}` is not an environment variable name"), Some(src.node.loc.clone()))
                        .hint("names are letters, digits and `_`, not starting with a digit: env = \"MYSQL_ROOT_PASSWORD\""),
                );
                return None;
            }
            ("file", NodeValue::Str(path)) if !path.is_empty() => {
                // Relative to the file that names it.
                let base = self.sources.files[src.node.loc.file].path.parent().map(Path::to_path_buf);
                SecretSource::File(base.unwrap_or_default().join(path))
            }
            ("generate", NodeValue::Int(n)) if (8..=256).contains(n) => SecretSource::Generate(*n as usize),
            ("generate", NodeValue::Int(_)) => {
                self.err(
                    Diagnostic::new("generate takes a length from 8 to 256", Some(src.node.loc.clone()))
                        .hint("Aspects uses 24 for passwords"),
                );
                return None;
            }
            ("env" | "file", NodeValue::Str(_)) => {
                self.err(Diagnostic::new(format!("`{}` must not be empty", src.key), Some(src.node.loc.clone())));
                return None;
            }
            ("env" | "file", v)
            | (
                "generate",
                v @ (NodeValue::Str(_)
                | NodeValue::Bool(_)
                | NodeValue::Array(_)
                | NodeValue::Table(_)
                | NodeValue::Other(_)),
            ) => {
                let want = if src.key == "generate" { "an integer length" } else { "a string" };
                self.err(Diagnostic::new(
                    format!("`{}` takes {want}, not {}", src.key, v.type_name()),
                    Some(src.node.loc.clone()),
                ));
                return None;
            }
            (k, _) => {
                let hint = did_you_mean(k, ["env", "file", "generate"]).unwrap_or_else(|| format!("write {FORMS}"));
                self.err(Diagnostic::new(format!("unknown secret source `{k}`"), Some(src.key_loc.clone())).hint(hint));
                return None;
            }
        };
        Some(Declared { source, at: src.node.loc.clone(), key_at: src.key_loc.clone(), value: None })
    }

    /// The value of a declared secret, read (or generated) on first use. `None` when reading
    /// failed (reported) or the source is malformed (reported where declared).
    pub(super) fn secret_value(&mut self, name: &str) -> Option<Secret> {
        let declared = self.secrets.declared.get(name)?.as_ref()?;
        if let Some(v) = &declared.value {
            return v.clone();
        }
        let (source, at, key_at) = (declared.source.clone(), declared.at.clone(), declared.key_at.clone());
        let pending = self.secrets.store.pending(name).map(|p| (p.value, SecretState::Pending { started: p.started }));
        let read = match (&source, self.opts.secret_values) {
            // validate and graph need no values: an empty stand-in, never matched or printed.
            (_, SecretValues::Unread) => Some((Secret::new(""), SecretState::Current)),
            (SecretSource::Env(var), _) => self.read_env(name, var, &at).map(|v| (v, sourced(pending))),
            (SecretSource::File(path), _) => self.read_file(name, path, &at).map(|v| (v, sourced(pending))),
            (SecretSource::Generate(len), _) => match pending {
                Some((Some(v), state)) => Some((v, state)),
                _ => self.generated(name, *len, &key_at),
            },
        };
        if let Some((value, state)) = &read {
            let state = state.clone();
            self.secrets.loaded.push(LoadedSecret { name: name.to_owned(), source, value: value.clone(), state });
        }
        let value = read.map(|(v, _)| v);
        if let Some(Some(d)) = self.secrets.declared.get_mut(name) {
            d.value = Some(value.clone());
        }
        value
    }

    /// Values of secrets nothing uses, read quietly (a missing one is no error): only so that
    /// the plan files can be checked for them and diagnostics can mask them.
    pub(super) fn unused_values(&self) -> Vec<LoadedSecret> {
        if self.opts.secret_values == SecretValues::Unread {
            return Vec::new();
        }
        let unread = self.secrets.declared.iter().filter_map(|(name, d)| Some((name, d.as_ref()?)));
        unread
            .filter(|(_, d)| d.value.is_none())
            .filter_map(|(name, d)| {
                let value = match &d.source {
                    SecretSource::Env(var) => std::env::var(var).ok(),
                    SecretSource::File(path) => std::fs::read_to_string(path).ok(),
                    SecretSource::Generate(_) => self.secrets.store.get(name).map(|v| v.expose().to_owned()),
                }?;
                let value = value.trim_end_matches(['\n', '\r']);
                (!value.is_empty()).then(|| LoadedSecret {
                    name: name.clone(),
                    source: d.source.clone(),
                    value: Secret::new(value),
                    state: SecretState::Current,
                })
            })
            .collect()
    }

    fn read_env(&mut self, name: &str, var: &str, at: &Location) -> Option<Secret> {
        let (problem, hint) = match std::env::var(var) {
            Ok(v) if !v.is_empty() => return Some(Secret::new(v)),
            Ok(_) => ("empty", format!("export {var}=... with the value before running aspects")),
            Err(_) => {
                ("not set", format!("export {var}=... before running aspects, or change the source in [secrets]"))
            }
        };
        self.err(
            Diagnostic::new(
                format!("secret `{name}` reads environment variable {var}, which is {problem}"),
                Some(at.clone()),
            )
            .hint(hint),
        );
        None
    }

    fn read_file(&mut self, name: &str, path: &Path, at: &Location) -> Option<Secret> {
        let d = match std::fs::read_to_string(path) {
            Ok(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => {
                return Some(Secret::new(v.trim_end_matches(['\n', '\r'])));
            }
            Ok(_) => {
                Diagnostic::new(format!("secret `{name}` reads {}, which is empty", path.display()), Some(at.clone()))
                    .hint("write the secret value into that file")
            }
            Err(err) => Diagnostic::new(format!("secret `{name}` reads {}: {err}", path.display()), Some(at.clone()))
                .hint("relative paths are relative to the plan file's directory"),
        };
        self.err(d);
        None
    }

    /// The stored value, or a new one (made now, in memory) unless this run may not generate.
    /// A secret being rotated gets a new value beside the stored one.
    fn generated(&mut self, name: &str, len: usize, at: &Location) -> Option<(Secret, SecretState)> {
        let stored = self.secrets.store.get(name);
        if stored.is_some() && self.opts.rotate.contains(name) {
            return Some((generate(len), SecretState::Rotated));
        }
        if let Some(v) = stored {
            return Some((v, SecretState::Current));
        }
        if self.opts.secret_values == SecretValues::Existing {
            self.err(
                Diagnostic::new(
                    format!(
                        "secret `{name}` has not been generated yet ({} has no value for it)",
                        self.secrets.store.path().display()
                    ),
                    Some(at.clone()),
                )
                .hint("run `aspects plan` or `aspects apply` once to generate it; drift never writes the secrets file"),
            );
            return None;
        }
        let v = generate(len);
        self.secrets.store.set(name, &v);
        Some((v, SecretState::Generated))
    }
}

/// An env or file secret's state: its source holds the value, the secrets file only whether a
/// rotation to it is in progress.
fn sourced(pending: Option<(Option<Secret>, SecretState)>) -> SecretState {
    pending.map_or(SecretState::Current, |(_, state)| state)
}

/// What a shell accepts as a variable name.
fn valid_env_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Plan files travel inside saved plans and JSON documents, so a secret's value must never be in
/// one. Short values are skipped: they match ordinary words too easily. One pass per file finds
/// every secret (Aho-Corasick), however many secrets there are.
pub(super) fn values_in_sources<'s>(
    sources: &SourceMap,
    secrets: impl IntoIterator<Item = &'s LoadedSecret>,
) -> Vec<Diagnostic> {
    const MIN_LEN: usize = 10;
    let long: Vec<&LoadedSecret> = secrets.into_iter().filter(|s| s.value.expose().len() >= MIN_LEN).collect();
    if long.is_empty() {
        return Vec::new();
    }
    let matcher =
        AhoCorasick::new(long.iter().map(|s| s.value.expose())).expect("secret values make a valid automaton");
    let mut out = Vec::new();
    for (file, f) in sources.files.iter().enumerate() {
        // The first place of each secret in each file, reported in file order.
        let mut seen = BTreeSet::new();
        for m in matcher.find_overlapping_iter(&f.text) {
            let s = long[m.pattern().as_usize()];
            if !seen.insert(m.pattern()) {
                continue;
            }
            let mut d = Diagnostic::new(
                format!("the plan file holds the value of secret `{}`", s.name),
                Some(Location { file, span: m.start()..m.start() + 1 }),
            )
            .hint(format!(
                "plan files are copied into saved plans and JSON documents; remove the value and keep it only in its source ({})",
                s.source
            ));
            d.hide_source = true;
            out.push(d);
        }
    }
    out
}

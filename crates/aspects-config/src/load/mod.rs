//! From plan files to a [`Desired`] state: the layered TOML is checked against the provider
//! schemas, references are resolved (and become graph edges), secrets are read from their
//! sources. Every problem is collected with its location; nothing is written here except
//! generated secrets, saved once the whole load succeeded.
//!
//! By concern: `files` (reading and layering plan files), `secret_sources` (`[secrets]`),
//! `resolve` (`${...}` references), `coerce` (schema checks on values), `providers`
//! (`[providers.*]`), `resources` (resource tables); this file orchestrates.

mod coerce;
mod files;
mod providers;
mod resolve;
mod resources;
mod secret_sources;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aspects_core::graph::{Graph, GraphError, render_cycle};
use aspects_core::{Address, Desired, KindSchema, Redactor, Registry, Resource, Value};

pub use self::files::default_secrets_path;
use self::resolve::{Frame, Trace};
pub use self::secret_sources::{LoadedSecret, SecretSource};
use self::secret_sources::{Secrets, values_in_sources};
use crate::secrets::SecretStore;
use crate::source::{Diagnostic, LoadError, Location, Report, SourceFile, SourceMap, did_you_mean};
use crate::tree::{Entry, Node, NodeValue, Table};

const SECTIONS: [&str; 4] = ["deployment", "vars", "secrets", "providers"];

/// `ASPECTS_VAR_superset_db=x` overrides `[vars] superset_db`.
pub const VAR_ENV_PREFIX: &str = "ASPECTS_VAR_";

/// What happens to a `generate` secret missing from the secrets file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generate {
    /// Make it and save it (with the fingerprint key) before the load returns, under a lock on
    /// the secrets file's folder, so two runs starting together agree on one value. Nothing is
    /// written when the plan files have errors.
    Persist,
    /// Make a throwaway value (validate, graph: they write nothing).
    InMemory,
    /// It must already exist (drift never writes the secrets file).
    Forbid,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Defaults to `<first plan file stem>.secrets.toml` beside it.
    pub secrets_path: Option<PathBuf>,
    pub generate: Generate,
    /// `--var NAME=VALUE`: overrides a declared var (before `ASPECTS_VAR_NAME`, then the file).
    pub vars: BTreeMap<String, String>,
    /// Whether `ASPECTS_VAR_NAME` is consulted (not when applying a saved plan: it carries its own).
    pub vars_from_env: bool,
}

pub struct Loaded {
    pub desired: Desired,
    pub graph: Graph,
    pub sources: SourceMap,
    pub secrets: Vec<LoadedSecret>,
    pub store: SecretStore,
    /// Vars set from the command line or the environment, as used (saved plans record them).
    pub overrides: BTreeMap<String, String>,
    /// Things that load but are probably not what was meant (from `AttrSchema::warn`).
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    /// The warnings rendered like errors (`warning:` with file:line:col), for stderr.
    pub fn render_warnings(&self) -> String {
        let redactor = Redactor::new(self.secrets.iter().map(|s| s.value.clone()));
        Report { diagnostics: &self.warnings, sources: &self.sources, redactor: &redactor }.to_string()
    }
}

/// Reads and loads plan files in layering order.
pub fn load_files(paths: &[PathBuf], registry: &Registry, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    match files::read(paths) {
        Ok(files) => load_sources(files, registry, opts),
        Err((diagnostics, files)) => Err(LoadError::new(diagnostics, SourceMap::new(files))),
    }
}

/// Loads plan files already in memory (a saved plan carries its own).
pub fn load_sources(files: Vec<SourceFile>, registry: &Registry, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let sources = SourceMap::new(files);
    let Some(first) = sources.files.first() else {
        return Err(LoadError::new(vec![Diagnostic::new("no plan file given", None)], sources));
    };
    let secrets_path = opts.secrets_path.clone().unwrap_or_else(|| default_secrets_path(&first.path));
    let opened = match opts.generate {
        Generate::Persist => SecretStore::open_for_generating(&secrets_path),
        Generate::InMemory | Generate::Forbid => SecretStore::open(&secrets_path),
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            let hint = e.hint();
            return Err(LoadError::new(vec![Diagnostic::new(e.to_string(), None).hint(hint)], sources));
        }
    };
    let root = match files::layer(&sources) {
        Ok(root) => root,
        // A syntax error may quote a secret's value: mask those the secrets file holds.
        Err(diagnostics) => return Err(LoadError { diagnostics, sources, redactor: Redactor::new(store.values()) }),
    };
    let mut loader = Loader {
        registry,
        sources: &sources,
        opts,
        diags: Vec::new(),
        warnings: Vec::new(),
        vars: Vars::default(),
        secrets: Secrets::new(store),
        resources: BTreeMap::new(),
        attr_values: BTreeMap::new(),
        stack: Vec::new(),
        too_deep: false,
    };
    let result = loader.run(&root);
    let Loader { mut diags, warnings, secrets, vars: Vars { overrides, .. }, .. } = loader;
    let Secrets { mut store, loaded: loaded_secrets, .. } = secrets;
    diags.extend(values_in_sources(&sources, &loaded_secrets));
    if opts.generate == Generate::Persist && result.is_some() && diags.is_empty() {
        // Made under the same lock as generated secrets, for the same reason.
        store.fingerprint_key();
        if let Err(e) = store.save() {
            let hint = e.hint();
            diags.push(Diagnostic::new(e.to_string(), None).hint(hint));
        }
    }
    store.unlock();
    match result {
        Some((desired, graph)) if diags.is_empty() => {
            Ok(Loaded { desired, graph, sources, secrets: loaded_secrets, store, overrides, warnings })
        }
        _ => {
            diags.extend(warnings);
            let known = loaded_secrets.iter().map(|s| s.value.clone()).chain(store.values());
            Err(LoadError { diagnostics: diags, sources, redactor: Redactor::new(known) })
        }
    }
}

/// A resource table, before its attributes are resolved.
struct RawResource<'t> {
    schema: &'t KindSchema,
    table: &'t Table,
    header: Location,
}

/// `[vars]`: declarations, resolved values with the secrets each is built from, and overrides.
#[derive(Default)]
struct Vars<'a> {
    nodes: BTreeMap<String, &'a Node>,
    values: BTreeMap<String, (Option<Value>, BTreeSet<String>)>,
    /// Set from the command line or the environment.
    overrides: BTreeMap<String, String>,
}

struct Loader<'a> {
    registry: &'a Registry,
    sources: &'a SourceMap,
    opts: &'a LoadOptions,
    diags: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    vars: Vars<'a>,
    secrets: Secrets,
    resources: BTreeMap<Address, RawResource<'a>>,
    /// Resolved attributes with what they were built from (memoised: references reuse them).
    attr_values: BTreeMap<(Address, String), (Option<Value>, Trace)>,
    /// What is being resolved, innermost last, for cycle reports.
    stack: Vec<Frame>,
    /// A chain of references went deeper than resolving allows (reported once).
    too_deep: bool,
}

impl<'a> Loader<'a> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn run(&mut self, root: &'a Table) -> Option<(Desired, Graph)> {
        let kinds: Vec<&str> = self.registry.kind_names().collect();
        let mut deployment = None;
        for entry in &root.entries {
            match entry.key.as_str() {
                "deployment" => deployment = self.deployment(entry),
                "vars" => self.collect_vars(entry),
                "secrets" => self.read_secrets(entry),
                "providers" => {}
                kind => match self.registry.kind(kind) {
                    Some(schema) => self.collect_resources(entry, schema),
                    None => {
                        let candidates = SECTIONS.iter().copied().chain(kinds.iter().copied());
                        let hint = did_you_mean(kind, candidates).unwrap_or_else(|| {
                            format!(
                                "top-level tables are {} and resource kinds: {}",
                                SECTIONS.join(", "),
                                kinds.join(", ")
                            )
                        });
                        self.err(
                            Diagnostic::new(format!("unknown table `{kind}`"), Some(entry.key_loc.clone())).hint(hint),
                        );
                    }
                },
            }
        }
        for name in self.opts.vars.keys().filter(|n| !self.vars.nodes.contains_key(*n)) {
            let hint = did_you_mean(name, self.vars.nodes.keys().map(String::as_str))
                .unwrap_or_else(|| format!("declare it under [vars] first: {name} = ..."));
            self.diags.push(
                Diagnostic::new(format!("--var {name}=... names a variable the plan does not declare"), None)
                    .hint(hint),
            );
        }
        let providers = root.get("providers").map(|e| self.providers(e)).unwrap_or_default();
        let names: Vec<String> = self.vars.nodes.keys().cloned().collect();
        for name in names {
            self.var(&name, None, &mut BTreeSet::new());
        }
        let addrs: Vec<Address> = self.resources.keys().cloned().collect();
        let mut resources = BTreeMap::new();
        for addr in addrs {
            if let Some(r) = self.resource(&addr, &providers) {
                resources.insert(addr, r);
            }
        }
        self.duplicate_identities(&resources);
        let graph = self.graph(&resources);
        let deployment = deployment.unwrap_or_else(|| {
            let first = &self.sources.files[0].path;
            first.file_stem().map_or("aspects".into(), |s| s.to_string_lossy().into_owned())
        });
        Some((Desired { deployment, providers, resources }, graph?))
    }

    /// The dependency graph; a cycle through several resources is reported with each of them.
    fn graph(&mut self, resources: &BTreeMap<Address, Resource>) -> Option<Graph> {
        match Graph::new(resources.iter().map(|(a, r)| (a, &r.depends_on))) {
            Ok(g) => Some(g),
            Err(GraphError::Cycle(path)) => {
                let loc = self.resources.get(&path[0]).map(|r| r.header.clone());
                let where_: Vec<String> = path
                    .iter()
                    .take(path.len() - 1)
                    .filter_map(|a| {
                        self.resources.get(a).map(|r| format!("{a} at {}", self.sources.describe(&r.header)))
                    })
                    .collect();
                self.err(
                    Diagnostic::new(
                        format!("dependency cycle: {} (each refers to the next)", render_cycle(&path)),
                        loc,
                    )
                    .hint(format!(
                        "a resource cannot depend on itself through references; break the cycle among {}",
                        where_.join(", ")
                    )),
                );
                None
            }
            // Dangling references are reported where they are written; nothing reaches here.
            Err(GraphError::Dangling { .. }) => None,
        }
    }

    fn deployment(&mut self, entry: &'a Entry) -> Option<String> {
        let NodeValue::Table(t) = &entry.node.value else {
            self.err(
                Diagnostic::new("`deployment` must be a table", Some(entry.node.loc.clone()))
                    .hint("write [deployment] then name = \"prod\""),
            );
            return None;
        };
        let mut name = None;
        for e in &t.entries {
            match (e.key.as_str(), &e.node.value) {
                ("name", NodeValue::Str(s)) if valid_name(s, 64) => name = Some(s.clone()),
                ("name", NodeValue::Str(_)) => self.err(
                    Diagnostic::new(
                        "deployment name must be 1-64 letters, digits, `_`, `-` or `.`",
                        Some(e.node.loc.clone()),
                    )
                    .hint("it names this deployment's ownership records and lock in every target"),
                ),
                ("name", v) => self.err(Diagnostic::new(
                    format!("deployment name must be a string, not {}", v.type_name()),
                    Some(e.node.loc.clone()),
                )),
                (k, _) => {
                    let hint = did_you_mean(k, ["name"]).unwrap_or_else(|| "[deployment] takes only `name`".into());
                    self.err(
                        Diagnostic::new(format!("unknown key `{k}` in [deployment]"), Some(e.key_loc.clone()))
                            .hint(hint),
                    );
                }
            }
        }
        name
    }

    fn collect_vars(&mut self, entry: &'a Entry) {
        let NodeValue::Table(t) = &entry.node.value else {
            self.err(
                Diagnostic::new("`vars` must be a table", Some(entry.node.loc.clone()))
                    .hint("write [vars] then NAME = value lines"),
            );
            return;
        };
        for e in &t.entries {
            self.vars.nodes.insert(e.key.clone(), &e.node);
        }
    }
}

fn valid_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

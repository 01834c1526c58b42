//! From plan files to a [`Desired`] state: the layered TOML is checked against the provider
//! schemas, references are resolved (and become graph edges), secrets are read from their
//! sources. Every problem is collected with its location; nothing is written here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use aspects_core::graph::{Graph, GraphError, render_cycle};
use aspects_core::{Address, AttrSchema, AttrType, Desired, ProviderConfig, Registry, Resource, Secret, Value};

use crate::secrets::{SecretStore, generate};
use crate::source::{Diagnostic, LoadError, Location, SourceFile, SourceMap, did_you_mean};
use crate::template::{self, Part};
use crate::tree::{self, Entry, Node, NodeValue, Table};

const SECTIONS: [&str; 4] = ["deployment", "vars", "secrets", "providers"];
const META_ATTRS: [&str; 2] = ["provider", "depends_on"];
const SECRETS_SUFFIX: &str = ".secrets.toml";

/// `ASPECTS_VAR_superset_db=x` overrides `[vars] superset_db`.
pub const VAR_ENV_PREFIX: &str = "ASPECTS_VAR_";
const REF_HINT: &str = "references look like ${vars.NAME}, ${secrets.NAME} or ${KIND.NAME.ATTRIBUTE}";

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
    /// Made during this load (and, with `Generate::Persist`, saved).
    pub generated_now: bool,
}

pub struct Loaded {
    pub desired: Desired,
    pub graph: Graph,
    pub sources: SourceMap,
    pub secrets: Vec<LoadedSecret>,
    pub store: SecretStore,
    /// Vars set from the command line or the environment, as used (saved plans record them).
    pub overrides: BTreeMap<String, String>,
}

/// Reads and loads plan files in layering order.
pub fn load_files(paths: &[PathBuf], registry: &Registry, opts: &LoadOptions) -> Result<Loaded, LoadError> {
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
    if !diags.is_empty() {
        return Err(LoadError { diagnostics: diags, sources: SourceMap { files } });
    }
    load_sources(files, registry, opts)
}

/// Loads plan files already in memory (a saved plan carries its own).
pub fn load_sources(files: Vec<SourceFile>, registry: &Registry, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let sources = SourceMap { files };
    let Some(first) = sources.files.first() else {
        return Err(LoadError { diagnostics: vec![Diagnostic::new("no plan file given", None)], sources });
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
            return Err(LoadError { diagnostics: vec![Diagnostic::new(e.to_string(), None).hint(hint)], sources });
        }
    };
    let mut root = Table::default();
    let mut diags = Vec::new();
    for (i, f) in sources.files.iter().enumerate() {
        match tree::parse(i, &f.text) {
            Ok(t) => root.merge(t),
            Err(d) => diags.push(d),
        }
    }
    if !diags.is_empty() {
        return Err(LoadError { diagnostics: diags, sources });
    }
    let mut loader = Loader {
        registry,
        sources: &sources,
        opts,
        store,
        diags: Vec::new(),
        vars: BTreeMap::new(),
        var_values: BTreeMap::new(),
        overrides: BTreeMap::new(),
        secrets: BTreeMap::new(),
        loaded_secrets: Vec::new(),
        resources: BTreeMap::new(),
        attr_values: BTreeMap::new(),
        stack: Vec::new(),
    };
    let result = loader.run(&root);
    let Loader { mut diags, mut store, loaded_secrets, overrides, .. } = loader;
    diags.extend(secret_values_in_sources(&sources, &loaded_secrets));
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
            Ok(Loaded { desired, graph, sources, secrets: loaded_secrets, store, overrides })
        }
        _ => Err(LoadError { diagnostics: diags, sources }),
    }
}

/// Plan files travel inside saved plans and JSON documents, so a secret's value must never be in
/// one. Short values are skipped: they match ordinary words too easily.
fn secret_values_in_sources(sources: &SourceMap, secrets: &[LoadedSecret]) -> Vec<Diagnostic> {
    const MIN_LEN: usize = 10;
    let mut out = Vec::new();
    for s in secrets.iter().filter(|s| s.value.expose().len() >= MIN_LEN) {
        for (file, f) in sources.files.iter().enumerate() {
            if let Some(at) = f.text.find(s.value.expose()) {
                let mut d = Diagnostic::new(
                    format!("the plan file holds the value of secret `{}`", s.name),
                    Some(Location { file, span: at..at + 1 }),
                )
                .hint(format!(
                    "plan files are copied into saved plans and JSON documents; remove the value and keep it only in its source ({})",
                    s.source
                ));
                d.hide_source = true;
                out.push(d);
            }
        }
    }
    out
}

pub fn default_secrets_path(plan: &Path) -> PathBuf {
    let stem = plan.file_stem().map_or("aspects".into(), |s| s.to_string_lossy().into_owned());
    plan.with_file_name(format!("{stem}{SECRETS_SUFFIX}"))
}

struct RawResource<'t> {
    schema: &'t aspects_core::KindSchema,
    table: &'t Table,
    header: Location,
}

/// What is being resolved, for cycle reports.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Frame {
    Var(String),
    Attr(Address, String),
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Var(v) => write!(f, "vars.{v}"),
            Frame::Attr(a, attr) => write!(f, "{a}.{attr}"),
        }
    }
}

/// Where a reference is allowed to point.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// vars and provider blocks: vars and secrets only.
    NoResources,
    Resources,
}

struct Loader<'a> {
    registry: &'a Registry,
    sources: &'a SourceMap,
    opts: &'a LoadOptions,
    store: SecretStore,
    diags: Vec<Diagnostic>,
    vars: BTreeMap<String, &'a Node>,
    var_values: BTreeMap<String, Option<Value>>,
    overrides: BTreeMap<String, String>,
    secrets: BTreeMap<String, Option<Secret>>,
    loaded_secrets: Vec<LoadedSecret>,
    resources: BTreeMap<Address, RawResource<'a>>,
    /// Resolved attributes with the resources they reference (memoised: references reuse them).
    attr_values: BTreeMap<(Address, String), (Option<Value>, BTreeSet<Address>)>,
    stack: Vec<Frame>,
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
        for name in self.opts.vars.keys().filter(|n| !self.vars.contains_key(*n)) {
            let hint = did_you_mean(name, self.vars.keys().map(String::as_str))
                .unwrap_or_else(|| format!("declare it under [vars] first: {name} = ..."));
            self.diags.push(
                Diagnostic::new(format!("--var {name}=... names a variable the plan does not declare"), None)
                    .hint(hint),
            );
        }
        let providers = root.get("providers").map(|e| self.providers(e)).unwrap_or_default();
        let names: Vec<String> = self.vars.keys().cloned().collect();
        for name in names {
            self.var(&name, None);
        }
        let addrs: Vec<Address> = self.resources.keys().cloned().collect();
        let mut resources = BTreeMap::new();
        for addr in addrs {
            if let Some(r) = self.resource(&addr, &providers) {
                resources.insert(addr, r);
            }
        }
        let graph = match Graph::new(resources.iter().map(|(a, r)| (a, &r.depends_on))) {
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
        };
        let deployment = deployment.unwrap_or_else(|| {
            let first = &self.sources.files[0].path;
            first.file_stem().map_or("aspects".into(), |s| s.to_string_lossy().into_owned())
        });
        Some((Desired { deployment, providers, resources }, graph?))
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
            self.vars.insert(e.key.clone(), &e.node);
        }
    }

    fn read_secrets(&mut self, entry: &'a Entry) {
        let NodeValue::Table(t) = &entry.node.value else {
            self.err(
                Diagnostic::new("`secrets` must be a table", Some(entry.node.loc.clone()))
                    .hint("write [secrets] then NAME = { generate = 24 }"),
            );
            return;
        };
        for e in &t.entries {
            let value = self.secret(e);
            self.secrets.insert(e.key.clone(), value);
        }
    }

    fn secret(&mut self, e: &Entry) -> Option<Secret> {
        const FORMS: &str = "NAME = { generate = 24 }, { env = \"VAR\" } or { file = \"/path\" }";
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
        let (source, value) = match (src.key.as_str(), &src.node.value) {
            ("env", NodeValue::Str(var)) if !var.is_empty() => {
                let source = SecretSource::Env(var.clone());
                match std::env::var(var) {
                    Ok(v) if !v.is_empty() => (source, Secret::new(v)),
                    Ok(_) => {
                        self.err(
                            Diagnostic::new(
                                format!("secret `{}` reads environment variable {var}, which is empty", e.key),
                                Some(src.node.loc.clone()),
                            )
                            .hint(format!("export {var}=... with the value before running aspects")),
                        );
                        return None;
                    }
                    Err(_) => {
                        self.err(
                            Diagnostic::new(
                                format!("secret `{}` reads environment variable {var}, which is not set", e.key),
                                Some(src.node.loc.clone()),
                            )
                            .hint(format!(
                                "export {var}=... before running aspects, or change the source in [secrets]"
                            )),
                        );
                        return None;
                    }
                }
            }
            ("file", NodeValue::Str(path)) if !path.is_empty() => {
                let base =
                    self.sources.files[src.node.loc.file].path.parent().map(Path::to_path_buf).unwrap_or_default();
                let full = base.join(path);
                match std::fs::read_to_string(&full) {
                    Ok(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => {
                        (SecretSource::File(full), Secret::new(v.trim_end_matches(['\n', '\r'])))
                    }
                    Ok(_) => {
                        self.err(
                            Diagnostic::new(
                                format!("secret `{}` reads {}, which is empty", e.key, full.display()),
                                Some(src.node.loc.clone()),
                            )
                            .hint("write the secret value into that file"),
                        );
                        return None;
                    }
                    Err(err) => {
                        self.err(
                            Diagnostic::new(
                                format!("secret `{}` reads {}: {err}", e.key, full.display()),
                                Some(src.node.loc.clone()),
                            )
                            .hint("relative paths are relative to the plan file's directory"),
                        );
                        return None;
                    }
                }
            }
            ("generate", NodeValue::Int(n)) if (8..=256).contains(n) => {
                let n = *n as usize;
                match self.store.get(&e.key) {
                    Some(v) => (SecretSource::Generate(n), v),
                    None if self.opts.generate != Generate::Forbid => {
                        let v = generate(n);
                        self.store.set(&e.key, &v);
                        self.loaded_secrets.push(LoadedSecret {
                            name: e.key.clone(),
                            source: SecretSource::Generate(n),
                            value: v,
                            generated_now: true,
                        });
                        return self.loaded_secrets.last().map(|s| s.value.clone());
                    }
                    None => {
                        self.err(Diagnostic::new(format!("secret `{}` has not been generated yet ({} has no value for it)", e.key, self.store.path().display()), Some(src.key_loc.clone()))
                            .hint("run `aspects plan` or `aspects apply` once to generate it; drift never writes the secrets file"));
                        return None;
                    }
                }
            }
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
        self.loaded_secrets.push(LoadedSecret {
            name: e.key.clone(),
            source,
            value: value.clone(),
            generated_now: false,
        });
        Some(value)
    }

    fn collect_resources(&mut self, entry: &'a Entry, schema: &'a aspects_core::KindSchema) {
        let NodeValue::Table(t) = &entry.node.value else {
            self.err(
                Diagnostic::new(format!("`{}` must be a table of resources", entry.key), Some(entry.node.loc.clone()))
                    .hint(format!("write [{}.NAME] then its attributes", entry.key)),
            );
            return;
        };
        for e in &t.entries {
            let NodeValue::Table(body) = &e.node.value else {
                self.err(
                    Diagnostic::new(
                        format!("`{}.{}` must be a table of attributes", entry.key, e.key),
                        Some(e.node.loc.clone()),
                    )
                    .hint(format!("write [{}.{}] on its own line, then attribute = value lines", entry.key, e.key)),
                );
                continue;
            };
            if !valid_ident(&e.key) && !e.key.starts_with('_') {
                self.err(
                    Diagnostic::new(format!("resource name `{}` is not valid", e.key), Some(e.key_loc.clone()))
                        .hint("resource names start with a letter or `_` and use letters, digits, `_` and `-`"),
                );
                continue;
            }
            let addr = Address::new(entry.key.clone(), e.key.clone());
            self.resources.insert(addr, RawResource { schema, table: body, header: e.key_loc.clone() });
        }
    }

    fn providers(&mut self, entry: &'a Entry) -> BTreeMap<String, ProviderConfig> {
        let mut out = BTreeMap::new();
        let NodeValue::Table(t) = &entry.node.value else {
            self.err(
                Diagnostic::new("`providers` must be a table", Some(entry.node.loc.clone()))
                    .hint("write [providers.mysql] then url = \"mysql://...\""),
            );
            return out;
        };
        for e in &t.entries {
            let Some(system) = self.registry.system(&e.key) else {
                let known: Vec<&str> = self.registry.systems().map(|s| s.system).collect();
                let hint = did_you_mean(&e.key, known.iter().copied())
                    .unwrap_or_else(|| format!("known systems: {}", known.join(", ")));
                self.err(Diagnostic::new(format!("unknown provider `{}`", e.key), Some(e.key_loc.clone())).hint(hint));
                continue;
            };
            let NodeValue::Table(body) = &e.node.value else {
                self.err(Diagnostic::new(format!("`providers.{}` must be a table", e.key), Some(e.node.loc.clone())));
                continue;
            };
            // Sub-tables that are not attributes are named instances: [providers.mysql.lms].
            let (named, own): (Vec<&Entry>, Vec<&Entry>) = body.entries.iter().partition(|x| {
                matches!(x.node.value, NodeValue::Table(_)) && system.provider_attrs.iter().all(|a| a.name != x.key)
            });
            if !own.is_empty() || named.is_empty() {
                let attrs = self.provider_attrs(&system.provider_attrs, &own, &e.key, &e.key_loc);
                out.insert(
                    e.key.clone(),
                    ProviderConfig {
                        id: e.key.clone(),
                        system: e.key.clone(),
                        attrs,
                        origin: self.sources.describe(&e.key_loc),
                    },
                );
            }
            for n in named {
                let NodeValue::Table(nt) = &n.node.value else { continue };
                let id = format!("{}.{}", e.key, n.key);
                let refs: Vec<&Entry> = nt.entries.iter().collect();
                let attrs = self.provider_attrs(&system.provider_attrs, &refs, &id, &n.key_loc);
                out.insert(
                    id.clone(),
                    ProviderConfig { id, system: e.key.clone(), attrs, origin: self.sources.describe(&n.key_loc) },
                );
            }
        }
        out
    }

    fn provider_attrs(
        &mut self,
        schema: &[AttrSchema],
        entries: &[&Entry],
        id: &str,
        header: &Location,
    ) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for e in entries {
            if !schema.iter().any(|a| a.name == e.key) {
                let hint = did_you_mean(&e.key, schema.iter().map(|a| a.name)).unwrap_or_else(|| {
                    format!("[providers.{id}] takes {}", schema.iter().map(|a| a.name).collect::<Vec<_>>().join(", "))
                });
                self.err(
                    Diagnostic::new(format!("unknown key `{}` in [providers.{id}]", e.key), Some(e.key_loc.clone()))
                        .hint(hint),
                );
            }
        }
        for attr in schema {
            let entry = entries.iter().find(|e| e.key == attr.name);
            let value = match entry {
                Some(e) => {
                    let mut deps = BTreeSet::new();
                    self.resolve(&e.node, Scope::NoResources, &mut deps).and_then(|v| self.coerce(v, attr, &e.node.loc))
                }
                None => self.missing(attr, &format!("[providers.{id}]"), header),
            };
            if let Some(v) = value {
                out.insert(attr.name.to_owned(), v);
            }
        }
        out
    }

    fn missing(&mut self, attr: &AttrSchema, owner: &str, header: &Location) -> Option<Value> {
        if attr.required && attr.default.is_none() {
            let example =
                if attr.sensitive { "\"${secrets.NAME}\"".to_owned() } else { format!("<{}>", attr.ty.describe()) };
            self.err(
                Diagnostic::new(format!("{owner} is missing `{}`", attr.name), Some(header.clone()))
                    .hint(format!("add {} = {example}  (`{}`: {})", attr.name, attr.name, attr.doc)),
            );
        }
        attr.default.clone()
    }

    fn resource(&mut self, addr: &Address, providers: &BTreeMap<String, ProviderConfig>) -> Option<Resource> {
        let raw = self.resources.get(addr)?;
        let (schema, table, header) = (raw.schema, raw.table, raw.header.clone());
        let mut ok = true;
        for e in &table.entries {
            if schema.attr(&e.key).is_none() && !META_ATTRS.contains(&e.key.as_str()) {
                let names = schema.attrs.iter().map(|a| a.name).chain(META_ATTRS);
                let hint = did_you_mean(&e.key, names).unwrap_or_else(|| {
                    format!(
                        "{} takes {}",
                        schema.kind,
                        schema.attrs.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
                    )
                });
                self.err(
                    Diagnostic::new(format!("unknown attribute `{}` in {addr}", e.key), Some(e.key_loc.clone()))
                        .hint(hint),
                );
                ok = false;
            }
        }
        let mut attrs = BTreeMap::new();
        let mut depends_on = BTreeSet::new();
        for attr in &schema.attrs {
            if let Some(v) = self.attr(addr, attr.name, &mut depends_on) {
                attrs.insert(attr.name.to_owned(), v);
            } else if table.get(attr.name).is_some() || (attr.required && attr.default.is_none()) {
                ok = false;
            }
        }
        for d in self.explicit_depends(table) {
            depends_on.insert(d);
        }
        let provider = self.provider_for(addr, schema.system(), table, &header, providers);
        (ok && provider.is_some()).then(|| Resource {
            address: addr.clone(),
            provider: provider.unwrap_or_default(),
            attrs,
            depends_on,
            origin: self.sources.describe(&header),
        })
    }

    fn explicit_depends(&mut self, table: &Table) -> Vec<Address> {
        let Some(e) = table.get("depends_on") else {
            return Vec::new();
        };
        let NodeValue::Array(items) = &e.node.value else {
            self.err(
                Diagnostic::new("`depends_on` takes a list of addresses", Some(e.node.loc.clone()))
                    .hint("depends_on = [\"mysql_database.superset\"]"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let found = match &item.value {
                NodeValue::Str(s) => Address::parse(s).filter(|a| self.resources.contains_key(a)),
                _ => None,
            };
            match found {
                Some(a) => out.push(a),
                None => {
                    let text = match &item.value {
                        NodeValue::Str(s) => s.clone(),
                        v => v.type_name().to_owned(),
                    };
                    let all: Vec<String> = self.resources.keys().map(ToString::to_string).collect();
                    let hint = did_you_mean(&text, all.iter().map(String::as_str))
                        .unwrap_or_else(|| "name a resource declared in the plan as KIND.NAME".into());
                    self.err(
                        Diagnostic::new(
                            format!("`depends_on` names `{text}`, which is not a declared resource"),
                            Some(item.loc.clone()),
                        )
                        .hint(hint),
                    );
                }
            }
        }
        out
    }

    fn provider_for(
        &mut self,
        addr: &Address,
        system: &str,
        table: &Table,
        header: &Location,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Option<String> {
        let (id, loc) = match table.get("provider") {
            Some(Entry { node: Node { value: NodeValue::Str(s), loc }, .. }) => (s.clone(), loc.clone()),
            Some(e) => {
                self.err(Diagnostic::new("`provider` takes a string such as \"mysql.lms\"", Some(e.node.loc.clone())));
                return None;
            }
            None => (system.to_owned(), header.clone()),
        };
        match providers.get(&id) {
            Some(p) if p.system == system => Some(id),
            Some(p) => {
                self.err(Diagnostic::new(
                    format!("{addr} is a {system} resource but provider `{id}` is {}", p.system),
                    Some(loc),
                ));
                None
            }
            None => {
                let same: Vec<&str> =
                    providers.values().filter(|p| p.system == system).map(|p| p.id.as_str()).collect();
                let hint = match same.as_slice() {
                    [] => format!("add a [providers.{system}] block with its url"),
                    _ => did_you_mean(&id, same.iter().copied())
                        .unwrap_or_else(|| format!("configured {system} providers: {}", same.join(", "))),
                };
                self.err(
                    Diagnostic::new(format!("{addr} needs provider `{id}`, which is not configured"), Some(loc))
                        .hint(hint),
                );
                None
            }
        }
    }

    /// The resolved, typed value of one attribute of a resource (memoised), adding the resources
    /// it references to `deps`.
    fn attr(&mut self, addr: &Address, name: &str, deps: &mut BTreeSet<Address>) -> Option<Value> {
        let key = (addr.clone(), name.to_owned());
        if let Some((v, own)) = self.attr_values.get(&key) {
            deps.extend(own.iter().cloned());
            return v.clone();
        }
        let raw = self.resources.get(addr)?;
        let (schema, table, header) = (raw.schema, raw.table, raw.header.clone());
        let attr = schema.attr(name)?;
        let frame = Frame::Attr(addr.clone(), name.to_owned());
        let mut own = BTreeSet::new();
        let value = match table.get(name) {
            Some(e) => {
                self.stack.push(frame);
                let v =
                    self.resolve(&e.node, Scope::Resources, &mut own).and_then(|v| self.coerce(v, attr, &e.node.loc));
                self.stack.pop();
                own.remove(addr);
                v
            }
            None => self.missing(attr, &addr.to_string(), &header),
        };
        deps.extend(own.iter().cloned());
        self.attr_values.insert(key, (value.clone(), own));
        value
    }

    fn cycle(&self, frame: &Frame) -> Option<String> {
        let start = self.stack.iter().position(|f| f == frame)?;
        let mut path: Vec<String> = self.stack[start..].iter().map(ToString::to_string).collect();
        path.push(frame.to_string());
        Some(path.join(" -> "))
    }

    fn var(&mut self, name: &str, at: Option<&Location>) -> Option<Value> {
        if let Some(v) = self.var_values.get(name) {
            return v.clone();
        }
        let Some(node) = self.vars.get(name).copied() else {
            let hint = did_you_mean(name, self.vars.keys().map(String::as_str))
                .unwrap_or_else(|| format!("declare it under [vars]: {name} = ..."));
            self.err(Diagnostic::new(format!("unknown variable `vars.{name}`"), at.cloned()).hint(hint));
            return None;
        };
        let frame = Frame::Var(name.to_owned());
        if let Some(cycle) = self.cycle(&frame) {
            self.err(
                Diagnostic::new(format!("reference cycle: {cycle}"), Some(node.loc.clone()))
                    .hint("a variable cannot refer to itself"),
            );
            self.var_values.insert(name.to_owned(), None);
            return None;
        }
        // Like Terraform's -var and TF_VAR_: the command line, then the environment, override a
        // declared variable (as a string).
        let from_env = || std::env::var(format!("{VAR_ENV_PREFIX}{name}")).ok().filter(|_| self.opts.vars_from_env);
        let given = self.opts.vars.get(name).cloned().or_else(from_env);
        let v = match given {
            Some(s) => {
                self.overrides.insert(name.to_owned(), s.clone());
                Some(Value::Str(s))
            }
            None => {
                self.stack.push(frame);
                let v = self.resolve(node, Scope::NoResources, &mut BTreeSet::new());
                self.stack.pop();
                v
            }
        };
        self.var_values.insert(name.to_owned(), v.clone());
        v
    }

    fn resolve(&mut self, node: &Node, scope: Scope, deps: &mut BTreeSet<Address>) -> Option<Value> {
        match &node.value {
            NodeValue::Str(s) => self.interpolate(s, node, scope, deps),
            NodeValue::Int(i) => Some(Value::Int(*i)),
            NodeValue::Bool(b) => Some(Value::Bool(*b)),
            NodeValue::Other(t) => {
                self.err(
                    Diagnostic::new(format!("{t} is not supported here"), Some(node.loc.clone()))
                        .hint("use a string, an integer, a boolean, a list or a table"),
                );
                None
            }
            NodeValue::Array(items) => {
                let vals: Vec<Option<Value>> = items.iter().map(|n| self.resolve(n, scope, deps)).collect();
                vals.into_iter().collect::<Option<Vec<_>>>().map(Value::List)
            }
            NodeValue::Table(t) => {
                let mut m = BTreeMap::new();
                let mut ok = true;
                for e in &t.entries {
                    match self.resolve(&e.node, scope, deps) {
                        Some(v) => {
                            m.insert(e.key.clone(), v);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Map(m))
            }
        }
    }

    fn interpolate(&mut self, s: &str, node: &Node, scope: Scope, deps: &mut BTreeSet<Address>) -> Option<Value> {
        // +1 skips the opening quote, so the column points into the string.
        let at = |offset: usize, len: usize| Location {
            file: node.loc.file,
            span: node.loc.span.start + 1 + offset..node.loc.span.start + 1 + offset + len,
        };
        let parts = match template::parse(s) {
            Ok(p) => p,
            Err((offset, msg)) => {
                self.err(
                    Diagnostic::new(msg, Some(at(offset, 2))).hint(format!("{REF_HINT}; write $${{ for a literal ${{")),
                );
                return None;
            }
        };
        if let [Part::Ref { path, offset, len }] = parts.as_slice() {
            return self.reference(path, &at(*offset, *len), scope, deps);
        }
        let mut out = String::new();
        let mut sensitive = false;
        let mut ok = true;
        for part in &parts {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Ref { path, offset, len } => match self.reference(path, &at(*offset, *len), scope, deps) {
                    Some(Value::Str(v)) => out.push_str(&v),
                    Some(Value::Int(i)) => out.push_str(&i.to_string()),
                    Some(Value::Bool(b)) => out.push_str(&b.to_string()),
                    Some(Value::Sensitive(secret)) => {
                        sensitive = true;
                        out.push_str(secret.expose());
                    }
                    Some(other) => {
                        self.err(
                            Diagnostic::new(
                                format!(
                                    "`${{{}}}` is {}, which cannot be put inside a string",
                                    path.join("."),
                                    other.type_name()
                                ),
                                Some(at(*offset, *len)),
                            )
                            .hint("use the reference alone as the whole value"),
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
            }
        }
        // Text built around a secret is itself secret.
        ok.then(|| if sensitive { Value::Sensitive(Secret::new(out)) } else { Value::Str(out) })
    }

    fn reference(
        &mut self,
        path: &[String],
        at: &Location,
        scope: Scope,
        deps: &mut BTreeSet<Address>,
    ) -> Option<Value> {
        match path {
            [ns, name] if ns == "vars" => self.var(name, Some(at)),
            [ns, name] if ns == "secrets" => match self.secrets.get(name) {
                Some(Some(s)) => Some(Value::Sensitive(s.clone())),
                Some(None) => None,
                None => {
                    let hint = did_you_mean(name, self.secrets.keys().map(String::as_str))
                        .unwrap_or_else(|| format!("declare it under [secrets]: {name} = {{ generate = 24 }}"));
                    self.err(Diagnostic::new(format!("unknown secret `secrets.{name}`"), Some(at.clone())).hint(hint));
                    None
                }
            },
            [kind, name, attr] if self.registry.kind(kind).is_some() => {
                if scope == Scope::NoResources {
                    self.err(
                        Diagnostic::new(
                            format!("`${{{}}}` refers to a resource, which is not allowed here", path.join(".")),
                            Some(at.clone()),
                        )
                        .hint("vars and provider blocks may refer only to vars and secrets"),
                    );
                    return None;
                }
                let addr = Address::new(kind.clone(), name.clone());
                let Some(raw) = self.resources.get(&addr) else {
                    let same: Vec<String> =
                        self.resources.keys().filter(|a| &a.kind == kind).map(|a| a.name.clone()).collect();
                    let hint = did_you_mean(name, same.iter().map(String::as_str))
                        .map(|h| {
                            h.replace('`', "")
                                .replace("did you mean ", &format!("did you mean `{kind}."))
                                .replace('?', "`?")
                        })
                        .unwrap_or_else(|| format!("declare [{kind}.{name}] or fix the name"));
                    self.err(
                        Diagnostic::new(format!("reference to undeclared resource `{addr}`"), Some(at.clone()))
                            .hint(hint),
                    );
                    return None;
                };
                if raw.schema.attr(attr).is_none() {
                    let hint = did_you_mean(attr, raw.schema.attrs.iter().map(|a| a.name)).unwrap_or_else(|| {
                        format!("{kind} has {}", raw.schema.attrs.iter().map(|a| a.name).collect::<Vec<_>>().join(", "))
                    });
                    self.err(Diagnostic::new(format!("{kind} has no attribute `{attr}`"), Some(at.clone())).hint(hint));
                    return None;
                }
                deps.insert(addr.clone());
                let frame = Frame::Attr(addr.clone(), attr.clone());
                if let Some(cycle) = self.cycle(&frame) {
                    self.err(
                        Diagnostic::new(format!("reference cycle: {cycle}"), Some(at.clone()))
                            .hint("an attribute cannot depend on itself through references"),
                    );
                    return None;
                }
                // Only the direct reference is an edge: the referenced attribute's own edges
                // belong to its resource, so cycles are reported along their real path.
                let v = self.attr(&addr, attr, &mut BTreeSet::new());
                let unset = self.resources[&addr].table.get(attr).is_none();
                if v.is_none() && unset {
                    self.err(
                        Diagnostic::new(format!("`{addr}.{attr}` is not set and has no default"), Some(at.clone()))
                            .hint(format!("set {attr} in [{addr}]")),
                    );
                }
                v
            }
            [kind, _, _] => {
                let hint = did_you_mean(kind, self.registry.kind_names()).unwrap_or_else(|| REF_HINT.into());
                self.err(
                    Diagnostic::new(format!("unknown resource kind `{kind}` in reference"), Some(at.clone()))
                        .hint(hint),
                );
                None
            }
            _ => {
                self.err(
                    Diagnostic::new(format!("`${{{}}}` is not a reference", path.join(".")), Some(at.clone()))
                        .hint(REF_HINT),
                );
                None
            }
        }
    }

    /// Checks a resolved value against the attribute's type and rules.
    fn coerce(&mut self, v: Value, attr: &AttrSchema, loc: &Location) -> Option<Value> {
        if attr.sensitive && !matches!(v, Value::Sensitive(_)) {
            self.err(
                Diagnostic::new(
                    format!("`{}` is sensitive, so its value must come from [secrets]", attr.name),
                    Some(loc.clone()),
                )
                .hint(format!(
                    "declare it under [secrets] (e.g. NAME = {{ generate = 24 }}) and write {} = \"${{secrets.NAME}}\"",
                    attr.name
                )),
            );
            return None;
        }
        let v = match coerce_type(v, &attr.ty) {
            Ok(v) => v,
            Err(found) => {
                self.err(
                    Diagnostic::new(
                        format!("`{}` must be {}, not {found}", attr.name, attr.ty.describe()),
                        Some(loc.clone()),
                    )
                    .hint(format!("`{}`: {}", attr.name, attr.doc)),
                );
                return None;
            }
        };
        if let (Some(check), false) = (attr.check, v.is_sensitive())
            && let Err(msg) = check(&v)
        {
            self.err(
                Diagnostic::new(format!("invalid `{}`: {msg}", attr.name), Some(loc.clone()))
                    .hint(format!("`{}`: {}", attr.name, attr.doc)),
            );
            return None;
        }
        Some(v)
    }
}

fn coerce_type(v: Value, ty: &AttrType) -> Result<Value, String> {
    match (ty, v) {
        (_, v @ Value::Sensitive(_)) if matches!(ty, AttrType::String | AttrType::Sql) => Ok(v),
        (AttrType::String, v @ Value::Str(_))
        | (AttrType::Int, v @ Value::Int(_))
        | (AttrType::Bool, v @ Value::Bool(_)) => Ok(v),
        (AttrType::Map, v @ Value::Map(_)) => Ok(v),
        (AttrType::Sql, Value::Str(s)) => Ok(Value::Sql(s)),
        (AttrType::List(inner), Value::List(items)) => items
            .into_iter()
            .map(|i| coerce_type(i, inner).map_err(|found| format!("a list containing {found}")))
            .collect::<Result<_, _>>()
            .map(Value::List),
        (AttrType::Json, Value::Str(s)) => {
            serde_json::from_str(&s).map(Value::Json).map_err(|e| format!("a string that is not JSON ({e})"))
        }
        (AttrType::Json, v @ (Value::Map(_) | Value::List(_))) => Ok(Value::Json(v.to_json())),
        (_, v) => Err(v.type_name().to_owned()),
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

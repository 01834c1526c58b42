//! `${...}` references: vars, secrets and other resources' attributes, resolved on demand and
//! memoised, with cycle detection. Each value is traced to the resources it references (graph
//! edges) and to the secrets it is built from.

use std::collections::BTreeSet;
use std::fmt;

use aspects_core::secret::REDACTED;
use aspects_core::{Address, Secret, Value};

use super::coerce::written;
use super::{Loader, VAR_ENV_PREFIX};
use crate::source::{Diagnostic, Location, did_you_mean};
use crate::template::{self, Part};
use crate::tree::{self, Node, NodeValue};

/// References followed in a row before giving up. Resolving recurses, so an unbounded chain
/// (8,000 vars each naming the next) would exhaust the stack; real plans nest a handful.
const MAX_DEPTH: usize = 64;

const REF_HINT: &str = "references look like ${vars.NAME}, ${secrets.NAME} or ${KIND.NAME.ATTRIBUTE}";

/// What is being resolved, for cycle reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Frame {
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
pub(super) enum Scope {
    /// vars and provider blocks: vars and secrets only.
    NoResources,
    Resources,
}

/// What a value was built from.
#[derive(Clone, Debug, Default)]
pub(super) struct Trace {
    /// Resources referenced directly: the graph edges.
    pub deps: BTreeSet<Address>,
    /// Secrets it derives from, directly, through vars or through other resources' attributes.
    pub secrets: BTreeSet<String>,
}

impl Loader<'_> {
    /// The resolved, typed value of one attribute of a resource (memoised), adding what it was
    /// built from to `trace`.
    pub(super) fn attr(&mut self, addr: &Address, name: &str, trace: &mut Trace) -> Option<Value> {
        let raw = self.resources.get(addr)?;
        let (schema, table, header, id) = (raw.schema, raw.table, raw.header.clone(), raw.id);
        let at = schema.attrs.iter().position(|a| a.name == name)?;
        let attr = &schema.attrs[at];
        if let Some((v, own)) = self.attr_values[id].get(at).and_then(Option::as_ref) {
            trace.deps.extend(own.deps.iter().cloned());
            trace.secrets.extend(own.secrets.iter().cloned());
            return v.clone();
        }
        let frame = Frame::Attr(addr.clone(), name.to_owned());
        let mut own = Trace::default();
        let value = match written(attr, table.get(name)) {
            Some(e) => {
                self.stack.push(frame);
                let v = self
                    .resolve(&e.node, Scope::Resources, &mut own)
                    .and_then(|v| self.coerce(v, attr, &e.node.loc, &own.secrets));
                self.stack.pop();
                own.deps.remove(addr);
                v
            }
            None => self.missing(attr, addr, &header),
        };
        trace.deps.extend(own.deps.iter().cloned());
        trace.secrets.extend(own.secrets.iter().cloned());
        let memo = &mut self.attr_values[id];
        memo.resize_with(schema.attrs.len(), || None);
        memo[at] = Some((value.clone(), own));
        value
    }

    fn cycle(&self, frame: &Frame) -> Option<String> {
        let start = self.stack.iter().position(|f| f == frame)?;
        let mut path: Vec<String> = self.stack[start..].iter().map(ToString::to_string).collect();
        path.push(frame.to_string());
        Some(path.join(" -> "))
    }

    /// Whether following `frame` would nest references too deep. Reported once: every further
    /// link of a long chain would say the same. Not memoised, so the links below are resolved
    /// (and reported, if wrong) from a shallower start.
    fn too_deep(&mut self, frame: &Frame, at: Option<&Location>) -> bool {
        if self.stack.len() < MAX_DEPTH {
            return false;
        }
        if !self.too_deep {
            self.too_deep = true;
            let first: Vec<String> = self.stack.iter().take(2).map(ToString::to_string).collect();
            self.err(
                Diagnostic::new(
                    format!("references nested more than {MAX_DEPTH} deep: {} -> ... -> {frame}", first.join(" -> ")),
                    at.cloned(),
                )
                .hint("refer to the value at the end of the chain directly, or shorten the chain"),
            );
        }
        true
    }

    /// A var's value (memoised), adding the secrets it is built from to `secrets`.
    pub(super) fn var(&mut self, name: &str, at: Option<&Location>, secrets: &mut BTreeSet<String>) -> Option<Value> {
        if let Some((v, own)) = self.vars.values.get(name) {
            secrets.extend(own.iter().cloned());
            return v.clone();
        }
        let Some(node) = self.vars.nodes.get(name).copied() else {
            let hint = did_you_mean(name, self.vars.nodes.keys().map(String::as_str))
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
            self.vars.values.insert(name.to_owned(), (None, BTreeSet::new()));
            return None;
        }
        if self.too_deep(&frame, at) {
            return None;
        }
        // Like Terraform's -var and TF_VAR_: the command line, then the environment, override a
        // declared variable; as the declared type when that is a boolean or an integer (so
        // ASPECTS_VAR_RUN_RALPH=false is false, not the truthy string "false"), else as a string.
        let from_env = || std::env::var(format!("{VAR_ENV_PREFIX}{name}")).ok().filter(|_| self.opts.vars_from_env);
        let given = self.opts.vars.get(name).cloned().or_else(from_env);
        let mut own = Trace::default();
        let v = match given {
            Some(s) => {
                self.vars.overrides.insert(name.to_owned(), s.clone());
                self.typed_override(name, node, s)
            }
            None => {
                self.stack.push(frame);
                let v = self.resolve(node, Scope::NoResources, &mut own);
                self.stack.pop();
                v
            }
        };
        secrets.extend(own.secrets.iter().cloned());
        self.vars.values.insert(name.to_owned(), (v.clone(), own.secrets));
        v
    }

    /// An override's value, typed like the declared one.
    fn typed_override(&mut self, name: &str, declared: &Node, given: String) -> Option<Value> {
        let parsed = match &declared.value {
            NodeValue::Bool(_) => match given.to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(("a boolean", "true or false")),
            },
            NodeValue::Int(_) => given.parse().map(Value::Int).map_err(|_| ("an integer", "digits, e.g. 8123")),
            _ => return Some(Value::Str(given)),
        };
        parsed
            .map_err(|(what, hint)| {
                self.err(
                    Diagnostic::new(
                        format!("the override of `vars.{name}` (--var or {VAR_ENV_PREFIX}{name}) must be {what}, as declared here"),
                        Some(declared.loc.clone()),
                    )
                    .hint(format!("give {hint}")),
                )
            })
            .ok()
    }

    pub(super) fn resolve(&mut self, node: &Node, scope: Scope, trace: &mut Trace) -> Option<Value> {
        match &node.value {
            NodeValue::Str(s) => self.interpolate(s, node, scope, trace),
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
                let vals: Vec<Option<Value>> = items.iter().map(|n| self.resolve(n, scope, trace)).collect();
                vals.into_iter().collect::<Option<Vec<_>>>().map(Value::List)
            }
            NodeValue::Table(t) => {
                let mut m = std::collections::BTreeMap::new();
                let mut ok = true;
                for e in &t.entries {
                    match self.resolve(&e.node, scope, trace) {
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

    fn interpolate(&mut self, s: &str, node: &Node, scope: Scope, trace: &mut Trace) -> Option<Value> {
        // Offsets in the decoded string, mapped back onto the token the user wrote.
        let raw = self.sources.files[node.loc.file].text.get(node.loc.span.clone()).unwrap_or_default();
        let start = node.loc.span.start;
        let at = |offset: usize, len: usize| Location {
            file: node.loc.file,
            span: start + tree::raw_offset(raw, s, offset)..start + tree::raw_offset(raw, s, offset + len),
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
            return self.reference(path, &at(*offset, *len), scope, trace);
        }
        let mut out = String::new();
        // The same text with every secret part masked: what plans show of it.
        let mut shown = String::new();
        let mut sensitive = false;
        let mut ok = true;
        let both = |out: &mut String, shown: &mut String, text: &str| {
            out.push_str(text);
            shown.push_str(text);
        };
        for part in &parts {
            match part {
                Part::Lit(l) => both(&mut out, &mut shown, l),
                Part::Ref { path, offset, len } => match self.reference(path, &at(*offset, *len), scope, trace) {
                    Some(Value::Str(v)) => both(&mut out, &mut shown, &v),
                    Some(Value::Int(i)) => both(&mut out, &mut shown, &i.to_string()),
                    Some(Value::Bool(b)) => both(&mut out, &mut shown, &b.to_string()),
                    Some(Value::Sensitive(secret)) => {
                        sensitive = true;
                        out.push_str(secret.expose());
                        shown.push_str(secret.shown().unwrap_or(REDACTED));
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
        ok.then(|| if sensitive { Value::Sensitive(Secret::with_shown(out, shown)) } else { Value::Str(out) })
    }

    fn reference(&mut self, path: &[String], at: &Location, scope: Scope, trace: &mut Trace) -> Option<Value> {
        match path {
            [ns, name] if ns == "vars" => self.var(name, Some(at), &mut trace.secrets),
            [ns, name] if ns == "secrets" && self.secrets.declared.contains_key(name) => {
                trace.secrets.insert(name.clone());
                self.secret_value(name).map(Value::Sensitive)
            }
            [ns, name] if ns == "secrets" => {
                let hint = did_you_mean(name, self.secrets.declared.keys().map(String::as_str))
                    .unwrap_or_else(|| format!("declare it under [secrets]: {name} = {{ generate = 24 }}"));
                self.err(Diagnostic::new(format!("unknown secret `secrets.{name}`"), Some(at.clone())).hint(hint));
                None
            }
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
                self.resource_attr(Address::new(kind.clone(), name.clone()), attr, at, trace)
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

    /// `${KIND.NAME.ATTR}`: another resource's attribute, and an edge to that resource.
    fn resource_attr(&mut self, addr: Address, attr: &str, at: &Location, trace: &mut Trace) -> Option<Value> {
        let kind = &addr.kind;
        if let Some(off) = self.disabled.get(&addr) {
            let off = self.sources.describe(off);
            self.err(
                Diagnostic::new(
                    format!("reference to `{addr}`, which is switched off (when = false at {off})"),
                    Some(at.clone()),
                )
                .hint("switch it on, or switch off this resource too with the same `when` value"),
            );
            return None;
        }
        let Some(raw) = self.resources.get(&addr) else {
            let mut same: Vec<String> =
                self.resources.keys().filter(|a| &a.kind == kind).map(|a| a.name.clone()).collect();
            same.sort_unstable();
            let hint = did_you_mean(&addr.name, same.iter().map(String::as_str))
                .map(|h| {
                    h.replace('`', "").replace("did you mean ", &format!("did you mean `{kind}.")).replace('?', "`?")
                })
                .unwrap_or_else(|| format!("declare [{kind}.{}] or fix the name", addr.name));
            self.err(
                Diagnostic::new(format!("reference to undeclared resource `{addr}`"), Some(at.clone())).hint(hint),
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
        trace.deps.insert(addr.clone());
        let frame = Frame::Attr(addr.clone(), attr.to_owned());
        if let Some(cycle) = self.cycle(&frame) {
            self.err(
                Diagnostic::new(format!("reference cycle: {cycle}"), Some(at.clone()))
                    .hint("an attribute cannot depend on itself through references"),
            );
            return None;
        }
        if self.too_deep(&frame, Some(at)) {
            return None;
        }
        // Only the direct reference is an edge: the referenced attribute's own edges belong to
        // its resource, so cycles are reported along their real path. Its secrets do carry over.
        let mut theirs = Trace::default();
        let v = self.attr(&addr, attr, &mut theirs);
        trace.secrets.extend(theirs.secrets);
        let raw = &self.resources[&addr];
        let unset = raw.schema.attr(attr).is_none_or(|a| written(a, raw.table.get(attr)).is_none());
        if v.is_none() && unset {
            self.err(
                Diagnostic::new(format!("`{addr}.{attr}` is not set and has no default"), Some(at.clone()))
                    .hint(format!("set {attr} in [{addr}]")),
            );
        }
        v
    }
}

//! Resource tables: collecting `[KIND.NAME]` tables, then building each [`Resource`] from its
//! resolved attributes, its edges and the provider instance that serves it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aspects_core::{Address, KindSchema, ProviderConfig, Resource, Value};

use super::coerce::written;
use super::resolve::{Scope, Trace};
use super::{Loader, RawResource, valid_ident};
use crate::source::{Diagnostic, did_you_mean};
use crate::tree::{Entry, NodeValue, Table};

/// Keys of a resource table that are not attributes of its kind.
const META_ATTRS: [&str; 3] = ["provider", "depends_on", "when"];

const WHEN_HINT: &str = "when = true, false, a var holding one (\"${vars.RUN_RALPH}\"), or a comparison: \"${vars.ASPECTS_XAPI_SOURCE} == ralph\"";

impl<'a> Loader<'a> {
    pub(super) fn collect_resources(&mut self, entry: &'a Entry, schema: &'a KindSchema) {
        let message = format!("`{}` must be a table of resources", entry.key);
        let Some(t) = self.table(&entry.node, message, Some(format!("write [{}.NAME] then its attributes", entry.key)))
        else {
            return;
        };
        for e in &t.entries {
            let message = format!("`{}.{}` must be a table of attributes", entry.key, e.key);
            let hint = format!("write [{}.{}] on its own line, then attribute = value lines", entry.key, e.key);
            let Some(body) = self.table(&e.node, message, Some(hint)) else {
                continue;
            };
            // `_` may start a name, but the rest is checked like any other name.
            if !valid_ident(e.key.strip_prefix('_').map_or(&e.key, |rest| rest)) {
                self.err(
                    Diagnostic::new(format!("resource name `{}` is not valid", e.key), Some(e.key_loc.clone()))
                        .hint("resource names start with a letter or `_` and use letters, digits, `_` and `-`"),
                );
                continue;
            }
            let addr = Address::new(entry.key.clone(), e.key.clone());
            let id = self.attr_values.len();
            self.attr_values.push(Vec::new());
            self.resources.insert(addr, RawResource { schema, table: body, header: e.key_loc.clone(), id });
        }
    }

    /// Takes out every resource whose `when` is false (a literal or a var, like Tutor's
    /// RUN_RALPH), before anything refers to it: it is then not in the plan at all, so what it
    /// owns goes the way of any resource removed from the plan. Remembered, so a reference to it
    /// says why it is missing.
    pub(super) fn switch_off(&mut self) {
        let mut addrs: Vec<Address> =
            self.resources.iter().filter(|(_, r)| r.table.get("when").is_some()).map(|(a, _)| a.clone()).collect();
        addrs.sort_unstable();
        for addr in addrs {
            let table: &'a Table = self.resources[&addr].table;
            let e = table.get("when").expect("filtered on it");
            let mut trace = Trace::default();
            let value = self.resolve(&e.node, Scope::NoResources, &mut trace);
            let on = match value {
                _ if !trace.secrets.is_empty() => None,
                Some(Value::Bool(b)) => Some(b),
                Some(Value::Str(s)) if s.eq_ignore_ascii_case("true") => Some(true),
                Some(Value::Str(s)) if s.eq_ignore_ascii_case("false") => Some(false),
                // Tutor's string switches: `when = "${vars.ASPECTS_XAPI_SOURCE} == ralph"`.
                Some(Value::Str(s)) if s.contains(" == ") || s.contains(" != ") => {
                    let (equal, (a, b)) = match s.split_once(" == ") {
                        Some(sides) => (true, sides),
                        None => (false, s.split_once(" != ").expect("checked")),
                    };
                    Some((a.trim() == b.trim()) == equal)
                }
                // Already reported by resolving.
                None => continue,
                Some(_) => None,
            };
            match on {
                Some(true) => {}
                Some(false) => {
                    self.resources.remove(&addr);
                    self.disabled.insert(addr, e.node.loc.clone());
                }
                None => self.err(
                    Diagnostic::new(
                        format!(
                            "`when` of {addr} must be true or false (from a literal, vars, or `A == B` / `A != B`)"
                        ),
                        Some(e.node.loc.clone()),
                    )
                    .hint(WHEN_HINT),
                ),
            }
        }
    }

    pub(super) fn resource(
        &mut self,
        addr: &Address,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Option<Resource> {
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
        let mut attr_origins = Vec::new();
        let mut trace = Trace::default();
        let mut credential_secrets = BTreeSet::new();
        for attr in &schema.attrs {
            let set = written(attr, table.get(attr.name));
            let mut own = Trace::default();
            let value = self.attr(addr, attr.name, &mut own);
            if attr.write_only && attr.sensitive {
                credential_secrets.extend(own.secrets.iter().cloned());
            }
            trace.deps.extend(own.deps);
            trace.secrets.extend(own.secrets);
            if let Some(v) = value {
                attrs.insert(attr.name.to_owned(), v);
            } else if set.is_some() || (attr.required && attr.default.is_none()) {
                ok = false;
            }
            if let Some(e) = set {
                attr_origins.push((attr.name, self.sources.describe(&e.node.loc)));
            }
        }
        if ok
            && let Some(check) = schema.check
            && let Err(e) = check(&attrs)
        {
            let loc = e.attr.and_then(|a| table.get(a)).map_or(header.clone(), |entry| entry.key_loc.clone());
            self.err(Diagnostic::new(format!("{addr}: {}", e.message), Some(loc)).hint(e.hint));
            ok = false;
        }
        let Trace { mut deps, secrets } = trace;
        deps.extend(self.explicit_depends(table));
        let system = self.registry.system_of(&addr.kind).unwrap_or_default();
        let provider = self.provider_for(addr, system, table, &header, providers);
        (ok && provider.is_some()).then(|| Resource {
            address: addr.clone(),
            provider: provider.unwrap_or_default(),
            attrs,
            depends_on: Arc::new(deps),
            origin: self.sources.describe(&header),
            attr_origins: Arc::new(attr_origins),
            secrets: Arc::new(secrets),
            credential_secrets: Arc::new(credential_secrets),
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
                NodeValue::Str(s) => Address::parse(s).filter(|a| self.declared(a)),
                _ => None,
            };
            match found {
                // Switched off: there is nothing to wait for.
                Some(a) if self.disabled.contains_key(&a) => {}
                Some(a) => out.push(a),
                None => {
                    let text = match &item.value {
                        NodeValue::Str(s) => s.clone(),
                        v => v.type_name().to_owned(),
                    };
                    let mut all: Vec<String> = self.resources.keys().map(ToString::to_string).collect();
                    all.sort_unstable();
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

    /// Two resources of one kind on one provider naming the same object (by the kind's canonical
    /// identity) would fight over it: both places are reported.
    pub(super) fn duplicate_identities(&mut self, resources: &BTreeMap<Address, Resource>) {
        let mut seen: HashMap<(&str, &str, String), &Address> = HashMap::new();
        let mut found = Vec::new();
        for (addr, r) in resources {
            let schema = self.resources[addr].schema;
            let key = schema.identity_key(&r.attrs);
            match seen.entry((r.provider.as_str(), schema.kind, key)) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    found.push(((*first.get()).clone(), addr.clone(), first.key().2.clone()))
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(addr);
                }
            }
        }
        for (first, second, key) in found {
            let provider = &resources[&second].provider;
            let first_at = self.sources.describe(&self.resources[&first].header);
            self.err(
                Diagnostic::new(
                    format!("{second} is the same object as {first} ({key}) on provider `{provider}`"),
                    Some(self.resources[&second].header.clone()),
                )
                .hint(format!(
                    "{first} is declared at {first_at}; one object needs exactly one resource: merge them or change the identity"
                )),
            );
        }
    }
}

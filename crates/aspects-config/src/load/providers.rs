//! `[providers.SYSTEM]` and `[providers.SYSTEM.NAME]` blocks, and which instance serves a resource.

use std::collections::BTreeMap;

use aspects_core::{Address, AttrSchema, ProviderConfig, Value};

use super::Loader;
use super::coerce::written;
use super::resolve::{Scope, Trace};
use crate::source::{Diagnostic, Location, did_you_mean};
use crate::tree::{Entry, Node, NodeValue, Table};

impl<'a> Loader<'a> {
    pub(super) fn providers(&mut self, entry: &'a Entry) -> BTreeMap<String, ProviderConfig> {
        let mut out = BTreeMap::new();
        let hint = "write [providers.mysql] then url = \"mysql://...\"";
        let Some(t) = self.table(&entry.node, "`providers` must be a table".into(), Some(hint.into())) else {
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
            let Some(body) = self.table(&e.node, format!("`providers.{}` must be a table", e.key), None) else {
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
            let entry = entries.iter().find(|e| e.key == attr.name).copied();
            let value = match written(attr, entry) {
                Some(e) => {
                    let mut trace = Trace::default();
                    self.resolve(&e.node, Scope::NoResources, &mut trace)
                        .and_then(|v| self.coerce(v, attr, &e.node.loc, &trace.secrets))
                }
                None => self.missing(attr, &format_args!("[providers.{id}]"), header),
            };
            if let Some(v) = value {
                out.insert(attr.name.to_owned(), v);
            }
        }
        out
    }

    pub(super) fn provider_for(
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
}

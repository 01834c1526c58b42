//! Planning: normalise the desired state, read live state in batches (one read per kind and
//! provider, all providers at once), find owned objects the plan dropped, and diff.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use aspects_core::diff::{self, Plan};
use aspects_core::graph::Graph;
use aspects_core::{Action, Address, Desired, Live, Orphan, ProviderId, Registry, Resource};
use tokio::task::JoinSet;

use crate::EngineError;
use crate::provider::{Invalid, ProviderRead};

pub type Readers = BTreeMap<ProviderId, Arc<dyn ProviderRead>>;

/// A plan plus the normalised resources it was computed from (what apply carries out).
pub struct Planned {
    pub plan: Plan,
    pub resources: BTreeMap<Address, Resource>,
}

/// What a plan aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Live state as the plan files describe it.
    Converge,
    /// Nothing owned any more (`aspects destroy`): what the deployment created is destroyed, what
    /// it adopted is released, or destroyed too with `destroy_adopted`.
    Destroy { destroy_adopted: bool },
}

pub async fn plan(
    desired: &Desired,
    graph: &Graph,
    registry: &Registry,
    readers: &Readers,
    targets: Option<&[Address]>,
    goal: Goal,
) -> Result<Planned, EngineError> {
    if let Goal::Destroy { destroy_adopted } = goal {
        return destroy_plan(desired, graph, registry, readers, targets, destroy_adopted).await;
    }
    // One normalised copy of each resource, grouped by provider in address order, so each kind
    // is one run of its provider's list. The reads share the lists (no copy per read), and the
    // copies become the plan's resources once every read has finished.
    let mut by_provider: BTreeMap<ProviderId, Vec<Resource>> = BTreeMap::new();
    for r in desired.resources.values() {
        let kind = registry.kind(&r.address.kind).expect("the loader checked every kind");
        let mut r = r.clone();
        readers[&r.provider].normalise(kind, &mut r);
        by_provider.entry(r.provider.clone()).or_default().push(r);
    }
    let by_provider: BTreeMap<ProviderId, Arc<Vec<Resource>>> =
        by_provider.into_iter().map(|(id, list)| (id, Arc::new(list))).collect();
    let mut prepares = JoinSet::new();
    for (id, list) in &by_provider {
        let (reader, id, list) = (readers[id].clone(), id.clone(), list.clone());
        prepares.spawn(async move { (id, reader.prepare(&list).await) });
    }
    while let Some(joined) = prepares.join_next().await {
        let (id, result) = joined.map_err(|e| EngineError::Internal(e.to_string()))?;
        result.map_err(|error| EngineError::Provider { target: readers[&id].target(), provider: id, error })?;
    }
    let invalid: Vec<String> = by_provider
        .values()
        .flat_map(|list| list.iter())
        .flat_map(|r| {
            let kind = registry.kind(&r.address.kind).expect("the loader checked every kind");
            readers[&r.provider].check(kind, r).into_iter().map(|i| located(r, &i))
        })
        .collect();
    if !invalid.is_empty() {
        return Err(EngineError::Invalid(invalid));
    }

    let mut reads = JoinSet::new();
    // Every configured provider is asked for orphans, including one whose resources have all
    // left the plan: that is exactly when everything it owns must go.
    for (id, reader) in readers {
        let all = by_provider.get(id).cloned().unwrap_or_default();
        let (reader, id) = (reader.clone(), id.clone());
        reads.spawn(async move {
            let r = reader.orphans(&all).await;
            (id, None, r.map(Read::Orphans))
        });
    }
    for (pid, list) in &by_provider {
        let mut start = 0;
        for run in list.chunk_by(|a, b| a.address.kind == b.address.kind) {
            let range = start..start + run.len();
            start = range.end;
            let reader = readers[pid].clone();
            let schema = registry.kind(&run[0].address.kind).expect("known kind").clone();
            let (list, id) = (list.clone(), pid.clone());
            reads.spawn(async move {
                let r = reader.read(&schema, &list[range.clone()]).await;
                (id, Some((list, range)), r.map(Read::Live))
            });
        }
    }

    let mut live: BTreeMap<Address, Live> = BTreeMap::new();
    let mut orphans: Vec<Orphan> = Vec::new();
    let mut first_error = None;
    while let Some(joined) = reads.join_next().await {
        let (id, list, result) = joined.map_err(|e| EngineError::Internal(e.to_string()))?;
        match result {
            Ok(Read::Orphans(o)) => orphans.extend(o),
            Ok(Read::Live(found)) => {
                let (list, range) = list.expect("live reads carry their list");
                for (r, l) in list[range].iter().zip(found) {
                    if let Some(l) = l {
                        live.insert(r.address.clone(), l);
                    }
                }
            }
            Err(error) => {
                first_error.get_or_insert(EngineError::Provider { target: readers[&id].target(), provider: id, error });
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let resources: BTreeMap<Address, Resource> = by_provider
        .into_values()
        .flat_map(|list| Arc::into_inner(list).expect("every read has finished"))
        .map(|r| (r.address.clone(), r))
        .collect();

    let conflicts: Vec<String> = resources
        .values()
        .filter_map(|r| live.get(&r.address)?.other_owner.as_ref().map(|d| format!("{} (deployment `{d}`)", r.address)))
        .collect();
    if !conflicts.is_empty() {
        return Err(EngineError::OwnedElsewhere(conflicts));
    }

    // Where each address's orphans are, so each resource finds the object its address used to
    // name without a scan of all orphans.
    let mut named: HashMap<Address, Vec<usize>> = HashMap::new();
    for (i, o) in orphans.iter().enumerate() {
        named.entry(o.address.clone()).or_default().push(i);
    }
    let mut orphans: Vec<Option<Orphan>> = orphans.into_iter().map(Some).collect();
    let mut changes = Vec::new();
    for r in resources.values() {
        let schema = registry.kind(&r.address.kind).expect("known kind");
        // Taken out, so each object's live state is freed once compared: a no-op change is a
        // fraction of its size, and the plan's peak memory is not all of both.
        let now = live.remove(&r.address);
        let now = now.as_ref();
        let at = named.get(&r.address).and_then(|found| {
            found.iter().copied().find(|&i| orphans[i].as_ref().is_some_and(|o| o.provider == r.provider))
        });
        // The address used to name another object (its identity moved): a replace when the new
        // object does not exist yet; when it does, the old one is destroyed on its own. An old
        // object the deployment adopted existed before it: it is released, never destroyed.
        let previous = match (at, now) {
            (Some(i), None) if orphans[i].as_ref().is_some_and(|o| !o.adopted) => orphans[i].take(),
            (Some(i), _) => {
                let o = orphans[i].as_mut().expect("found among the orphans left");
                o.address.name = format!("{} {}", o.address.name, crate::PREVIOUS_IDENTITY);
                o.reason = match o.adopted {
                    true => format!("{} now names another object; this one was adopted, so it is kept", r.address),
                    false => format!("{} now names an object that already exists", r.address),
                };
                None
            }
            (None, _) => None,
        };
        changes.push(diff::diff(schema, r, now, previous.as_ref()));
    }
    let orphans: Vec<Orphan> = orphans.into_iter().flatten().collect();
    for o in &orphans {
        let schema = registry
            .kind(&o.address.kind)
            .ok_or_else(|| EngineError::Internal(format!("provider returned unknown kind {}", o.address.kind)))?;
        let moved_off_adopted = o.adopted && o.address.name.ends_with(crate::PREVIOUS_IDENTITY);
        changes.push(if moved_off_adopted {
            diff::removal(schema, o, Action::Release)
        } else {
            diff::delete(schema, o)
        });
    }

    let targets = match targets {
        None => None,
        Some(t) => {
            let keep = targeted(graph, t);
            known_targets(t, graph, &orphans)?;
            changes.retain(|c| keep.contains(&c.address) || t.contains(&c.address));
            Some(t.to_vec())
        }
    };
    changes.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(Planned { plan: Plan { deployment: desired.deployment.clone(), changes, targets }, resources })
}

/// Refuses a plan that would re-key objects this deployment owns from a secret generated in
/// this very run: they were set from a value kept in a secrets file this run did not find
/// (renamed plan, moved file), and silently rotating it breaks every service that uses it.
pub fn check_new_secrets(
    planned: &Planned,
    generated: &BTreeSet<String>,
    secrets_file: &str,
) -> Result<(), EngineError> {
    let mut addresses = Vec::new();
    let mut secrets = BTreeSet::new();
    for c in &planned.plan.changes {
        // An identity move (a replace with an old identity) makes a new object rather than
        // re-keying a live one, so nothing in service loses its credential to the new value.
        let live_object = c.action == Action::Update || (c.action == Action::Replace && c.old_identity.is_none());
        let rekeys = live_object && !c.adopt && c.attrs.iter().any(|a| a.sensitive);
        let Some(r) = planned.resources.get(&c.address).filter(|_| rekeys) else { continue };
        let new: Vec<&String> = r.secrets.intersection(generated).collect();
        if !new.is_empty() {
            addresses.push(c.address.to_string());
            secrets.extend(new.into_iter().cloned());
        }
    }
    if addresses.is_empty() {
        return Ok(());
    }
    Err(EngineError::NewSecrets {
        addresses,
        secrets: secrets.into_iter().collect(),
        secrets_file: secrets_file.to_owned(),
    })
}

/// `file:line:col: kind.name.attr: message`, then the hint on its own line.
fn located(r: &Resource, invalid: &Invalid) -> String {
    let (origin, attr) = match invalid.attr.as_deref() {
        Some(a) => (r.origin_of(a), format!(".{a}")),
        None => (r.origin.as_str(), String::new()),
    };
    let mut line = format!("  {origin}: {}{attr}: {}", r.address, invalid.message);
    if let Some(hint) = &invalid.hint {
        line += &format!("\n    hint: {hint}");
    }
    line
}

/// Every provider's owned objects, as removals in the order apply runs deletes. `--target`
/// keeps the addresses named and everything that depends on them (they cannot outlive them).
async fn destroy_plan(
    desired: &Desired,
    graph: &Graph,
    registry: &Registry,
    readers: &Readers,
    targets: Option<&[Address]>,
    destroy_adopted: bool,
) -> Result<Planned, EngineError> {
    let mut scans = JoinSet::new();
    for (id, reader) in readers {
        let (reader, id) = (reader.clone(), id.clone());
        scans.spawn(async move { (id, reader.orphans(&[]).await) });
    }
    let mut orphans = Vec::new();
    while let Some(joined) = scans.join_next().await {
        let (id, result) = joined.map_err(|e| EngineError::Internal(e.to_string()))?;
        orphans.extend(result.map_err(|error| EngineError::Provider {
            target: readers[&id].target(),
            provider: id,
            error,
        })?);
    }
    if let Some(t) = targets {
        known_targets(t, graph, &orphans)?;
        let keep = graph.dependents(t);
        orphans.retain(|o| keep.contains(&o.address) || t.contains(&o.address));
    }
    let mut changes = Vec::new();
    for mut o in orphans {
        let schema = registry
            .kind(&o.address.kind)
            .ok_or_else(|| EngineError::Internal(format!("provider returned unknown kind {}", o.address.kind)))?;
        let (action, reason) = match (o.adopted, destroy_adopted) {
            (true, false) => (Action::Release, "adopted, not created, by this deployment; --destroy-adopted drops it"),
            (true, true) => (Action::Delete, "adopted by this deployment; --destroy-adopted"),
            (false, _) => (Action::Delete, "created by this deployment"),
        };
        o.reason = reason.into();
        changes.push(diff::removal(schema, &o, action));
    }
    changes.sort_by(|a, b| a.address.cmp(&b.address));
    let plan = Plan { deployment: desired.deployment.clone(), changes, targets: targets.map(<[Address]>::to_vec) };
    Ok(Planned { plan, resources: BTreeMap::new() })
}

/// What `--target` keeps: each resource named and everything it depends on; for a secret
/// (`secrets.NAME`), everything that uses it (what a rotation touches) with their dependencies.
fn targeted(graph: &Graph, targets: &[Address]) -> BTreeSet<Address> {
    let (secrets, resources): (Vec<Address>, Vec<Address>) = targets.iter().cloned().partition(Address::is_secret);
    let consumers: Vec<Address> = graph.dependents(&secrets).into_iter().collect();
    let mut keep = graph.closure(&resources);
    keep.extend(graph.closure(&consumers));
    keep
}

/// Every `--target` names a resource of the plan files or an owned object.
fn known_targets(targets: &[Address], graph: &Graph, orphans: &[Orphan]) -> Result<(), EngineError> {
    let unknown: Vec<String> = targets
        .iter()
        .filter(|a| !graph.contains(a) && !orphans.iter().any(|o| &o.address == *a))
        .map(ToString::to_string)
        .collect();
    if unknown.is_empty() { Ok(()) } else { Err(EngineError::UnknownTarget(unknown)) }
}

enum Read {
    Live(Vec<Option<Live>>),
    Orphans(Vec<Orphan>),
}

/// Statements issued by all readers so far.
pub fn queries(readers: &Readers) -> u64 {
    readers.values().map(|r| r.queries()).sum()
}

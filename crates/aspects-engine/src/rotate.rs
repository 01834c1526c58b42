//! Rotating secrets. A secret's consumers are the resources built from it; among them the
//! *credentials* hold it where the target checks it (a user's password) and the *clients* carry a
//! copy they present (a connection URI, a rendered config file). A rotation changes credentials
//! first, then clients, so the window in which a client holds a value its server no longer
//! accepts is as short as the graph allows. Where a provider can keep the old secret valid beside
//! the new one ([`SecretRotation::Dual`]), there is no such window at all: the new secret is
//! added, every client moves, and only then is the old one discarded.
//!
//! Nothing here keeps state: the secrets file records which rotations are pending, and a re-run
//! re-plans from live state like any apply.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use aspects_core::graph::Graph;
use aspects_core::{Action, Address, Registry};
use serde::Serialize;

use crate::EngineError;
use crate::apply::{ApplyOptions, Event, Report, Writers, apply};
use crate::plan::{Planned, Readers};
use crate::provider::SecretRotation;

/// What a consumer does with the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "role", content = "rotation")]
pub enum Role {
    /// The target checks the secret against it (a write-only secret attribute).
    Credential(SecretRotation),
    /// It presents the secret to a credential (or embeds it anywhere else).
    Client,
}

#[derive(Clone, Debug, Serialize)]
pub struct Consumer {
    pub address: Address,
    #[serde(flatten)]
    pub role: Role,
    /// What the plan does to it: `no_op` when it already uses the value being rotated to.
    pub action: Action,
    /// Left out of a `--target` plan: not read this run, so not known to use the new value.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outside_target: bool,
}

impl Consumer {
    /// Known to use the value being rotated to.
    pub fn converged(&self) -> bool {
        self.action == Action::NoOp && !self.outside_target
    }
}

/// One secret's rotation over a plan: its consumers in the order the rotation touches them.
#[derive(Clone, Debug, Serialize)]
pub struct Rotation {
    pub secret: String,
    pub consumers: Vec<Consumer>,
}

impl Rotation {
    fn credentials(&self) -> impl Iterator<Item = &Consumer> {
        self.consumers.iter().filter(|c| matches!(c.role, Role::Credential(_)))
    }

    fn dual(&self) -> impl Iterator<Item = &Consumer> {
        self.consumers.iter().filter(|c| c.role == Role::Credential(SecretRotation::Dual))
    }

    /// No client ever holds a value its credential refuses: every credential keeps the old
    /// secret until the end (or there are no credentials to refuse anything).
    pub fn zero_downtime(&self) -> bool {
        self.credentials().all(|c| c.role == Role::Credential(SecretRotation::Dual))
    }

    /// Consumers not known to use the new value: the plan changes them, or left them out.
    pub fn unconverged(&self) -> Vec<String> {
        self.consumers.iter().filter(|c| !c.converged()).map(|c| c.address.to_string()).collect()
    }
}

/// The rotation of each of `secrets` over `planned`, consumers in apply order (credentials
/// before clients). A secret no planned resource uses has no consumers.
pub fn rotations(
    secrets: &[String],
    planned: &Planned,
    graph: &Graph,
    registry: &Registry,
    readers: &Readers,
) -> Vec<Rotation> {
    let order: BTreeMap<Address, usize> = graph.order().into_iter().enumerate().map(|(i, a)| (a, i)).collect();
    let actions: BTreeMap<&Address, Action> = planned.plan.changes.iter().map(|c| (&c.address, c.action)).collect();
    secrets
        .iter()
        .map(|secret| {
            let mut consumers: Vec<Consumer> = planned
                .resources
                .values()
                .filter(|r| r.secrets.contains(secret))
                .map(|r| {
                    let role = if r.credential_secrets.contains(secret) {
                        let kind = registry.kind(&r.address.kind).expect("the loader checked every kind");
                        Role::Credential(readers[&r.provider].secret_rotation(kind))
                    } else {
                        Role::Client
                    };
                    let action = actions.get(&r.address).copied();
                    let outside_target = action.is_none();
                    Consumer {
                        address: r.address.clone(),
                        role,
                        action: action.unwrap_or(Action::NoOp),
                        outside_target,
                    }
                })
                .collect();
            consumers.sort_by_key(|c| (c.role == Role::Client, order.get(&c.address).copied().unwrap_or(usize::MAX)));
            Rotation { secret: secret.clone(), consumers }
        })
        .collect()
}

/// How long one credential was in transition: from its change until the old secret stopped
/// mattering (the last client moved, or the old secret was discarded).
#[derive(Clone, Debug, Serialize)]
pub struct Transition {
    pub secret: String,
    pub address: String,
    pub rotation: SecretRotation,
    pub ms: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct RotationReport {
    pub report: Report,
    /// Secrets every consumer of which uses the new value, old secrets discarded: the caller
    /// may now promote their pending values.
    pub converged: Vec<String>,
    /// Secrets with consumers left behind (failed or skipped), which stay pending.
    pub unfinished: Vec<(String, Vec<String>)>,
    pub transitions: Vec<Transition>,
}

/// Applies `planned` with `rotations` in progress: clients wait for the credentials of the
/// secrets they carry, credentials that can hold two secrets keep the old one, and once every
/// consumer of a secret converged its credentials discard the old one.
pub async fn apply_rotating(
    planned: &Planned,
    graph: &Graph,
    registry: &Registry,
    writers: &Writers,
    opts: &ApplyOptions<'_>,
    rotations: &[Rotation],
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<RotationReport, EngineError> {
    let edges = rotations.iter().flat_map(|r| {
        let clients: Vec<&Address> =
            r.consumers.iter().filter(|c| c.role == Role::Client).map(|c| &c.address).collect();
        r.credentials().flat_map(move |cred| clients.clone().into_iter().map(|cl| (cred.address.clone(), cl.clone())))
    });
    let ordered = graph.with_edges(edges.collect::<Vec<_>>());
    let mut opts = opts.clone();
    opts.keep_old_secret = rotations.iter().flat_map(|r| r.dual().map(|c| c.address.clone())).collect();

    let mut done_at: BTreeMap<String, Instant> = BTreeMap::new();
    let report = {
        let mut events = |e: &Event| {
            if let Event::Done { address, .. } = e {
                done_at.insert(address.clone(), Instant::now());
            }
            on_event(e);
        };
        apply(planned, &ordered, registry, writers, &opts, &mut events).await?
    };

    let mut out = RotationReport::default();
    for r in rotations {
        let done: BTreeSet<&str> = report.done.iter().map(String::as_str).collect();
        let left: Vec<String> = r.unconverged().into_iter().filter(|a| !done.contains(a.as_str())).collect();
        if !left.is_empty() {
            out.unfinished.push((r.secret.clone(), left));
            continue;
        }
        let mut discarded_at = BTreeMap::new();
        let mut failed = Vec::new();
        for c in r.dual() {
            match discard(planned, registry, writers, &opts, &c.address, on_event).await? {
                true => discarded_at.insert(c.address.to_string(), Instant::now()),
                false => {
                    failed.push(c.address.to_string());
                    None
                }
            };
        }
        if !failed.is_empty() {
            out.unfinished.push((r.secret.clone(), failed));
            continue;
        }
        let last_client = r
            .consumers
            .iter()
            .filter(|c| c.role == Role::Client)
            .filter_map(|c| done_at.get(&c.address.to_string()))
            .max()
            .copied();
        for c in r.credentials() {
            let address = c.address.to_string();
            let (Role::Credential(rotation), Some(start)) = (c.role, done_at.get(&address)) else { continue };
            let end = match rotation {
                SecretRotation::Dual => discarded_at.get(&address).copied(),
                SecretRotation::Replace => last_client,
            };
            let ms = end.map_or(0, |e| e.saturating_duration_since(*start).as_millis() as u64);
            let t = Transition { secret: r.secret.clone(), address, rotation, ms };
            if let Some(j) = opts.journal {
                j.record(&TransitionEntry { event: "credential_transition", transition: &t });
            }
            out.transitions.push(t);
        }
        out.converged.push(r.secret.clone());
    }
    out.report = report;
    Ok(out)
}

#[derive(Serialize)]
struct TransitionEntry<'a> {
    event: &'static str,
    #[serde(flatten)]
    transition: &'a Transition,
}

/// Ends a `Dual` credential's transition; `false` when the provider failed (reported as an
/// event, the rotation stays pending).
async fn discard(
    planned: &Planned,
    registry: &Registry,
    writers: &Writers,
    opts: &ApplyOptions<'_>,
    address: &Address,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<bool, EngineError> {
    let resource = &planned.resources[address];
    if let Some(locks) = opts.locks {
        locks.check(&resource.provider).await?;
    }
    let kind = registry.kind(&address.kind).expect("the loader checked every kind");
    let started = Instant::now();
    let emit = |e: Event, on_event: &mut (dyn FnMut(&Event) + Send)| {
        if let Some(j) = opts.journal {
            j.record(&e);
        }
        on_event(&e);
    };
    match writers[&resource.provider].discard_old_secret(kind, resource).await {
        Ok(()) => {
            let ms = started.elapsed().as_millis() as u64;
            emit(Event::OldSecretDiscarded { address: address.to_string(), ms }, on_event);
            Ok(true)
        }
        Err(e) => {
            let error = opts.redactor.scrub(&e.message);
            let hint = e.hint.as_deref().map(|h| opts.redactor.scrub(h));
            emit(Event::Failed { address: address.to_string(), action: Action::Update, error, hint }, on_event);
            Ok(false)
        }
    }
}

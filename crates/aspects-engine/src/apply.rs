//! Carrying out a plan: creates and updates in dependency order with bounded parallelism (a
//! global limit and each provider's own), then deletes in reverse kind order. A failure skips
//! what depends on it and lets independent branches finish. Re-planning is resume: nothing here
//! keeps state between runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use aspects_core::graph::Graph;
use aspects_core::{Action, Address, Change, Plan, ProviderId, Redactor, Registry};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::EngineError;
use crate::journal::Journal;
use crate::lock::Locks;
use crate::plan::Planned;
use crate::provider::ProviderWrite;

pub type Writers = BTreeMap<ProviderId, Arc<dyn ProviderWrite>>;

#[derive(Clone)]
pub struct ApplyOptions<'a> {
    pub parallelism: usize,
    pub allow_destroy: bool,
    /// Scrubs every known secret from error text before it is shown or journalled.
    pub redactor: &'a Redactor,
    pub journal: Option<&'a Journal>,
    /// Checked before every change: once a target's lock is lost, nothing more is written.
    pub locks: Option<&'a Locks>,
    /// Credentials being rotated whose provider keeps the old secret valid beside the new one
    /// ([`crate::provider::SecretRotation::Dual`]): their changes go through
    /// [`ProviderWrite::apply_keeping_old_secret`].
    pub keep_old_secret: BTreeSet<Address>,
}

/// What happened to one resource; also the journal's vocabulary.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        address: String,
        action: Action,
    },
    Done {
        address: String,
        action: Action,
        ms: u64,
    },
    Failed {
        address: String,
        action: Action,
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
    Skipped {
        address: String,
        action: Action,
        because: String,
    },
    /// The end of a zero-downtime rotation: the credential no longer accepts the old secret.
    OldSecretDiscarded {
        address: String,
        ms: u64,
    },
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub done: Vec<String>,
    pub failed: Vec<String>,
    pub skipped: Vec<String>,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

/// Refuses a plan that destroys data-bearing objects unless `--allow-destroy` was given.
pub fn check_destroys(plan: &Plan, allow_destroy: bool) -> Result<(), EngineError> {
    let protected: Vec<String> = plan
        .destroys_data()
        .map(|c| match c.action {
            Action::Replace => format!("{}{}", c.address, crate::REPLACED),
            _ => c.address.to_string(),
        })
        .collect();
    if allow_destroy || protected.is_empty() { Ok(()) } else { Err(EngineError::DestroyProtected(protected)) }
}

pub async fn apply(
    planned: &Planned,
    graph: &Graph,
    registry: &Registry,
    writers: &Writers,
    opts: &ApplyOptions<'_>,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<Report, EngineError> {
    check_destroys(&planned.plan, opts.allow_destroy)?;
    let ops: Vec<&Change> = planned.plan.changes.iter().filter(|c| c.action != Action::NoOp).collect();
    // Releases touch only ownership records; they go with the deletes, after everything else.
    let (deletes, others): (Vec<&Change>, Vec<&Change>) =
        ops.into_iter().partition(|c| matches!(c.action, Action::Delete | Action::Release));

    let addrs: BTreeSet<&Address> = others.iter().map(|c| &c.address).collect();
    let mut queue: Vec<Op> = others
        .iter()
        .map(|c| {
            let mut blockers: BTreeSet<Address> = graph.closure(std::slice::from_ref(&c.address));
            blockers.retain(|a| a != &c.address && addrs.contains(a));
            Op { change: (*c).clone(), blockers }
        })
        .collect();
    let order: BTreeMap<Address, usize> = graph.order().into_iter().enumerate().map(|(i, a)| (a, i)).collect();
    queue.sort_by_key(|op| order.get(&op.change.address).copied().unwrap_or(usize::MAX));

    // Deletes run one kind rank at a time, highest first (grants before users before
    // databases); a failure skips every lower rank. Groups, not pairwise blockers: thousands of
    // deletes would otherwise carry a quadratic number of them.
    let mut by_rank: BTreeMap<std::cmp::Reverse<u8>, Vec<Op>> = BTreeMap::new();
    for c in deletes {
        let rank = registry.kind(&c.address.kind).map_or(0, |k| k.rank);
        by_rank.entry(std::cmp::Reverse(rank)).or_default().push(Op { change: c.clone(), blockers: BTreeSet::new() });
    }

    let mut run = Run { planned, registry, writers, opts, on_event, report: Report::default(), lost: None };
    run.schedule(queue).await?;
    let mut failed_deletes: Vec<String> = Vec::new();
    for group in by_rank.into_values() {
        // After a lost lock, `schedule` skips the group saying so.
        if failed_deletes.is_empty() || run.lost.is_some() {
            let (failed, skipped) = (run.report.failed.len(), run.report.skipped.len());
            run.schedule(group).await?;
            failed_deletes.extend(run.report.failed[failed..].iter().cloned());
            failed_deletes.extend(run.report.skipped[skipped..].iter().cloned());
        } else {
            let because = format!("{} did not succeed", crate::few(&failed_deletes));
            for op in group {
                run.skip(&op, because.clone());
            }
        }
    }
    match run.lost {
        Some(e) => Err(e),
        None => Ok(run.report),
    }
}

/// Before applying: every provider drops the ownership records that prove nothing (see
/// [`ProviderWrite::prune`]). Not a planned change: no object is touched.
pub async fn prune(planned: &Planned, writers: &Writers, locks: Option<&Locks>) -> Result<usize, EngineError> {
    let mut pruned = 0;
    for (id, w) in writers {
        if let Some(locks) = locks {
            locks.check(id).await?;
        }
        let desired: Vec<_> = planned.resources.values().filter(|r| &r.provider == id).cloned().collect();
        pruned += w.prune(&desired).await.map_err(|error| EngineError::Provider {
            provider: id.clone(),
            target: w.target(),
            error,
        })?;
    }
    Ok(pruned)
}

struct Op {
    change: Change,
    blockers: BTreeSet<Address>,
}

struct Run<'a> {
    planned: &'a Planned,
    registry: &'a Registry,
    writers: &'a Writers,
    opts: &'a ApplyOptions<'a>,
    on_event: &'a mut (dyn FnMut(&Event) + Send),
    report: Report,
    /// Set when a lock check failed: nothing more starts.
    lost: Option<EngineError>,
}

enum Outcome {
    Done,
    Failed,
}

impl Run<'_> {
    fn emit(&mut self, e: Event) {
        if let Some(j) = self.opts.journal {
            j.record(&e);
        }
        (self.on_event)(&e);
    }

    fn skip(&mut self, op: &Op, because: String) {
        self.report.skipped.push(op.change.address.to_string());
        self.emit(Event::Skipped { address: op.change.address.to_string(), action: op.change.action, because });
    }

    /// Runs ops whose blockers have all succeeded, as many at once as the limits allow, until
    /// every op has finished or been skipped.
    async fn schedule(&mut self, mut pending: Vec<Op>) -> Result<(), EngineError> {
        let mut outcome: BTreeMap<Address, Outcome> = BTreeMap::new();
        let mut running: JoinSet<(Change, Result<(), crate::provider::ProviderError>, u64)> = JoinSet::new();
        let mut per_provider: BTreeMap<ProviderId, usize> = BTreeMap::new();
        loop {
            // Skip whatever waits on a failure, transitively (a skip counts as a failure).
            while let Some(i) = pending
                .iter()
                .position(|op| op.blockers.iter().any(|b| matches!(outcome.get(b), Some(Outcome::Failed))))
            {
                let op = pending.remove(i);
                let failed: Vec<String> = op
                    .blockers
                    .iter()
                    .filter(|b| matches!(outcome.get(*b), Some(Outcome::Failed)))
                    .map(ToString::to_string)
                    .collect();
                outcome.insert(op.change.address.clone(), Outcome::Failed);
                self.skip(&op, format!("{} did not succeed", crate::few(&failed)));
            }
            if let Some(lost) = &self.lost {
                let because = format!("nothing more is changed: {lost}");
                for op in pending.drain(..) {
                    outcome.insert(op.change.address.clone(), Outcome::Failed);
                    self.skip(&op, because.clone());
                }
            }
            let mut i = 0;
            while i < pending.len() && running.len() < self.opts.parallelism.max(1) {
                let op = &pending[i];
                let provider = op.change.provider.clone();
                let writer = &self.writers[&provider];
                let busy = per_provider.get(&provider).copied().unwrap_or(0);
                let ready = op.blockers.iter().all(|b| matches!(outcome.get(b), Some(Outcome::Done)));
                if !ready || busy >= writer.max_concurrency().max(1) {
                    i += 1;
                    continue;
                }
                // Right before the write: a lock whose connection dropped may be someone else's now.
                if let Some(locks) = self.opts.locks
                    && let Err(e) = locks.check(&provider).await
                {
                    self.lost = Some(match e {
                        EngineError::LockLost { provider, target, error } => EngineError::LockLost {
                            provider,
                            target,
                            error: crate::ProviderError { message: self.opts.redactor.scrub(&error.message), ..error },
                        },
                        other => other,
                    });
                    break;
                }
                let writer = writer.clone();
                let op = pending.remove(i);
                *per_provider.entry(provider).or_default() += 1;
                self.emit(Event::Started { address: op.change.address.to_string(), action: op.change.action });
                let kind = self.registry.kind(&op.change.address.kind).expect("known kind").clone();
                let desired = self
                    .planned
                    .resources
                    .get(&op.change.address)
                    .filter(|_| !matches!(op.change.action, Action::Delete | Action::Release))
                    .cloned();
                let keep_old = self.opts.keep_old_secret.contains(&op.change.address);
                running.spawn(async move {
                    let started = Instant::now();
                    let r = match desired.as_ref() {
                        Some(d) if keep_old => writer.apply_keeping_old_secret(&kind, &op.change, d).await,
                        _ => writer.apply(&kind, &op.change, desired.as_ref()).await,
                    };
                    (op.change, r, started.elapsed().as_millis() as u64)
                });
            }
            if self.lost.is_some() && !pending.is_empty() {
                continue;
            }
            let Some(joined) = running.join_next().await else {
                debug_assert!(pending.is_empty(), "ops left that can never become ready");
                return Ok(());
            };
            let (change, result, ms) = joined.map_err(|e| EngineError::Internal(e.to_string()))?;
            if let Some(n) = per_provider.get_mut(&change.provider) {
                *n -= 1;
            }
            let address = change.address.to_string();
            match result {
                Ok(()) => {
                    outcome.insert(change.address.clone(), Outcome::Done);
                    self.report.done.push(address.clone());
                    self.emit(Event::Done { address, action: change.action, ms });
                }
                Err(e) => {
                    outcome.insert(change.address.clone(), Outcome::Failed);
                    self.report.failed.push(address.clone());
                    let error = self.opts.redactor.scrub(&e.message);
                    let hint = e.hint.as_deref().map(|h| self.opts.redactor.scrub(h));
                    self.emit(Event::Failed { address, action: change.action, error, hint });
                }
            }
        }
    }
}

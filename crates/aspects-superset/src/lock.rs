//! The apply lock. Superset has no advisory lock and its REST API no transaction; its one atomic
//! compare-and-set is a unique name: of several `POST /api/v1/security/groups/` with one name,
//! exactly one succeeds (`ab_group.name` is a unique key in the metadata database). The lock is
//! a sequence of generation groups `aspects-lock-<n>` (a group has no users and no roles, so it
//! grants nothing): a run holds the lock while its generation is the highest and it keeps
//! renewing it. Why it is safe is written down in ARCHITECTURE.md ("The Superset lock"). In short:
//!
//! - taking it: list the highest generation n; when it is released, or a contender watched it
//!   for a whole lease without seeing a heartbeat, create `aspects-lock-<n+1>`; losing that race
//!   is an error on create, and the loser looks again. The winner checks that no higher
//!   generation appeared and deletes the ones below its own;
//! - holding it: a background task writes a heartbeat into the group's description every
//!   quarter lease; `check` (before every change) fails when a higher generation exists or no
//!   heartbeat succeeded for a lease by this run's clock. No clock is compared across machines: a contender
//!   measures "no heartbeat for a lease" on its own clock, the holder "my heartbeat is older than
//!   a lease" on its own;
//! - `kill -9`: nothing beats any more; a contender takes over one lease after it first looked.
//!   Release marks the generation released for an immediate hand-over.
//!
//! The lock covers the whole Superset (every deployment), which is what keeps one owner per
//! object for the records (records.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_engine::lock::{Heartbeat, LeaseWait};
use aspects_engine::provider::{LockGuard, ProviderError};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value as Json, json};
use tokio::time::Instant;

use crate::client::{Handle, SsError, filter};

const GROUPS: &str = "/api/v1/security/groups/";
const PREFIX: &str = "aspects-lock-";

/// A generation's group name: zero-padded so names sort like numbers.
fn name(n: u64) -> String {
    format!("{PREFIX}{n:012}")
}

/// Held while an apply runs (it outlives a borrow of the handle, hence the `Arc`).
pub struct Lock {
    beat: Arc<Beat>,
    generation: u64,
    /// Writes the next beat every quarter lease, and knows when one last succeeded (timed from
    /// before the write: a contender sees the beat no earlier, so this run's lease ends no later
    /// than a contender's watch does).
    heartbeat: Heartbeat,
}

/// What the heartbeat writes.
struct Beat {
    handle: Arc<Handle>,
    group: i64,
    holder: String,
    count: AtomicU64,
}

impl Beat {
    async fn write(&self) -> Result<(), SsError> {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let body = json!({"description": description(&self.holder, count)});
        self.handle.call(Method::PUT, &format!("{GROUPS}{}", self.group), Some(&body)).await.map(drop)
    }
}

/// One generation as listed.
#[derive(Clone, Debug, PartialEq)]
struct Generation {
    n: u64,
    id: i64,
    /// `held by HOLDER; beat K` or `released by HOLDER`.
    description: String,
}

impl Generation {
    fn released(&self) -> bool {
        self.description.starts_with("released")
    }
}

fn description(holder: &str, beat: u64) -> String {
    format!("held by {holder}; beat {beat}")
}

impl Handle {
    /// Every generation, highest first: one request.
    async fn generations(&self) -> Result<Vec<Generation>, SsError> {
        let rows = self.list(GROUPS, "id", &["id", "name", "description"], &[filter("name", "sw", PREFIX)]).await?;
        let mut out: Vec<Generation> = rows
            .iter()
            .filter_map(|r| {
                let n = r.get("name")?.as_str()?.strip_prefix(PREFIX)?.parse().ok()?;
                let description = r.get("description").and_then(Json::as_str).unwrap_or_default().to_owned();
                Some(Generation { n, id: r.get("id")?.as_i64()?, description })
            })
            .collect();
        out.sort_by_key(|g| std::cmp::Reverse(g.n));
        Ok(out)
    }

    /// Creates generation `n`: its id, or `None` when another run created it first.
    async fn create_generation(&self, n: u64, holder: &str) -> Result<Option<i64>, SsError> {
        let body = json!({"name": name(n), "label": "aspects apply lock", "description": description(holder, 0)});
        match self.call(Method::POST, GROUPS, Some(&body)).await {
            Ok(answer) => Ok(answer.get("id").and_then(Json::as_i64)),
            // A duplicate name is a 500 with the database's message: did the name appear?
            Err(e) if e.status.is_some_and(|s| !s.is_success()) => {
                let taken = self.generations().await?.iter().any(|g| g.n == n);
                if taken { Ok(None) } else { Err(e) }
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn take_lock(
        self: &Arc<Self>,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Lock, ProviderError> {
        let what = format!("the aspects lock of Superset at {} (deployment '{}')", self.target, self.deployment);
        let fail = |e: SsError| self.err(&e, &format!("taking {what}"));
        let holder = format!("{holder} (deployment '{}')", self.deployment);
        let mut wait = LeaseWait::new(what.clone(), wait, self.lease, waiting);
        // The highest generation as first seen unchanged, and since when (this run's clock).
        let mut watched: Option<(Generation, Instant)> = None;
        loop {
            let all = self.generations().await.map_err(fail)?;
            let top = all.first().cloned();
            let free = match &top {
                None => true,
                Some(g) if g.released() => true,
                Some(g) => match &watched {
                    Some((seen, since)) if seen == g => since.elapsed() >= self.lease,
                    _ => {
                        watched = Some((g.clone(), Instant::now()));
                        false
                    }
                },
            };
            if free {
                let n = top.as_ref().map_or(0, |g| g.n) + 1;
                let sent = Instant::now();
                if let Some(group) = self.create_generation(n, &holder).await.map_err(fail)? {
                    let now = self.generations().await.map_err(fail)?;
                    if now.first().is_some_and(|g| g.n == n) {
                        for old in now.iter().filter(|g| g.n < n) {
                            // Best effort: a generation left behind only costs a group.
                            let _ = self.call(Method::DELETE, &format!("{GROUPS}{}", old.id), None).await;
                        }
                        tracing::debug!(generation = n, "lock taken");
                        let beat = Arc::new(Beat { handle: self.clone(), group, holder, count: AtomicU64::new(0) });
                        let background = beat.clone();
                        let heartbeat = Heartbeat::start(self.lease, sent, move || {
                            let beat = background.clone();
                            async move { beat.write().await.map_err(|e| e.message) }
                        });
                        return Ok(Lock { beat, generation: n, heartbeat });
                    }
                    // A later generation beat this one (this run was slower than a lease): yield.
                    let body = json!({"description": format!("released by {holder}")});
                    let _ = self.call(Method::PUT, &format!("{GROUPS}{group}"), Some(&body)).await;
                }
                continue;
            }
            let by = top.map(|g| g.description).unwrap_or_default();
            wait.busy(by.strip_prefix("held by ").unwrap_or(&by)).await?;
        }
    }
}

#[async_trait]
impl LockGuard for Lock {
    /// Fails when a later generation exists or no heartbeat succeeded for a lease (one request).
    async fn check(&self) -> Result<(), ProviderError> {
        let h = &self.beat.handle;
        let what = format!("the aspects lock of Superset at {}", h.target);
        let all = h.generations().await.map_err(|e| h.err(&e, &format!("checking {what}")))?;
        if let Some(top) = all.first().filter(|g| g.n != self.generation) {
            return Err(ProviderError::new(format!(
                "{what} was taken over ({}; this run's lease ran out)",
                top.description
            )));
        }
        if self.heartbeat.since_renewed() >= h.lease {
            return Err(ProviderError::new(format!(
                "this run's lease on {what} ran out ({}s without a heartbeat), so another run may take it",
                h.lease.as_secs()
            )));
        }
        Ok(())
    }

    async fn release(self: Box<Self>) {
        drop(self.heartbeat);
        let body = json!({"description": format!("released by {}", self.beat.holder)});
        let path = format!("{GROUPS}{}", self.beat.group);
        if let Err(e) = self.beat.handle.call(Method::PUT, &path, Some(&body)).await {
            tracing::warn!("releasing the lock: {}", e.message);
        }
    }
}

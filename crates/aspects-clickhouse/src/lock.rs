//! The apply lock. ClickHouse has no advisory lock and no transactions; its one atomic
//! compare-and-set is DDL: of several `CREATE TABLE t` (without IF NOT EXISTS) for one name,
//! exactly one succeeds. The lock is a sequence of generation tables `<meta>.lock_<n>`: a run
//! holds the lock while its generation is the highest and its lease is alive. Why it is safe is
//! written down in ARCHITECTURE.md ("The ClickHouse lock"). In short:
//!
//! - taking it: read the highest generation n; when it is released or its lease ran out (judged
//!   by the server's clock), create `lock_<n+1>`; losing that race is a TABLE_ALREADY_EXISTS error.
//!   The winner then checks that no higher generation appeared, writes its first lease row and
//!   drops the generations below its own;
//! - holding it: a heartbeat renews the lease every quarter lease, so a run keeps it through a
//!   confirmation prompt or a long read; `check` (before every change) fails when a higher
//!   generation exists or the lease ran out, and otherwise renews it too. A renewal extends only a
//!   live lease, so a run that stalled past its lease (suspended, starved) stops before its next
//!   write instead of reviving the lease and racing the run that took over;
//! - `kill -9`: nothing renews the lease, and the next run takes over once it runs out
//!   (`lock_lease_seconds`); release marks the generation released for an immediate hand-over.
//!
//! The lock covers the whole meta database (every deployment on the server), which is what
//! makes one owner per object hold for the records (see `ownership.rs`).

use std::sync::Arc;
use std::time::Duration;

use aspects_engine::lock::{Heartbeat, LeaseWait};
use aspects_engine::provider::{LockGuard, ProviderError};
use async_trait::async_trait;

use crate::client::{ChError, Handle, code, col, ident};
use crate::ddl;

/// The generation table name: zero-padded so names sort like numbers.
fn table(n: u64) -> String {
    format!("lock_{n:012}")
}

/// Held while an apply runs (it outlives a borrow of the handle, hence the `Arc`).
pub struct Lock {
    handle: Arc<Handle>,
    generation: u64,
    /// Renews the lease in the background; stopped when the lock is released or dropped.
    heartbeat: Heartbeat,
}

/// The highest generation and whether it still binds others.
struct Current {
    generation: u64,
    holder: String,
    /// Seconds since it was taken.
    age: i64,
    live: bool,
}

impl Handle {
    fn lock_table(&self, n: u64) -> String {
        format!("{}.{}", ident(&self.meta), ident(&table(n)))
    }

    /// The highest generation (0 = none yet) and its state: two queries.
    async fn current(&self) -> Result<Current, ChError> {
        let rows = self
            .rows(
                "SELECT name, comment, dateDiff('second', metadata_modification_time, now()) AS age FROM system.tables \
                 WHERE database = {meta:String} AND match(name, '^lock_[0-9]{12}$') ORDER BY name DESC LIMIT 1",
                &[("meta", &self.meta)],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Current { generation: 0, holder: String::new(), age: 0, live: false });
        };
        let generation = col(row, "name")[5..].parse().unwrap_or(0);
        let age = col(row, "age").parse().unwrap_or(0);
        // A generation without a lease row yet is held from its creation for one lease.
        let state = format!(
            "SELECT max(released) AS released, if(count() = 0, {{age:Int64}} < {{lease:Int64}}, max(expires) > now64(3)) AS alive \
             FROM {}",
            self.lock_table(generation)
        );
        let lease = self.lease.as_secs().to_string();
        let state = match self.rows(&state, &[("age", &age.to_string()), ("lease", &lease)]).await {
            Ok(rows) => rows,
            // Dropped since it was listed: a newer generation exists; look again.
            Err(ChError { code: code::UNKNOWN_TABLE, .. }) => return Box::pin(self.current()).await,
            Err(e) => return Err(e),
        };
        let flag = |name: &str| state.first().is_some_and(|r| matches!(col(r, name).as_str(), "1" | "true"));
        Ok(Current { generation, holder: col(row, "comment"), age, live: flag("alive") && !flag("released") })
    }

    /// Creates generation `n`: `Ok(false)` when another run created it first.
    async fn create_generation(&self, n: u64, holder: &str) -> Result<bool, ChError> {
        match self.query(&ddl::lock_generation(&self.meta, &table(n), holder), &[]).await {
            Ok(_) => Ok(true),
            Err(ChError { code: code::TABLE_ALREADY_EXISTS, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Extends the lease of generation `n` if it is still alive (judged by the server's clock,
    /// in the same statement): the heartbeat's and `check`'s renewal.
    async fn extend(&self, n: u64) -> Result<(), ChError> {
        let t = self.lock_table(n);
        let sql = format!(
            "INSERT INTO {t} SELECT now64(3) + toIntervalMillisecond({{ms:UInt64}}), 0 \
             FROM (SELECT max(expires) AS e, max(released) AS r FROM {t}) WHERE e > now64(3) AND r = 0"
        );
        self.query(&sql, &[("ms", &self.lease.as_millis().to_string())]).await.map(drop)
    }

    /// The first lease row of a generation, or its release.
    async fn renew(&self, n: u64, released: bool) -> Result<(), ChError> {
        let sql = format!(
            "INSERT INTO {} SELECT now64(3) + toIntervalMillisecond({{ms:UInt64}}), {{released:UInt8}}",
            self.lock_table(n)
        );
        let ms = if released { "0".to_owned() } else { self.lease.as_millis().to_string() };
        self.query(&sql, &[("ms", &ms), ("released", if released { "1" } else { "0" })]).await.map(drop)
    }

    pub(crate) async fn lock(
        self: &Arc<Self>,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Lock, ProviderError> {
        let what =
            format!("the aspects lock of {} on {} (deployment '{}')", ident(&self.meta), self.target, self.deployment);
        let fail = |e: ChError| self.err(&e, &format!("taking {what}"));
        let holder = format!("{holder} (deployment '{}')", self.deployment);
        let mut wait = LeaseWait::new(what.clone(), wait, self.lease, waiting);
        loop {
            let cur = self.current().await.map_err(fail)?;
            if !cur.live {
                let n = cur.generation + 1;
                if self.create_generation(n, &holder).await.map_err(fail)? {
                    self.renew(n, false).await.map_err(fail)?;
                    if self.current().await.map_err(fail)?.generation == n {
                        for old in (1..n).rev().take(8) {
                            // Best effort: a generation left behind only costs a table.
                            let _ = self.query(&ddl::drop_lock_generation(&self.meta, &table(old)), &[]).await;
                        }
                        tracing::debug!(generation = n, "lock taken");
                        let handle = self.clone();
                        let heartbeat = Heartbeat::start(self.lease, tokio::time::Instant::now(), move || {
                            let handle = handle.clone();
                            async move { handle.extend(n).await.map_err(|e| e.message) }
                        });
                        return Ok(Lock { handle: self.clone(), generation: n, heartbeat });
                    }
                    // A later generation beat this one (this run was slower than a lease): yield.
                    let _ = self.renew(n, true).await;
                }
                continue;
            }
            wait.busy(&format!("{} for {}s", cur.holder, cur.age)).await?;
        }
    }
}

#[async_trait]
impl LockGuard for Lock {
    /// Fails when a later generation exists or the lease ran out (by the server's clock);
    /// otherwise renews the lease.
    async fn check(&self) -> Result<(), ProviderError> {
        let h = &self.handle;
        let what = format!("the aspects lock of {} on {}", ident(&h.meta), h.target);
        let cur = h.current().await.map_err(|e| h.err(&e, &format!("checking {what}")))?;
        if cur.generation != self.generation {
            return Err(ProviderError::new(format!(
                "{what} was taken over by {} (this run's lease ran out)",
                cur.holder
            )));
        }
        if !cur.live {
            return Err(ProviderError::new(format!(
                "this run's lease on {what} ran out ({}s without renewal), so another run may take it",
                h.lease.as_secs()
            )));
        }
        h.extend(self.generation).await.map_err(|e| h.err(&e, &format!("renewing {what}")))
    }

    async fn release(self: Box<Self>) {
        drop(self.heartbeat);
        if let Err(e) = self.handle.renew(self.generation, true).await {
            tracing::warn!("releasing the lock: {}", e.message);
        }
    }
}

//! Read-after-write. After each change the provider reads the object back until the server shows
//! it, before the run moves on (to a dependent object, to `prune`, which drops records whose object
//! it cannot see, or to the end of the apply, which promises the next plan is empty). On one node
//! the first read sees it. In cluster mode the DDL node answers an ON CLUSTER statement once every
//! host ran it, but a statement that outlived `distributed_ddl_task_timeout` is still queued, and a
//! replica behind a load balancer may answer the read: so reads are retried with a growing pause
//! up to [`LAG_BOUND`], and then the apply fails naming what is not visible yet. The change is
//! recorded by then, so a later run picks up where this one stopped.

use std::future::Future;
use std::time::{Duration, Instant};

use aspects_core::Resource;
use aspects_engine::provider::ProviderError;

use crate::client::Handle;
use crate::ddl;
use crate::schema::{DATABASE, FUNCTION, TABLE, str_attr};

/// How long a cluster may take to show a change on the node that is read.
pub const LAG_BOUND: Duration = Duration::from_secs(60);
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// Runs `probe` until it answers true, pausing 50 ms, 100 ms ... 2 s between tries, for at most
/// `bound` (zero: one try).
pub async fn until<F, Fut>(what: &str, bound: Duration, mut probe: F) -> Result<(), ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, ProviderError>>,
{
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        if probe().await? {
            return Ok(());
        }
        if started.elapsed() + pause > bound {
            return Err(ProviderError::new(format!(
                "{what} was changed, but reading it back does not show the change after {} ms",
                started.elapsed().as_millis()
            ))
            .with_hint(
                "on a cluster: a replica is behind or the DDL is still queued (see system.distributed_ddl_queue); \
                 run apply again once it caught up. On one node: something else changed it at the same time",
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

impl Handle {
    /// Waits until the server shows `r` as the plan wants it (databases, tables, functions; the
    /// other kinds are verified by their own writes).
    pub(crate) async fn settle(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        let bound = if self.cluster.is_some() { LAG_BOUND } else { Duration::ZERO };
        let a = &r.attrs;
        let what = r.address.to_string();
        match kind {
            DATABASE => {
                let name = str_attr(a, "name");
                until(&what, bound, || async { Ok(self.databases([name]).await?.contains_key(name)) }).await
            }
            TABLE => {
                let want = self.desired_tables(&[(r, ddl::create_table(a, &self.on_cluster()))]).await?.remove(0);
                let key = (str_attr(a, "database"), str_attr(a, "name"));
                until(&what, bound, || async {
                    let live = self.tables([key]).await?.into_values().next();
                    Ok(live.flatten().is_some_and(|have| crate::apply::converged(&want, &have)))
                })
                .await
            }
            FUNCTION => {
                let want = self.canonical(&[(r, ddl::create_function(a, "", false))]).await?.remove(0);
                let name = str_attr(a, "name");
                until(&what, bound, || async {
                    Ok(self.functions([name]).await?.get(name).is_some_and(|have| *have == want))
                })
                .await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_lagging_read_is_retried_within_the_bound_then_fails_clearly() {
        let tries = AtomicU32::new(0);
        let lagging = || async { Ok(tries.fetch_add(1, Ordering::SeqCst) >= 2) };
        until("t", Duration::from_secs(5), lagging).await.unwrap();
        assert_eq!(tries.load(Ordering::SeqCst), 3, "two reads behind, the third shows it");

        let never = AtomicU32::new(0);
        let err = until("clickhouse_table.t", Duration::from_millis(200), || async {
            never.fetch_add(1, Ordering::SeqCst);
            Ok(false)
        })
        .await
        .unwrap_err();
        assert!(err.message.contains("clickhouse_table.t was changed, but reading it back"), "{err}");
        assert!((2..=4).contains(&never.load(Ordering::SeqCst)), "paused 50, 100 ms between tries");

        let once = AtomicU32::new(0);
        let one_node = until("t", Duration::ZERO, || async { Ok(once.fetch_add(1, Ordering::SeqCst) > 0) });
        assert!(one_node.await.is_err());
        assert_eq!(once.load(Ordering::SeqCst), 1, "one node: one read, no waiting");
    }
}

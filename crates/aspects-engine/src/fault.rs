//! Test hook: deterministic crash injection.
//!
//! With `ASPECTS_FAULT_ABORT_AFTER_WRITES=k` in the environment, the process aborts (like
//! `kill -9`: no cleanup, connections dropped by the OS) right after its k-th write to any
//! target, or to the secrets file when a rotation records or promotes its pending values.
//! Crash tests use it to stop an apply after every write in turn and prove the next apply
//! converges. Providers call [`after_write`] once per write statement they execute.
//! Unset (or not a positive integer), it costs one initialised-once load per write.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the hook.
pub const ABORT_AFTER_WRITES: &str = "ASPECTS_FAULT_ABORT_AFTER_WRITES";

static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Counts one completed write; aborts the process if it is the k-th and the hook is armed.
pub fn after_write() {
    let limit = LIMIT.get_or_init(|| std::env::var(ABORT_AFTER_WRITES).ok().and_then(|v| v.trim().parse().ok()));
    if let Some(k) = *limit
        && WRITES.fetch_add(1, Ordering::SeqCst) + 1 == k
    {
        eprintln!("{ABORT_AFTER_WRITES}={k}: aborting after write {k} (test hook)");
        std::process::abort();
    }
}

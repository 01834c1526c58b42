//! Test hook: deterministic crash injection.
//!
//! With `ASPECTS_FAULT_ABORT_AFTER_WRITES=k` in the environment, the process aborts (like
//! `kill -9`: no cleanup, connections dropped by the OS) right after its k-th write to any
//! target, or to the secrets file when a rotation records or promotes its pending values.
//! Crash tests use it to stop an apply after every write in turn and prove the next apply
//! converges. Providers call [`after_write`] once per write statement they execute.
//!
//! With `ASPECTS_FAULT_PAUSE_AFTER_WRITES=k:PATH`, the process instead waits right after its
//! k-th write until PATH exists: tests hold a run mid-apply, deterministically, while they look
//! at it (its lock, another run waiting for it).
//!
//! Unset (or malformed), each hook costs one initialised-once load per write.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable that arms the crash.
pub const ABORT_AFTER_WRITES: &str = "ASPECTS_FAULT_ABORT_AFTER_WRITES";
/// The environment variable that arms the pause: `k:PATH`.
pub const PAUSE_AFTER_WRITES: &str = "ASPECTS_FAULT_PAUSE_AFTER_WRITES";

struct Hooks {
    abort: Option<u64>,
    pause: Option<(u64, PathBuf)>,
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Counts one completed write; aborts the process, or waits, if it is the k-th and a hook is
/// armed.
pub fn after_write() {
    let hooks = HOOKS.get_or_init(|| Hooks {
        abort: std::env::var(ABORT_AFTER_WRITES).ok().and_then(|v| v.trim().parse().ok()),
        pause: std::env::var(PAUSE_AFTER_WRITES).ok().and_then(|v| {
            let (k, path) = v.split_once(':')?;
            Some((k.trim().parse().ok()?, PathBuf::from(path)))
        }),
    });
    if hooks.abort.is_none() && hooks.pause.is_none() {
        return;
    }
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    if hooks.abort == Some(n) {
        eprintln!("{ABORT_AFTER_WRITES}={n}: aborting after write {n} (test hook)");
        std::process::abort();
    }
    if let Some((k, path)) = &hooks.pause
        && *k == n
    {
        eprintln!("{PAUSE_AFTER_WRITES}: paused after write {n} until {} exists (test hook)", path.display());
        // Blocking on purpose: with --parallelism 1, nothing else of the run moves meanwhile.
        while !path.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

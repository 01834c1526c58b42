//! Taking every target's advisory lock before an apply, in a fixed order so two runs that share
//! targets cannot deadlock each other, and checking they are still held before each change.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, Instant};

use aspects_core::ProviderId;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::EngineError;
use crate::apply::Writers;
use crate::provider::{LockGuard, ProviderError};

pub struct Locks(Vec<(ProviderId, String, Box<dyn LockGuard>)>);

/// `waiting` hears, per busy target, who holds the lock while this run waits for it.
///
/// A lock with a lease (ClickHouse, Superset) taken early can run out while this run waits for a
/// later target's lock. Once all are held, each is checked (which renews a lease); when one was
/// lost meanwhile, everything is released and taken again, within the same `wait`.
pub async fn lock_all(
    writers: &Writers,
    holder: &str,
    wait: Duration,
    waiting: &(dyn Fn(String) + Send + Sync),
) -> Result<Locks, EngineError> {
    let deadline = Instant::now() + wait;
    loop {
        let mut held = Vec::new();
        // BTreeMap iteration order is the fixed order.
        for (id, w) in writers {
            match w.lock(holder, deadline.saturating_duration_since(Instant::now()), waiting).await {
                Ok(g) => held.push((id.clone(), w.target(), g)),
                Err(error) => {
                    Locks(held).release().await;
                    return Err(EngineError::Provider { provider: id.clone(), target: w.target(), error });
                }
            }
        }
        let mut lost = None;
        if held.len() > 1 {
            for (id, target, guard) in &held {
                if let Err(error) = guard.check().await {
                    lost = Some(EngineError::Provider { provider: id.clone(), target: target.clone(), error });
                    break;
                }
            }
        }
        let Some(error) = lost else { return Ok(Locks(held)) };
        Locks(held).release().await;
        if Instant::now() >= deadline {
            return Err(error);
        }
        tracing::debug!("a lock taken early was lost while waiting for a later one: taking them again");
    }
}

impl Locks {
    /// Fails when the lock of `provider`'s target is no longer held.
    pub async fn check(&self, provider: &ProviderId) -> Result<(), EngineError> {
        for (id, target, guard) in self.0.iter().filter(|(id, ..)| id == provider) {
            guard.check().await.map_err(|error| EngineError::LockLost {
                provider: id.clone(),
                target: target.clone(),
                error,
            })?;
        }
        Ok(())
    }

    pub async fn release(self) {
        for (.., g) in self.0.into_iter().rev() {
            g.release().await;
        }
    }
}

/// How a lease lock (a target without advisory locks: ClickHouse, Superset) waits while another
/// run holds it: it says so once, polls, and gives up at the deadline with the holder's name.
pub struct LeaseWait<'a> {
    what: String,
    wait: Duration,
    lease: Duration,
    deadline: Instant,
    told: bool,
    waiting: &'a (dyn Fn(String) + Send + Sync),
}

impl<'a> LeaseWait<'a> {
    /// `what` names the lock ("the aspects lock of ..."), `lease` is `lock_lease_seconds`.
    pub fn new(what: String, wait: Duration, lease: Duration, waiting: &'a (dyn Fn(String) + Send + Sync)) -> Self {
        Self { what, wait, lease, deadline: Instant::now() + wait, told: false, waiting }
    }

    /// The lock is held `by` someone else: waits a moment before the next look, or fails once the
    /// wait is over (a `locked` error naming the holder).
    pub async fn busy(&mut self, by: &str) -> Result<(), ProviderError> {
        let (what, secs) = (&self.what, self.wait.as_secs());
        if Instant::now() >= self.deadline {
            return Err(ProviderError::locked(format!("{what} is locked by {by} (waited {secs}s)")).with_hint(
                format!(
                    "another apply is running; wait for it or pass --lock-timeout DURATION; a killed run's lock frees \
                 itself after lock_lease_seconds ({}s) without a heartbeat",
                    self.lease.as_secs()
                ),
            ));
        }
        if !self.told {
            (self.waiting)(format!("{what} is locked by {by}; waiting up to {secs}s for it"));
            self.told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok(())
    }
}

/// Renews a lease lock in the background every quarter lease while an apply holds it, so a run
/// that spends longer than a lease between two changes (a confirmation prompt, a slow read of
/// another target) keeps it. `renew` is the provider's one renewal request. Stops when dropped.
pub struct Heartbeat {
    renewed: std::sync::Arc<std::sync::Mutex<tokio::time::Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// `sent`: when the renewal that took the lock was sent (by this run's clock; tokio's, so
    /// tests can pause it).
    pub fn start<F, Fut>(lease: Duration, sent: tokio::time::Instant, renew: F) -> Heartbeat
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let renewed = std::sync::Arc::new(std::sync::Mutex::new(sent));
        let last = renewed.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 4).await;
                // Timed from before the request: whoever sees the renewal sees it no earlier.
                let sent = tokio::time::Instant::now();
                match renew().await {
                    Ok(()) => *last.lock().unwrap_or_else(|e| e.into_inner()) = sent,
                    // The guard's `check` fails once no renewal succeeded for a lease.
                    Err(e) => tracing::debug!("lock heartbeat: {e}"),
                }
            }
        });
        Heartbeat { renewed, task }
    }

    /// How long ago the last renewal that succeeded was sent.
    pub fn since_renewed(&self) -> Duration {
        self.renewed.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Who holds a lock, as other runs are told: the account this process runs as (looked up by
/// uid, so an unset $USER under cron or systemd still names it), host and pid. [`holder_gone`]
/// reads it back.
pub fn holder() -> String {
    let uid = nix::unistd::Uid::current();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).ok())
        .unwrap_or_else(|| format!("uid {uid}"));
    format!("{user}@{} pid {} (aspects)", this_host(), std::process::id())
}

fn this_host() -> String {
    nix::unistd::gethostname().map_or_else(|_| "unknown-host".into(), |h| h.to_string_lossy().into_owned())
}

/// Whether `holder` (as [`holder`] wrote it) is a process on this host that has exited. Its lock
/// is then on its way out: the server frees it once it notices the closed connection, which
/// right after a crash may not have happened yet. A reused pid counts as alive (the safe side).
pub fn holder_gone(holder: &str) -> bool {
    let Some((who, rest)) = holder.split_once(" pid ") else { return false };
    let host = who.rsplit_once('@').map_or("", |(_, h)| h);
    let Some(pid) = rest.split(' ').next().and_then(|p| p.parse::<i32>().ok()) else { return false };
    host == this_host() && pid > 0 && kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
}

/// The lock of a local system (files, exec): an exclusive `flock` on `path`, whose folder is
/// created 0700. The kernel drops it when the process dies, so a killed apply never leaves it
/// stuck; the file names the holder while it is held.
pub async fn flock(
    path: &Path,
    holder: &str,
    wait: Duration,
    waiting: &(dyn Fn(String) + Send + Sync),
) -> Result<Box<dyn LockGuard>, ProviderError> {
    let err = |e: std::io::Error| ProviderError::new(format!("locking {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    }
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(err)?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let who = std::fs::read_to_string(path).unwrap_or_default();
                if start.elapsed() >= wait {
                    return Err(ProviderError::locked(format!(
                        "{} is locked by {} (for {}s)",
                        path.display(),
                        who.trim(),
                        start.elapsed().as_secs()
                    )));
                }
                if !told {
                    waiting(who.trim().to_owned());
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
    }
    file.set_len(0).and_then(|()| file.write_all(holder.as_bytes())).map_err(err)?;
    Ok(Box::new(FileLock(file)))
}

/// The held `flock`; the kernel keeps it as long as the file is open.
struct FileLock(std::fs::File);

#[async_trait::async_trait]
impl LockGuard for FileLock {
    async fn check(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn release(self: Box<Self>) {
        let _ = self.0.set_len(0);
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn a_holder_is_gone_only_when_its_process_on_this_host_has_exited() {
        let me = holder();
        assert!(me.contains(&format!("pid {} (aspects)", std::process::id())), "{me}");
        assert!(!holder_gone(&me), "this process is alive");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let exited = me.replace(&format!("pid {} ", std::process::id()), &format!("pid {pid} "));
        assert!(holder_gone(&exited), "{exited}");
        let elsewhere = exited.replace(&format!("@{} ", this_host()), "@some-other-host ");
        assert!(!holder_gone(&elsewhere), "a process on another host cannot be checked: {elsewhere}");
        assert!(!holder_gone("another session"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_heartbeat_renews_every_quarter_lease_until_dropped_and_tells_its_age() {
        let (beats, ok) = (Arc::new(AtomicU32::new(0)), Arc::new(std::sync::atomic::AtomicBool::new(true)));
        let (b, o) = (beats.clone(), ok.clone());
        let lease = Duration::from_secs(40);
        let hb = Heartbeat::start(lease, tokio::time::Instant::now(), move || {
            let (b, o) = (b.clone(), o.clone());
            async move {
                b.fetch_add(1, Ordering::SeqCst);
                if o.load(Ordering::SeqCst) { Ok(()) } else { Err("refused".into()) }
            }
        });
        tokio::time::sleep(Duration::from_secs(41)).await;
        assert_eq!(beats.load(Ordering::SeqCst), 4, "one beat per 10 s");
        assert!(hb.since_renewed() < Duration::from_secs(2));
        // Failed renewals do not count: the age grows until the guard gives up.
        ok.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert!(hb.since_renewed() >= Duration::from_secs(39));
        drop(hb);
        let before = beats.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(beats.load(Ordering::SeqCst), before, "stopped when dropped");
    }
}

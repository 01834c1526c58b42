//! The handles: settings from `[providers.exec]`, reading a step (running its check), applying
//! one (running its command, then the check again), and the lock (the engine's `flock`).
//!
//! Plan handles run checks only: the command is reachable from `ProviderWrite::apply` alone,
//! and a handle made by `connect_read` refuses it besides.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_core::value::str_list;
use aspects_core::{Action, Change, KindSchema, Live, Orphan, ProviderConfig, Redactor, Resource, SystemSchema, Value};
use aspects_engine::fault;
use aspects_engine::ownership::fill_defaults;
use aspects_engine::provider::{Connector, LockGuard, ProviderError, ProviderRead, ProviderWrite, desired_for};
use async_trait::async_trait;
use tokio::task::JoinSet;

use crate::run::{self, Finished};
use crate::schema::{self, DEFAULT_TIMEOUT, STATUS, UP_TO_DATE};

/// Checks run at once while planning: they only read, but each may start an interpreter.
const CHECKS_AT_ONCE: usize = 4;

/// The exec system: register it with the engine.
pub struct Exec;

#[async_trait]
impl Connector for Exec {
    fn schema(&self) -> SystemSchema {
        schema::schema()
    }

    async fn connect_read(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderRead>, ProviderError> {
        Ok(Arc::new(Handle::new(config, deployment, false)))
    }

    async fn connect_write(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderWrite>, ProviderError> {
        Ok(Arc::new(Handle::new(config, deployment, true)))
    }
}

pub struct Handle {
    working_dir: PathBuf,
    env: Vec<(String, Value)>,
    timeout: i64,
    lock_path: PathBuf,
    max_concurrency: usize,
    runs: Arc<AtomicU64>,
    writable: bool,
}

/// The folder of the plan file an origin (`file:line:col`) points into, made absolute.
fn plan_dir(origin: &str) -> PathBuf {
    let file = origin.rsplitn(3, ':').nth(2).unwrap_or_default();
    let dir = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

/// `path` relative to the plan file `origin` points into, unless absolute.
fn from_plan(origin: &str, path: &str) -> PathBuf {
    plan_dir(origin).join(path)
}

impl Handle {
    fn new(config: &ProviderConfig, deployment: &str, writable: bool) -> Self {
        let get = |name: &str| config.attrs.get(name);
        let working_dir = match get("working_dir").and_then(Value::as_str) {
            Some(d) => from_plan(&config.origin, d),
            None => plan_dir(&config.origin),
        };
        let lock_dir = match get("lock_dir").and_then(Value::as_str) {
            Some(d) => from_plan(&config.origin, d),
            None => plan_dir(&config.origin).join(".aspects"),
        };
        let int = |name: &str| match get(name) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        Self {
            working_dir,
            env: match get("env") {
                Some(Value::Map(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                _ => Vec::new(),
            },
            timeout: int("timeout").unwrap_or(DEFAULT_TIMEOUT),
            lock_path: lock_dir.join(format!("exec-{deployment}.lock")),
            max_concurrency: int("max_concurrency").and_then(|n| usize::try_from(n).ok()).unwrap_or(1),
            runs: Arc::new(AtomicU64::new(0)),
            writable,
        }
    }

    /// Everything one step needs to run, owned, so checks can run on tasks of their own.
    fn step(&self, r: &Resource) -> Step {
        let mut env = self.env.clone();
        if let Some(Value::Map(own)) = r.get("env") {
            env.retain(|(k, _)| !own.contains_key(k));
            env.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let secrets = env.iter().filter_map(|(_, v)| v.as_secret().cloned()).collect::<Vec<_>>();
        let env = env
            .into_iter()
            .map(|(k, v)| {
                let text = match &v {
                    Value::Sensitive(s) => s.expose().to_owned(),
                    Value::Str(s) => s.clone(),
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
        let dir = match r.str("working_dir") {
            Some(d) => from_plan(r.origin_of("working_dir"), d),
            None => self.working_dir.clone(),
        };
        let seconds = match r.get("timeout") {
            Some(Value::Int(n)) => *n,
            _ => self.timeout,
        };
        Step {
            address: r.address.to_string(),
            check_at: r.origin_of("check").to_owned(),
            command_at: r.origin_of("command").to_owned(),
            command: str_list(r.get("command")).into_iter().map(str::to_owned).collect(),
            check: str_list(r.get("check")).into_iter().map(str::to_owned).collect(),
            env,
            dir,
            timeout: Duration::from_secs(u64::try_from(seconds).unwrap_or(1)),
            redactor: Redactor::new(secrets),
            runs: self.runs.clone(),
        }
    }
}

/// The check's answer.
enum Verdict {
    UpToDate,
    /// Why, as the plan shows it: `needed (check exited 1: 3 migrations pending)`.
    Needed(String),
}

struct Step {
    address: String,
    check_at: String,
    command_at: String,
    command: Vec<String>,
    check: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    timeout: Duration,
    redactor: Redactor,
    runs: Arc<AtomicU64>,
}

impl Step {
    async fn run(&self, argv: &[String]) -> Result<Finished, String> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        run::run(&argv, &self.env, &self.dir, self.timeout).await.map_err(|e| self.redactor.scrub(&e))
    }

    /// `file:line:col: exec.x.check: `program` WHAT`, with the output's tail.
    fn failed(&self, at: &str, attr: &str, argv: &[String], what: &str, tail: &str) -> String {
        format!("{at}: {}.{attr}: `{}` {what}{tail}", self.address, self.redactor.scrub(&argv[0]))
    }

    async fn check(&self) -> Result<Verdict, ProviderError> {
        let fail = |what: &str, tail: &str| {
            ProviderError::new(self.failed(&self.check_at, "check", &self.check, what, tail)).with_hint(format!(
                "a check exits 0 when the step is done and 1 when it is needed; anything else is an error. \
                 Run it by hand in {}",
                self.dir.display()
            ))
        };
        let done = self.run(&self.check).await.map_err(|e| fail(&e, ""))?;
        match done.status.code() {
            Some(0) => Ok(Verdict::UpToDate),
            Some(1) => Ok(Verdict::Needed(match done.first_line(&self.redactor) {
                Some(line) => format!("needed (check exited 1: {line})"),
                None => "needed (check exited 1)".to_owned(),
            })),
            _ => Err(fail(&done.how(), &done.tail(&self.redactor))),
        }
    }

    /// The command, then the check, which must now pass.
    async fn apply(&self) -> Result<(), ProviderError> {
        let fail = |what: &str, tail: &str| {
            ProviderError::new(self.failed(&self.command_at, "command", &self.command, what, tail))
                .with_hint("the step is still needed: the next plan checks again and apply runs it again")
        };
        let done = self.run(&self.command).await.map_err(|e| fail(&e, ""))?;
        if !done.status.success() {
            return Err(fail(
                &format!("{} after {:.1} s", done.how(), done.elapsed.as_secs_f64()),
                &done.tail(&self.redactor),
            ));
        }
        fault::after_write();
        match self.check().await? {
            Verdict::UpToDate => Ok(()),
            Verdict::Needed(why) => Err(ProviderError::new(format!(
                "{}: {}: the command succeeded but the check still says the step is {why}",
                self.command_at, self.address
            ))
            .with_hint(
                "the command does not do what the check tests, so every apply would run it again: fix the command \
                 or the check",
            )),
        }
    }
}

#[async_trait]
impl ProviderRead for Handle {
    fn target(&self) -> String {
        format!("commands in {}", self.working_dir.display())
    }

    fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    fn queries(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    fn normalise(&self, kind: &KindSchema, resource: &mut Resource) {
        fill_defaults(kind, resource);
        resource.attrs.insert(STATUS.into(), Value::from(UP_TO_DATE));
    }

    /// Runs every check; a step is always there (nothing to create) and owned (nothing to
    /// adopt), and differs from the plan only when its check says it is needed: in `status`,
    /// and in `command`, which the plan then shows as what will run.
    async fn read(&self, _kind: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let gate = Arc::new(tokio::sync::Semaphore::new(CHECKS_AT_ONCE));
        let mut checks = JoinSet::new();
        for (i, r) in desired.iter().enumerate() {
            let (step, gate) = (self.step(r), gate.clone());
            checks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                (i, step.check().await)
            });
        }
        let mut found: Vec<Option<Live>> = vec![None; desired.len()];
        let mut first_error = None;
        while let Some(joined) = checks.join_next().await {
            let (i, verdict) = joined.map_err(|e| ProviderError::new(e.to_string()))?;
            match verdict {
                Ok(v) => {
                    let mut attrs = desired[i].attrs.clone();
                    if let Verdict::Needed(why) = v {
                        attrs.insert(STATUS.into(), Value::Str(why));
                        // Absent on the live side, so the plan shows what will run.
                        attrs.remove("command");
                    }
                    found[i] = Some(Live { attrs, owned: true, ..Live::default() });
                }
                Err(e) => {
                    // Reported in plan-file order, whichever check finished first.
                    first_error = match first_error {
                        Some((j, prev)) if j < i => Some((j, prev)),
                        _ => Some((i, e)),
                    };
                }
            }
        }
        match first_error {
            Some((_, e)) => Err(e),
            None => Ok(found),
        }
    }

    /// A step that left the plan is not undone: there is nothing it owns.
    async fn orphans(&self, _desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ProviderWrite for Handle {
    async fn apply(
        &self,
        _kind: &KindSchema,
        change: &Change,
        desired: Option<&Resource>,
    ) -> Result<(), ProviderError> {
        if !self.writable {
            return Err(ProviderError::new(format!("{}: a plan handle never runs a command", change.address)));
        }
        match change.action {
            Action::NoOp | Action::Delete | Action::Release => Ok(()),
            _ => self.step(desired_for(change, desired)?).apply().await,
        }
    }

    async fn prune(&self, _desired: &[Resource]) -> Result<usize, ProviderError> {
        Ok(0)
    }

    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Box<dyn LockGuard>, ProviderError> {
        aspects_engine::lock::flock(&self.lock_path, holder, wait, waiting).await
    }
}

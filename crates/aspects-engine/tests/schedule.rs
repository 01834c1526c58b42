//! The executor's ordering, limits and failure handling. The provider here is an in-memory
//! recorder, not a stand-in for a real system: it exists to make scheduling observable (which op
//! ran when, how many at once) and to fail on demand. Real systems are tested end to end in
//! tests/ against the real services.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aspects_core::graph::Graph;
use aspects_core::{
    Action, Address, AttrSchema, AttrType, Change, Desired, KindSchema, Live, Orphan, Redactor, Registry, Resource,
    Secret, SystemSchema, Value,
};
use aspects_engine::EngineError;
use aspects_engine::apply::{ApplyOptions, Event, Writers, apply};
use aspects_engine::lock::lock_all;
use aspects_engine::plan::{Goal, Readers, plan};
use aspects_engine::provider::{LockGuard, ProviderError, ProviderRead, ProviderWrite, SecretRotation};
use aspects_engine::rotate::{Role, apply_rotating, rotations};
use async_trait::async_trait;

#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
    running: AtomicUsize,
    peak: AtomicUsize,
    fail: BTreeSet<String>,
    limit: usize,
    /// Lock checks that succeed before the lock counts as lost (None: never lost).
    lock_lives: Option<usize>,
    /// Answers `SecretRotation::Dual`: credentials can hold two secrets.
    dual: bool,
}

/// A lock that is lost after a number of checks, as a lock whose connection the server killed.
struct Gate(Arc<AtomicUsize>);

#[async_trait]
impl LockGuard for Gate {
    async fn check(&self) -> Result<(), ProviderError> {
        match self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Ok(()),
            Err(_) => Err(ProviderError::new("the connection holding the lock is gone (s3cr3t)")),
        }
    }
    async fn release(self: Box<Self>) {}
}

#[async_trait]
impl ProviderRead for Recorder {
    fn target(&self) -> String {
        "memory".into()
    }
    fn max_concurrency(&self) -> usize {
        self.limit
    }
    fn queries(&self) -> u64 {
        0
    }
    fn normalise(&self, _: &KindSchema, _: &mut Resource) {}
    fn secret_rotation(&self, _: &KindSchema) -> SecretRotation {
        if self.dual { SecretRotation::Dual } else { SecretRotation::Replace }
    }
    async fn read(&self, _: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        Ok(desired.iter().map(|_| None).collect())
    }
    async fn orphans(&self, _: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        Ok(vec![])
    }
}

#[async_trait]
impl ProviderWrite for Recorder {
    async fn apply(&self, _: &KindSchema, change: &Change, _: Option<&Resource>) -> Result<(), ProviderError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let name = change.address.name.clone();
        self.log.lock().unwrap().push(name.clone());
        if self.fail.contains(&name) {
            return Err(ProviderError::new("boom: password s3cr3t rejected"));
        }
        Ok(())
    }
    async fn apply_keeping_old_secret(&self, k: &KindSchema, c: &Change, d: &Resource) -> Result<(), ProviderError> {
        self.log.lock().unwrap().push(format!("keep-old:{}", c.address.name));
        self.apply(k, c, Some(d)).await
    }
    async fn discard_old_secret(&self, _: &KindSchema, d: &Resource) -> Result<(), ProviderError> {
        self.log.lock().unwrap().push(format!("discard-old:{}", d.address.name));
        Ok(())
    }
    async fn prune(&self, _: &[Resource]) -> Result<usize, ProviderError> {
        Ok(0)
    }
    async fn lock(
        &self,
        _: &str,
        _: Duration,
        _: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Box<dyn LockGuard>, ProviderError> {
        Ok(Box::new(Gate(Arc::new(AtomicUsize::new(self.lock_lives.unwrap_or(usize::MAX))))))
    }
}

fn registry() -> Registry {
    Registry::default().with(SystemSchema {
        system: "m",
        provider_attrs: vec![],
        kinds: vec![KindSchema {
            kind: "m_thing",
            attrs: vec![AttrSchema::new("name", AttrType::String, "").identity()],
            data_bearing: false,
            rank: 0,
            doc: "",
            ..Default::default()
        }],
    })
}

/// Everything an apply of `resources` on one recorder needs, planned from nothing.
struct Planned {
    graph: Graph,
    rec: Arc<Recorder>,
    readers: Readers,
    writers: Writers,
    reg: Registry,
    planned: aspects_engine::plan::Planned,
}

async fn planned(resources: BTreeMap<Address, Resource>, rec: Recorder) -> Planned {
    let graph = Graph::new(resources.iter().map(|(a, r)| (a, &*r.depends_on))).unwrap();
    let desired = Desired { deployment: "t".into(), providers: BTreeMap::new(), resources };
    let rec = Arc::new(rec);
    let readers: Readers = [("m".to_owned(), rec.clone() as Arc<dyn ProviderRead>)].into();
    let writers: Writers = [("m".to_owned(), rec.clone() as Arc<dyn ProviderWrite>)].into();
    let reg = registry();
    let planned = plan(&desired, &graph, &reg, &readers, None, Goal::Converge).await.unwrap();
    Planned { graph, rec, readers, writers, reg, planned }
}

/// `spec`: (name, dependencies) of m_thing resources.
async fn run(spec: &[(&str, &[&str])], fail: &[&str], limit: usize, parallelism: usize) -> (Arc<Recorder>, Vec<Event>) {
    let rec = Recorder { fail: fail.iter().map(|s| s.to_string()).collect(), limit, ..Default::default() };
    let (rec, events, result) = run_with(spec, rec, parallelism).await;
    result.unwrap();
    (rec, events)
}

async fn run_with(
    spec: &[(&str, &[&str])],
    rec: Recorder,
    parallelism: usize,
) -> (Arc<Recorder>, Vec<Event>, Result<aspects_engine::apply::Report, EngineError>) {
    let addr = |n: &str| Address::new("m_thing", n);
    let resources: BTreeMap<Address, Resource> = spec
        .iter()
        .map(|(n, deps)| {
            let r = Resource {
                address: addr(n),
                provider: "m".into(),
                attrs: [("name".to_owned(), Value::from(*n))].into(),
                depends_on: std::sync::Arc::new(deps.iter().map(|d| addr(d)).collect()),
                origin: "test".into(),
                ..Default::default()
            };
            (addr(n), r)
        })
        .collect();
    let Planned { graph, rec, writers, reg, planned, .. } = planned(resources, rec).await;
    assert!(planned.plan.changes.iter().all(|c| c.action == Action::Create));
    let locks = lock_all(&writers, "test", Duration::ZERO, &|_| {}).await.unwrap();
    let mut events = Vec::new();
    let redactor = Redactor::new([Secret::new("s3cr3t")]);
    let opts = ApplyOptions {
        parallelism,
        allow_destroy: false,
        redactor: &redactor,
        journal: None,
        locks: Some(&locks),
        keep_old_secret: Default::default(),
    };
    let mut sink = |e: &Event| events.push(e.clone());
    let result = apply(&planned, &graph, &reg, &writers, &opts, &mut sink).await;
    (rec, events, result)
}

#[tokio::test]
async fn a_lost_lock_stops_the_apply_before_its_next_write() {
    let many: Vec<(String, Vec<&str>)> = (0..8).map(|i| (format!("r{i}"), vec![])).collect();
    let spec: Vec<(&str, &[&str])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    for lives in [0, 1, 3] {
        let rec = Recorder { limit: 1, lock_lives: Some(lives), ..Default::default() };
        let (rec, events, result) = run_with(&spec, rec, 1).await;
        assert_eq!(rec.log.lock().unwrap().len(), lives, "exactly the writes before the loss happened");
        let err = result.expect_err("the apply reports the lost lock");
        assert!(matches!(err, EngineError::LockLost { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "m (memory): the deployment lock was lost: the connection holding the lock is gone ((sensitive))"
        );
        let skipped = events.iter().filter(|e| matches!(e, Event::Skipped { .. })).count();
        assert_eq!(skipped, 8 - lives, "everything else is skipped, none started");
        assert!(!events.iter().any(|e| matches!(e, Event::Failed { .. })));
    }
}

#[tokio::test]
async fn dependencies_run_first() {
    let (rec, _) = run(&[("c", &["b"]), ("b", &["a"]), ("a", &[])], &[], 8, 8).await;
    assert_eq!(*rec.log.lock().unwrap(), ["a", "b", "c"]);
}

#[tokio::test]
async fn a_failure_skips_its_dependents_and_lets_independent_branches_finish() {
    let (rec, events) = run(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("x", &[]), ("y", &["x"])], &["a"], 8, 8).await;
    let log = rec.log.lock().unwrap().clone();
    assert!(log.contains(&"x".to_owned()) && log.contains(&"y".to_owned()), "{log:?}");
    assert!(!log.contains(&"b".to_owned()) && !log.contains(&"c".to_owned()), "{log:?}");
    let skipped = skipped(&events);
    assert_eq!(skipped, ["m_thing.b: m_thing.a did not succeed", "m_thing.c: m_thing.a, m_thing.b did not succeed"]);
    let failed = events.iter().find_map(|e| match e {
        Event::Failed { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert_eq!(failed.as_deref(), Some("boom: password (sensitive) rejected"));
}

#[tokio::test]
async fn the_provider_limit_caps_concurrency_below_the_global_one() {
    let many: Vec<(String, Vec<&str>)> = (0..12).map(|i| (format!("r{i}"), vec![])).collect();
    let spec: Vec<(&str, &[&str])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let (rec, _) = run(&spec, &[], 2, 8).await;
    assert_eq!(rec.peak.load(Ordering::SeqCst), 2);
    let (rec, _) = run(&spec, &[], 8, 3).await;
    assert_eq!(rec.peak.load(Ordering::SeqCst), 3);
}

/// `address: because` of every skipped op.
fn skipped(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Skipped { address, because, .. } => Some(format!("{address}: {because}")),
            _ => None,
        })
        .collect()
}

/// Deletes of `m_thing` (rank 0) and `m_user` (rank 1), as orphans become them.
async fn delete_run(things: &[&str], users: &[&str], fail: &[&str]) -> (Arc<Recorder>, Vec<Event>) {
    let mut reg = registry();
    let thing = reg.kind("m_thing").unwrap().clone();
    let user = KindSchema { kind: "m_user", rank: 1, ..thing.clone() };
    reg = Registry::default().with(SystemSchema { system: "m", provider_attrs: vec![], kinds: vec![thing, user] });
    let mut changes = Vec::new();
    for (kind, names) in [("m_thing", things), ("m_user", users)] {
        for n in names {
            let identity: BTreeMap<String, Value> = [("name".to_owned(), Value::from(*n))].into();
            let orphan = Orphan {
                address: Address::new(kind, *n),
                identity: identity.clone(),
                attrs: identity,
                provider: "m".into(),
                reason: "not in the plan".into(),
                adopted: false,
            };
            changes.push(aspects_core::diff::delete(reg.kind(kind).unwrap(), &orphan));
        }
    }
    let planned = aspects_engine::plan::Planned {
        plan: aspects_core::Plan { deployment: "t".into(), changes, targets: None },
        resources: BTreeMap::new(),
    };
    let graph = Graph::new(std::iter::empty::<(&Address, &BTreeSet<Address>)>()).unwrap();
    let rec = Arc::new(Recorder { fail: fail.iter().map(|s| s.to_string()).collect(), limit: 8, ..Default::default() });
    let writers: Writers = [("m".to_owned(), rec.clone() as Arc<dyn ProviderWrite>)].into();
    let redactor = Redactor::default();
    let opts = ApplyOptions {
        parallelism: 8,
        allow_destroy: true,
        redactor: &redactor,
        journal: None,
        locks: None,
        keep_old_secret: Default::default(),
    };
    let mut events = Vec::new();
    let mut sink = |e: &Event| events.push(e.clone());
    apply(&planned, &graph, &reg, &writers, &opts, &mut sink).await.unwrap();
    (rec, events)
}

#[tokio::test]
async fn deletes_run_highest_rank_first_and_a_failure_skips_the_lower_ranks() {
    let (rec, _) = delete_run(&["t1", "t2"], &["u1", "u2", "u3"], &[]).await;
    let log = rec.log.lock().unwrap().clone();
    let first_thing = log.iter().position(|n| n.starts_with('t')).unwrap();
    assert!(log[..first_thing].len() == 3 && log[..first_thing].iter().all(|n| n.starts_with('u')), "{log:?}");

    let (rec, events) = delete_run(&["t1", "t2"], &["u1", "u2"], &["u2"]).await;
    let log = rec.log.lock().unwrap().clone();
    assert!(!log.iter().any(|n| n.starts_with('t')), "no lower-rank delete ran: {log:?}");
    let skipped = skipped(&events);
    assert_eq!(skipped, ["m_thing.t1: m_user.u2 did not succeed", "m_thing.t2: m_user.u2 did not succeed"]);
}

/// Secret `s` is checked by `cred` and presented by `client` (no edge between them in the plan
/// files); `other` does not use it.
async fn rotate_with(rec: Recorder) -> (Arc<Recorder>, aspects_engine::rotate::RotationReport, Vec<String>) {
    let addr = |n: &str| Address::new("m_thing", n);
    let secret = BTreeSet::from(["s".to_owned()]);
    let resource = |n: &str, secrets: &BTreeSet<String>, credential: bool| Resource {
        address: addr(n),
        provider: "m".into(),
        attrs: [("name".to_owned(), Value::from(n))].into(),
        origin: "test".into(),
        secrets: secrets.clone().into(),
        credential_secrets: if credential { secrets.clone() } else { BTreeSet::new() }.into(),
        ..Default::default()
    };
    let resources: BTreeMap<Address, Resource> = [
        resource("client", &secret, false),
        resource("cred", &secret, true),
        resource("other", &BTreeSet::new(), false),
    ]
    .into_iter()
    .map(|r| (r.address.clone(), r))
    .collect();
    let Planned { graph, rec, readers, writers, reg, planned } = planned(resources, rec).await;
    let found = rotations(&["s".to_owned()], &planned, &graph, &reg, &readers);
    let roles: Vec<(String, Role)> = found[0].consumers.iter().map(|c| (c.address.name.clone(), c.role)).collect();
    let mode = if rec.dual { SecretRotation::Dual } else { SecretRotation::Replace };
    assert_eq!(roles, [("cred".into(), Role::Credential(mode)), ("client".into(), Role::Client)]);
    assert_eq!(found[0].zero_downtime(), rec.dual);
    let redactor = Redactor::new([Secret::new("s3cr3t")]);
    let opts = ApplyOptions {
        parallelism: 8,
        allow_destroy: false,
        redactor: &redactor,
        journal: None,
        locks: None,
        keep_old_secret: Default::default(),
    };
    let mut events = Vec::new();
    let mut sink = |e: &Event| {
        events.push(match e {
            Event::Started { address, .. } => format!("start {address}"),
            Event::Done { address, .. } => format!("done {address}"),
            other => format!("{other:?}"),
        })
    };
    let report = apply_rotating(&planned, &graph, &reg, &writers, &opts, &found, &mut sink).await.unwrap();
    (rec, report, events)
}

/// Clients start only once every credential of their secret is done (they would run together
/// otherwise: the plan files draw no edge between them).
fn assert_credential_first(events: &[String]) {
    let at = |e: &str| events.iter().position(|l| l == e).unwrap_or_else(|| panic!("{e} missing from {events:?}"));
    assert!(at("done m_thing.cred") < at("start m_thing.client"), "{events:?}");
}

#[tokio::test]
async fn a_dual_rotation_adds_the_new_secret_moves_every_client_then_discards_the_old_one() {
    let (rec, report, events) = rotate_with(Recorder { limit: 8, dual: true, ..Default::default() }).await;
    assert_credential_first(&events);
    let log = rec.log.lock().unwrap().clone();
    let at = |e: &str| log.iter().position(|l| l == e).unwrap_or_else(|| panic!("{e} missing from {log:?}"));
    assert!(at("keep-old:cred") < at("cred"), "the credential keeps its old secret: {log:?}");
    assert!(at("cred") < at("client"), "clients move only once the credential accepts the new secret");
    assert_eq!(at("discard-old:cred"), log.len() - 1, "the old secret goes last: {log:?}");
    assert!(!log.contains(&"keep-old:other".to_owned()) && !log.contains(&"keep-old:client".to_owned()));
    assert_eq!(report.converged, ["s"]);
    assert_eq!(report.transitions.len(), 1);
    assert_eq!(report.transitions[0].rotation, SecretRotation::Dual);
}

#[tokio::test]
async fn a_replace_rotation_orders_credentials_first_and_a_failed_client_keeps_it_pending() {
    let (rec, report, events) = rotate_with(Recorder { limit: 8, ..Default::default() }).await;
    assert_credential_first(&events);
    let log = rec.log.lock().unwrap().clone();
    assert!(!log.iter().any(|l| l.contains("-old:")), "no dual calls for a one-secret credential: {log:?}");
    assert_eq!(report.converged, ["s"]);

    let failing = Recorder { limit: 8, dual: true, fail: ["client".to_owned()].into(), ..Default::default() };
    let (rec, report, _) = rotate_with(failing).await;
    let log = rec.log.lock().unwrap().clone();
    assert!(!log.iter().any(|l| l.starts_with("discard-old")), "the old secret stays while a client lags: {log:?}");
    assert!(report.converged.is_empty());
    assert_eq!(report.unfinished, [("s".to_owned(), vec!["m_thing.client".to_owned()])]);
}

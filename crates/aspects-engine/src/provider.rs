//! The seam every system plugs into. A provider crate implements [`Connector`] and the two handle
//! traits; the engine never names a system. Planning gets a [`ProviderRead`] handle only, so
//! `plan` and `drift` cannot mutate anything by construction.

use std::sync::Arc;
use std::time::Duration;

use aspects_core::{Change, KindSchema, Live, Orphan, ProviderConfig, Resource, SystemSchema};
use async_trait::async_trait;

/// A provider failure. Providers must keep secret material (plaintext or derived hashes) out of
/// `message`; the engine also scrubs every known secret value before anything is printed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub message: String,
    pub hint: Option<String>,
    /// Another run holds the target's lock.
    pub locked: bool,
}

impl ProviderError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), hint: None, locked: false }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn locked(message: impl Into<String>) -> Self {
        Self { locked: true, ..Self::new(message) }
    }
}

/// Why a desired resource cannot be carried out as written (the target would refuse it), found
/// by [`ProviderRead::check`] before anything is read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The attribute at fault, which places the message in the plan file.
    pub attr: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Invalid {
    pub fn new(attr: &str, message: impl Into<String>) -> Self {
        Self { attr: Some(attr.to_owned()), message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// How a credential takes a new secret during a rotation (`aspects rotate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRotation {
    /// The credential holds one secret: the old one stops working the moment the new one is
    /// set, so its clients fail until they are moved too (MariaDB). The engine keeps that
    /// window as short as the graph allows and journals how long it lasted.
    Replace,
    /// The credential can hold the old and the new secret at once (MySQL 8 `RETAIN CURRENT
    /// PASSWORD`, ClickHouse's several authentication methods, two entries in Ralph's auth
    /// file): the new one is added, every client moves, and only then is the old one dropped.
    Dual,
}

/// Reading live state. Every method is side-effect free in the target.
#[async_trait]
pub trait ProviderRead: Send + Sync {
    /// Where this provider points, for messages (never with credentials).
    fn target(&self) -> String;

    /// How many operations of this provider may run at once during apply.
    fn max_concurrency(&self) -> usize;

    /// Statements/requests issued so far (benchmarks assert this does not grow with N).
    fn queries(&self) -> u64;

    /// Puts a desired resource in canonical form, with the same function that normalises live
    /// reads, so that an apply followed by a plan is empty.
    fn normalise(&self, kind: &KindSchema, resource: &mut Resource);

    /// Learns what `check` needs beyond what connecting learnt, given this provider's
    /// normalised desired resources (Superset reads its permission catalogue only when a role
    /// lists permissions). The planner calls it once, before `check`.
    async fn prepare(&self, _desired: &[Resource]) -> Result<(), ProviderError> {
        Ok(())
    }

    /// What the target would refuse in a normalised desired resource, judged with what the
    /// provider learnt at connect time or in `prepare` (character sets, privilege levels, its
    /// own account).
    /// The planner calls it for every resource before any read, so bad input never fails
    /// half-way through an apply.
    fn check(&self, _kind: &KindSchema, _resource: &Resource) -> Vec<Invalid> {
        Vec::new()
    }

    /// How resources of `kind` whose write-only secret attributes are credentials take a new
    /// secret: see [`SecretRotation`]. A provider answering `Dual` implements
    /// [`ProviderWrite::apply_keeping_old_secret`] and [`ProviderWrite::discard_old_secret`].
    fn secret_rotation(&self, _kind: &KindSchema) -> SecretRotation {
        SecretRotation::Replace
    }

    /// Reads every desired resource of one kind in a constant number of queries. Returns one
    /// entry per desired resource, in order: `None` when the object does not exist.
    async fn read(&self, kind: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError>;

    /// Objects this deployment owns that `desired` (all of this provider's resources) does not
    /// name, plus anything a managed object carries beyond the plan (a managed user's extra
    /// privileges). Never objects it does not own.
    async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError>;
}

/// Changing live state. Only `apply` gets this handle.
#[async_trait]
pub trait ProviderWrite: ProviderRead {
    /// Carries out one planned change. `desired` is the resource for create/update/adopt/replace
    /// and `None` for delete and release. Must be safe to repeat after a crash at any point:
    /// claim ownership before creating (and confirm it after), treat "already gone" as done when
    /// deleting. A release drops the ownership record and leaves the object alone.
    async fn apply(&self, kind: &KindSchema, change: &Change, desired: Option<&Resource>) -> Result<(), ProviderError>;

    /// During a rotation, for a credential whose provider answered [`SecretRotation::Dual`]:
    /// carries out `change` so that the credential's current secret stays valid beside the new
    /// one (MySQL 8: `RETAIN CURRENT PASSWORD`). Same crash rules as [`ProviderWrite::apply`].
    async fn apply_keeping_old_secret(
        &self,
        kind: &KindSchema,
        change: &Change,
        desired: &Resource,
    ) -> Result<(), ProviderError> {
        self.apply(kind, change, Some(desired)).await
    }

    /// The end of a `Dual` rotation, once every client uses the new secret: the old secret stops
    /// working (MySQL 8: `DISCARD OLD PASSWORD`). Must succeed when there is no old secret.
    async fn discard_old_secret(&self, _kind: &KindSchema, _desired: &Resource) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Drops this deployment's ownership records that prove nothing: the object is gone, or a
    /// create was claimed but never confirmed and `desired` no longer names it. Never touches an
    /// object, so it is not a planned change. Returns how many records went.
    async fn prune(&self, desired: &[Resource]) -> Result<usize, ProviderError>;

    /// Takes this deployment's advisory lock in the target, waiting up to `wait`; `waiting` is
    /// told once, with the holder, when the lock is busy and the wait begins. On timeout the
    /// error is `locked` and names the holder and how long it has held the lock.
    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Box<dyn LockGuard>, ProviderError>;
}

/// An error with its chain of causes ("error sending request: connection refused"), for
/// messages about a target that could not be reached. Callers strip URLs with queries first.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// The desired resource a change needs (create, update, adopt, replace), or the error saying
/// the engine passed none: one message for every provider.
pub fn desired_for<'r>(change: &Change, desired: Option<&'r Resource>) -> Result<&'r Resource, ProviderError> {
    desired.ok_or_else(|| {
        ProviderError::new(format!("{}: the engine passed no desired resource to {:?}", change.address, change.action))
    })
}

/// Held while an apply runs. Dropping the process releases it too (the target sees the
/// connection close), so a killed apply never leaves a stuck lock.
#[async_trait]
pub trait LockGuard: Send + Sync {
    /// Whether the lock is still held: the engine asks before every change and stops the apply
    /// when it is not (the target may have dropped the lock's connection, and another run may
    /// hold the lock now).
    async fn check(&self) -> Result<(), ProviderError>;

    async fn release(self: Box<Self>);
}

/// A system the binary knows: its schema and how to open read or write handles.
#[async_trait]
pub trait Connector: Send + Sync {
    fn schema(&self) -> SystemSchema;
    async fn connect_read(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderRead>, ProviderError>;
    async fn connect_write(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderWrite>, ProviderError>;
}

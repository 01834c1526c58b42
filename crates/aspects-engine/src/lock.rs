//! Taking every target's advisory lock before an apply, in a fixed order so two runs that share
//! targets cannot deadlock each other, and checking they are still held before each change.

use std::time::Duration;

use aspects_core::ProviderId;

use crate::EngineError;
use crate::apply::Writers;
use crate::provider::LockGuard;

pub struct Locks(Vec<(ProviderId, String, Box<dyn LockGuard>)>);

/// `waiting` hears, per busy target, who holds the lock while this run waits for it.
pub async fn lock_all(
    writers: &Writers,
    holder: &str,
    wait: Duration,
    waiting: &(dyn Fn(String) + Send + Sync),
) -> Result<Locks, EngineError> {
    let mut held = Vec::new();
    // BTreeMap iteration order is the fixed order.
    for (id, w) in writers {
        match w.lock(holder, wait, waiting).await {
            Ok(g) => held.push((id.clone(), w.target(), g)),
            Err(error) => {
                Locks(held).release().await;
                return Err(EngineError::Provider { provider: id.clone(), target: w.target(), error });
            }
        }
    }
    Ok(Locks(held))
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

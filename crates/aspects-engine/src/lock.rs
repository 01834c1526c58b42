//! Taking every target's advisory lock before an apply, in a fixed order so two runs that share
//! targets cannot deadlock each other.

use std::time::Duration;

use crate::EngineError;
use crate::apply::Writers;
use crate::provider::LockGuard;

pub struct Locks(Vec<Box<dyn LockGuard>>);

pub async fn lock_all(writers: &Writers, holder: &str, wait: Duration) -> Result<Locks, EngineError> {
    let mut held = Vec::new();
    // BTreeMap iteration order is the fixed order.
    for (id, w) in writers {
        match w.lock(holder, wait).await {
            Ok(g) => held.push(g),
            Err(error) => {
                Locks(held).release().await;
                return Err(EngineError::Provider { provider: id.clone(), target: w.target(), error });
            }
        }
    }
    Ok(Locks(held))
}

impl Locks {
    pub async fn release(self) {
        for g in self.0.into_iter().rev() {
            g.release().await;
        }
    }
}

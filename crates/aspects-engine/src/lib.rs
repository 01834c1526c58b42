//! The executor. Reads live state through providers (batched), plans, applies in topological
//! order with bounded parallelism, takes the targets' advisory locks and keeps the journal.
//! Knows no system by name: everything system-specific sits behind [`provider`].

pub mod apply;
pub mod fault;
pub mod journal;
pub mod lock;
pub mod plan;
pub mod provider;

pub use provider::{Connector, ProviderError, ProviderRead, ProviderWrite};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{provider} ({target}): {error}")]
    Provider { provider: String, target: String, error: ProviderError },
    #[error("unknown --target {}", .0.join(", "))]
    UnknownTarget(Vec<String>),
    #[error("the plan destroys data-bearing {}", .0.join(", "))]
    DestroyProtected(Vec<String>),
    #[error("another deployment owns {}", .0.join(", "))]
    OwnedElsewhere(Vec<String>),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::Provider { error, .. } => error.hint.clone(),
            EngineError::UnknownTarget(_) => {
                Some("targets are resource addresses as `aspects plan` prints them (KIND.NAME)".into())
            }
            EngineError::DestroyProtected(_) => {
                Some("put them back in the plan file, or re-run with --allow-destroy if the data may go".into())
            }
            EngineError::OwnedElsewhere(_) => Some(
                "two deployments cannot manage one object (either could destroy it); give this one its own names, \
                 or remove the resource from one of the plans"
                    .into(),
            ),
            EngineError::Internal(_) => Some("this is a bug in aspects; please report it with the journal".into()),
        }
    }

    pub fn is_locked(&self) -> bool {
        matches!(self, EngineError::Provider { error, .. } if error.locked)
    }
}

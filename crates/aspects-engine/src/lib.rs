//! The executor. Reads live state through providers (batched), plans, applies in topological
//! order with bounded parallelism, takes the targets' advisory locks and keeps the journal.
//! Knows no system by name: everything system-specific sits behind [`provider`].

pub mod apply;
pub mod fault;
pub mod journal;
pub mod lock;
pub mod ownership;
pub mod plan;
pub mod provider;
pub mod rotate;

pub use provider::{Connector, ProviderError, ProviderRead, ProviderWrite, SecretRotation};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{provider} ({target}): {error}")]
    Provider { provider: String, target: String, error: ProviderError },
    #[error("unknown --target {}", few(.0))]
    UnknownTarget(Vec<String>),
    #[error("the plan destroys data-bearing {}", few(.0))]
    DestroyProtected(Vec<String>),
    #[error("another deployment owns {}", few(.0))]
    OwnedElsewhere(Vec<String>),
    #[error("the target would refuse {}:\n{}", plural(.0.len()), .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{provider} ({target}): the deployment lock was lost: {error}")]
    LockLost { provider: String, target: String, error: ProviderError },
    #[error(
        "refusing to re-key {} from {}: this deployment owns {}, and {secrets_file} has no value for {}, so this run generated a new one",
        few(.addresses), secret_list(.secrets), if .addresses.len() == 1 { "it" } else { "them" },
        if .secrets.len() == 1 { "it" } else { "them" }
    )]
    NewSecrets { addresses: Vec<String>, secrets: Vec<String>, secrets_file: String },
    #[error("internal error: {0}")]
    Internal(String),
}

fn secret_list(secrets: &[String]) -> String {
    let names = secrets.iter().map(|s| format!("secrets.{s}")).collect::<Vec<_>>().join(", ");
    if secrets.len() == 1 { format!("secret {names}") } else { format!("secrets {names}") }
}

fn plural(n: usize) -> String {
    if n == 1 { "1 value of the plan".into() } else { format!("{n} values of the plan") }
}

impl EngineError {
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::Provider { error, .. } => error.hint.clone(),
            EngineError::UnknownTarget(_) => {
                Some("targets are resource addresses as `aspects plan` prints them (KIND.NAME)".into())
            }
            EngineError::DestroyProtected(list) => {
                // A replace (the identity moved) or a previous identity cannot be "put back":
                // only the old name can.
                let moved = list.iter().any(|a| a.contains(PREVIOUS_IDENTITY) || a.ends_with(REPLACED));
                Some(if moved {
                    "an identity (a database name) changed: put the old name back in the plan file to keep that \
                     database, or re-run with --allow-destroy if its data may go"
                        .into()
                } else {
                    "put them back in the plan file, or re-run with --allow-destroy if the data may go".into()
                })
            }
            EngineError::OwnedElsewhere(_) => Some(
                "two deployments cannot manage one object (either could destroy it); give this one its own names, \
                 or remove the resource from one of the plans"
                    .into(),
            ),
            EngineError::Invalid(_) => Some("fix the plan files at the places shown; no target was changed".into()),
            EngineError::LockLost { .. } => Some(
                "no further change was made once the lock was gone; check that no other apply is running, then run \
                 apply again (it resumes from live state)"
                    .into(),
            ),
            EngineError::NewSecrets { .. } => Some(
                "nothing was changed and no secret was saved. Point at the secrets file that holds the values with \
                 --secrets PATH (or ASPECTS_SECRETS); if it is truly lost, re-key on purpose with --allow-new-secrets \
                 and then update every service that uses these secrets"
                    .into(),
            ),
            EngineError::Internal(_) => Some("this is a bug in aspects; please report it with the journal".into()),
        }
    }

    /// Every address of a list error (`few` shows only the first ones), for `-v` output.
    pub fn addresses(&self) -> &[String] {
        match self {
            EngineError::UnknownTarget(l) | EngineError::DestroyProtected(l) | EngineError::OwnedElsewhere(l) => l,
            EngineError::NewSecrets { addresses, .. } => addresses,
            EngineError::Provider { .. }
            | EngineError::Invalid(_)
            | EngineError::LockLost { .. }
            | EngineError::Internal(_) => &[],
        }
    }

    pub fn is_locked(&self) -> bool {
        matches!(self, EngineError::Provider { error, .. } if error.locked)
    }
}

/// Marks the old object of an identity move in its address (`mysql_user["app (previous identity)"]`).
pub const PREVIOUS_IDENTITY: &str = "(previous identity)";
/// Marks a data-bearing replace in [`EngineError::DestroyProtected`].
pub const REPLACED: &str = " (replaced: its identity changed)";

/// How many addresses an error names before it only counts the rest.
const SHOWN: usize = 5;

/// A list of addresses that stays readable at any length: the first few and a count.
pub fn few(list: &[String]) -> String {
    if list.len() <= SHOWN {
        return list.join(", ");
    }
    format!(
        "{} objects: {} and {} more (run with -v to list them all)",
        list.len(),
        list[..SHOWN].join(", "),
        list.len() - SHOWN
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_counted_not_printed() {
        let list: Vec<String> = (0..2000).map(|i| format!("mysql_database.d{i}")).collect();
        let e = EngineError::OwnedElsewhere(list);
        assert_eq!(
            e.to_string(),
            "another deployment owns 2000 objects: mysql_database.d0, mysql_database.d1, mysql_database.d2, \
             mysql_database.d3, mysql_database.d4 and 1995 more (run with -v to list them all)"
        );
        assert_eq!(e.addresses().len(), 2000);
        let short = EngineError::UnknownTarget(vec!["mysql_user.a".into(), "mysql_user.b".into()]);
        assert_eq!(short.to_string(), "unknown --target mysql_user.a, mysql_user.b");
    }
}

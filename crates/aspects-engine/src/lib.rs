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
    #[error("the target would refuse {}:\n{}", plural(.0.len()), first_lines(.0))]
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

    /// Every item of a list error (the message shows only the first ones), for `-v` output.
    pub fn addresses(&self) -> &[String] {
        match self {
            EngineError::UnknownTarget(l)
            | EngineError::DestroyProtected(l)
            | EngineError::OwnedElsewhere(l)
            | EngineError::Invalid(l) => l,
            EngineError::NewSecrets { addresses, .. } => addresses,
            EngineError::Provider { .. } | EngineError::LockLost { .. } | EngineError::Internal(_) => &[],
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
    few_joined(list, ", ")
}

/// [`few`] for items that hold commas themselves (joined by `sep`, e.g. "; ").
pub fn few_joined(list: &[String], sep: &str) -> String {
    if list.len() <= SHOWN {
        return list.join(sep);
    }
    format!(
        "{} objects: {} and {} more (run with -v to list them all)",
        list.len(),
        list[..SHOWN].join(sep),
        list.len() - SHOWN
    )
}

/// How many problems (one per line, each with its place and hint) an error shows: every one
/// of a typical plan's, never thousands.
const SHOWN_LINES: usize = 20;

/// One problem per line, the first [`SHOWN_LINES`] of them, then a count.
fn first_lines(lines: &[String]) -> String {
    match lines.len().checked_sub(SHOWN_LINES) {
        Some(more) if more > 0 => {
            format!("{}\n  ... and {more} more (run with -v to list them all)", lines[..SHOWN_LINES].join("\n"))
        }
        _ => lines.join("\n"),
    }
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
        let invalid: Vec<String> =
            (0..3000).map(|i| format!("  p.toml:{i}:1: mysql_user.u{i}.host: bad\n    hint: fix it")).collect();
        let e = EngineError::Invalid(invalid);
        let message = e.to_string();
        assert!(message.starts_with("the target would refuse 3000 values of the plan:\n  p.toml:0:1: "), "{message}");
        assert!(
            message.ends_with(
                "mysql_user.u19.host: bad\n    hint: fix it\n  ... and 2980 more (run with -v to list them all)"
            ),
            "{message}"
        );
        assert_eq!(message.lines().count(), 42, "{message}");
        assert_eq!(e.addresses().len(), 3000);
        let short = EngineError::UnknownTarget(vec!["mysql_user.a".into(), "mysql_user.b".into()]);
        assert_eq!(short.to_string(), "unknown --target mysql_user.a, mysql_user.b");
    }
}

//! The one error type at the edge: every failure becomes a message, an optional hint and exit 1.

use std::fmt;

use aspects_config::LoadError;
use aspects_engine::EngineError;
use aspects_saved_plan::SavedPlanError;

pub enum CliError {
    /// Already rendered with locations and hints (plan-file diagnostics).
    Load(LoadError),
    Message {
        message: String,
        hint: Option<String>,
    },
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError::Message { message: message.into(), hint: None }
    }

    pub fn hint(self, hint: impl Into<String>) -> Self {
        match self {
            CliError::Message { message, .. } => CliError::Message { message, hint: Some(hint.into()) },
            other => other,
        }
    }
}

impl From<LoadError> for CliError {
    fn from(e: LoadError) -> Self {
        CliError::Load(e)
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        let hint = e.hint();
        // The message shows only the first few of a long list; -v lists every one.
        for address in e.addresses() {
            tracing::info!("{address}");
        }
        CliError::Message { message: e.to_string(), hint }
    }
}

impl From<SavedPlanError> for CliError {
    fn from(e: SavedPlanError) -> Self {
        // The message names the first few addresses that moved; -v lists every one.
        for address in e.moved() {
            tracing::info!("moved since the plan was saved: {address}");
        }
        CliError::Message { message: e.to_string(), hint: Some(e.hint().into()) }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Load(e) => write!(f, "{e}"),
            CliError::Message { message, hint } => {
                writeln!(f, "error: {message}")?;
                if let Some(h) = hint {
                    writeln!(f, "  = hint: {h}")?;
                }
                Ok(())
            }
        }
    }
}

//! The `exec` system of `aspects`: steps that are neither objects nor files (`superset db
//! upgrade`, `superset init`, later dbt). A step is a command and a check command: the check
//! runs at plan time and says whether the step is needed (exit 0: up to date, 1: needed,
//! anything else: an error); apply runs the command and then the check again, which must now
//! pass. Nothing is recorded anywhere: the check is the state, so a killed run converges by
//! checking again.
//!
//! Children run without a shell, with an environment built only from the plan (plus `PATH`,
//! `HOME`, the locale), so secrets reach them only through `env`, never argv, and no variable
//! of aspects' own environment leaks into them. Their output is captured; what is shown of it
//! is scrubbed of every secret they were given.
//!
//! Register [`Exec`] with the engine; [`schema()`] is what plan files are checked against.

mod provider;
mod run;
mod schema;

pub use provider::Exec;
pub use schema::schema;

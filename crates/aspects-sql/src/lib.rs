//! SQL plumbing shared by the providers whose target speaks MySQL's protocol: the MySQL provider
//! and the LMS provider (the LMS database is MySQL). One copy of the connection handling
//! ([`Sql`]: pools with the session mode, counted statements, secret-bearing text kept out of
//! logs), the quoting every name that reaches SQL text goes through ([`quote`]) and driver errors
//! turned into messages with hints and without secret material ([`error`]).

pub mod error;
pub mod quote;
mod session;

pub use error::{Endpoint, System};
pub use session::{Sql, int, placeholders, text};

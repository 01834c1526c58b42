//! SQL plumbing shared by the providers whose target speaks MySQL's protocol: the MySQL provider
//! and the LMS provider (the LMS database is MySQL). One copy of the connection handling
//! ([`Sql`]: pools with the session mode, counted statements, secret-bearing text kept out of
//! logs), the quoting every name that reaches SQL text goes through ([`quote`]), driver errors
//! turned into messages with hints and without secret material ([`error`]), and the deployment's
//! ownership records ([`records`]) and advisory lock ([`lock`]) in a meta database of the server.

pub mod error;
pub mod lock;
pub mod names;
pub mod quote;
pub mod records;
mod session;

pub use error::{Endpoint, System};
pub use session::{Sql, int, placeholders, text};

/// A provider's place on one server: its pool, and the meta database where it keeps the
/// deployment's ownership records (`owned`) and lock holder rows (`locks`). Deliberately not
/// `Debug`: the pool's options hold the password.
pub struct Server {
    pub sql: Sql,
    /// The meta database's name (validated by the provider's schema, quoted wherever used).
    pub meta: String,
    pub deployment: String,
    /// The `GET_LOCK` name's prefix: server-wide, so two providers on one server that lock at
    /// once in one apply need different prefixes (MySQL `aspects`, the LMS `aspects-lms`).
    pub lock_prefix: &'static str,
}

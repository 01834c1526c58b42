//! The Apache Superset provider of `aspects`, over Superset's REST API (login with refresh, the
//! CSRF token with its session cookie, paginated lists): users, roles with their exact permission
//! sets, and database connections whose URI embeds a secret. Superset has no place for ownership
//! records or locks; both are kept in Superset objects this provider names (see ARCHITECTURE.md,
//! "The Superset lock and records").
//!
//! Register [`Superset`] with the engine; [`schema()`] is what plan files are checked against.

mod apply;
mod client;
mod lock;
mod read;
mod records;
mod schema;
mod uri;

pub use client::Superset;
pub use schema::schema;

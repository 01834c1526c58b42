//! The Apache Superset provider of `aspects`, over Superset's REST API (login with refresh, the
//! CSRF token with its session cookie, paginated lists): users, roles with their exact permission
//! sets, database connections whose URI embeds a secret, and asset bundles (Superset v1 YAML,
//! rendered with Jinja and imported). Superset has no place for ownership
//! records or locks; both are kept in Superset objects this provider names (see ARCHITECTURE.md,
//! "The Superset lock and records").
//!
//! Register [`Superset`] with the engine; [`schema()`] is what plan files are checked against.

mod apply;
mod assets;
mod client;
mod embedded;
mod lock;
mod read;
mod records;
mod rls;
mod schema;
mod uri;

pub use assets::{WholeBundle, whole_bundle};
pub use client::Superset;
pub use schema::schema;

//! The ClickHouse provider of `aspects`, over ClickHouse's HTTP interface: databases, tables,
//! SQL functions, operator-supplied SQL, users, roles and grants. Desired DDL is canonicalised by the server itself
//! (`formatQuerySingleLine`, one query per kind) and compared with what the server reports.
//! Ownership is recorded in the server (`<meta_database>.owned`), and applies take a lease lock
//! there (ClickHouse has no advisory lock; see ARCHITECTURE.md).
//!
//! Register [`ClickHouse`] with the engine; [`schema()`] is what plan files are checked against.

mod apply;
mod client;
pub mod ddl;
mod grant;
mod lock;
mod ownership;
mod read;
mod schema;
mod settle;
mod user;

pub use client::ClickHouse;
pub use schema::schema;

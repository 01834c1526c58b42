//! The MySQL/MariaDB provider of `aspects`: databases, users and grants, converged exactly, with
//! ownership recorded in the server (`<meta_database>.owned`) and a `GET_LOCK` advisory lock
//! (both in `aspects_sql`, shared with the LMS provider).
//!
//! Register [`MySql`] with the engine; [`schema()`] is what plan files are checked against.

mod apply;
mod check;
mod connect;
mod error;
mod extra;
mod flavour;
mod password;
mod privileges;
mod read;
mod schema;
mod sql;

pub use connect::MySql;
pub use schema::schema;

//! The LMS provider of `aspects`: the rows Aspects needs in the Open edX LMS database — users
//! (`lms_user`), OAuth applications (`lms_oauth_application`), the event-routing
//! RouterConfiguration (`lms_router_configuration`) and waffle flags (`lms_waffle_flag`) —
//! written with plain SQL that has the semantics of edx-platform's management commands. Password
//! hashes and Fernet tokens are made locally, in the LMS's formats. Connections, ownership records
//! (in a meta database of their own) and the `GET_LOCK` lock come from `aspects_sql`, shared with
//! the MySQL provider.

mod apply;
mod connect;
mod fernet;
mod oauth;
mod password;
mod read;
mod router;
mod schema;
mod user;
mod waffle;

pub use connect::Lms;
pub use schema::schema;

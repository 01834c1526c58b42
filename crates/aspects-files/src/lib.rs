//! The `files` system of `aspects`: configuration files services read (Ralph's environment,
//! Vector's config ...), rendered from Jinja templates with the plan's values. A file's content
//! is a [`aspects_core::Text`]: secrets inside it are masked in plans and diffs, never the whole
//! file. Writes are atomic; ownership lives in a state file under the provider's state folder
//! (see [`state`]); an `on_change` command (a restart) runs only when the content changed.
//!
//! Register [`Files`] with the engine; [`schema()`] is what plan files are checked against;
//! [`render_all`] backs `aspects render`.

mod apply;
mod paths;
mod provider;
mod ralph;
pub mod render;
mod schema;
pub mod state;

pub use provider::{Files, render_all};
pub use schema::schema;

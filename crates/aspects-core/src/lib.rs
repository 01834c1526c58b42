//! The pure heart of `aspects`: what a resource is, how desired and live state compare, what a plan
//! is and how it reads. Architecture invariant: this crate does no IO and never sees a secret in
//! plaintext except through [`Secret::expose`], which only providers call.

pub mod diff;
pub mod document;
pub mod graph;
pub mod render;
pub mod resource;
pub mod schema;
pub mod secret;
pub mod text;
pub mod value;

pub use diff::{Action, AttrChange, Change, Plan};
pub use resource::{Address, Desired, Live, Orphan, ProviderConfig, ProviderId, Resource, SECRET_KIND, Verification};
pub use schema::{
    AttrSchema, AttrType, AttrsError, IdentityKey, KindCheck, KindSchema, Registry, SystemSchema, UpdateMode, Warn,
    identity_string,
};
pub use secret::{Redactor, Secret};
pub use text::Text;
pub use value::Value;

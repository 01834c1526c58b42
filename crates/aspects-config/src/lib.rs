//! Plan files: the product's main interface. Parses layered TOML with spans, checks it against
//! the provider schemas, resolves `${...}` references and secret sources, and reports every
//! problem with `file:line:col` and a hint. Reads files and the environment; writes nothing
//! unless the caller saves the [`SecretStore`].

mod load;
pub mod secrets;
mod source;
mod template;
mod tree;

pub use load::{
    LoadOptions, Loaded, LoadedSecret, SecretSource, SecretState, SecretValues, VAR_ENV_PREFIX, default_secrets_path,
    load_files, load_sources,
};
pub use secrets::{Pending, SecretStore, StoreError, fingerprint};
pub use source::{Diagnostic, LoadError, Location, Report, Severity, SourceFile, SourceMap, did_you_mean};

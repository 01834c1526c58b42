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

use aspects_core::{ProviderConfig, Value};
use aspects_engine::provider::ProviderError;
use sqlx::mysql::MySqlConnectOptions;

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
}

impl Server {
    /// Opens a provider's pool from its `[providers.X]` block (`url`, `password`,
    /// `max_concurrency`, `meta_database`: [`names::provider_attrs`]); `read_only` pools refuse
    /// writes in the server. Returns the server and the provider's `max_concurrency`.
    pub async fn connect(
        config: &ProviderConfig,
        deployment: &str,
        system: &'static System,
        read_only: bool,
    ) -> Result<(Server, usize), ProviderError> {
        let attr = |name: &str| config.attrs.get(name);
        let fail = |e: &dyn std::fmt::Display| ProviderError::new(format!("[providers.{}] `url`: {e}", config.id));
        let url = attr("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::new(format!("[providers.{}] needs `url`", config.id)))?;
        (system.url_check)(&Value::from(url)).map_err(|e| fail(&e))?;
        let mut options: MySqlConnectOptions = url.parse().map_err(|e| fail(&e))?;
        match attr("password") {
            Some(Value::Sensitive(s)) => options = options.password(s.expose()),
            Some(Value::Str(s)) => options = options.password(s),
            _ => {}
        }
        let max_concurrency = match attr("max_concurrency") {
            Some(Value::Int(n)) if *n > 0 => *n as usize,
            _ => names::DEFAULT_MAX_CONCURRENCY as usize,
        };
        let meta = attr("meta_database").and_then(Value::as_str).unwrap_or(system.meta_default).to_owned();
        let max_connections = if read_only { 2 } else { max_concurrency as u32 + 1 };
        let sql = Sql::connect(options, system, max_connections, read_only).await?;
        Ok((Server { sql, meta, deployment: deployment.to_owned() }, max_concurrency))
    }
}

//! Opening handles and talking HTTP: settings from `[providers.clickhouse]`, one reqwest client,
//! queries with their values sent as ClickHouse query parameters (`{name:Type}` in the SQL,
//! `param_name` in the URL, never spliced into the text), errors explained, statements counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_core::{
    Change, KindSchema, Live, Orphan, ProviderConfig, ProviderId, Resource, Secret, SystemSchema, Value,
};
use aspects_engine::provider::{Connector, LockGuard, ProviderError, ProviderRead, ProviderWrite, SecretRotation};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};

use crate::schema::{self, DEFAULT_LOCK_LEASE, DEFAULT_MAX_CONCURRENCY, DEFAULT_META_DATABASE};

/// The ClickHouse system: register it with the engine.
pub struct ClickHouse;

#[async_trait]
impl Connector for ClickHouse {
    fn schema(&self) -> SystemSchema {
        schema::schema()
    }

    async fn connect_read(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderRead>, ProviderError> {
        Ok(Arc::new(Provider(Arc::new(Handle::connect(config, deployment, true).await?))))
    }

    async fn connect_write(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderWrite>, ProviderError> {
        let handle = Handle::connect(config, deployment, false).await?;
        handle.ensure_meta().await?;
        Ok(Arc::new(Provider(Arc::new(handle))))
    }
}

/// Both handles. Planning gets it as a `ProviderRead` opened read-only: every request then
/// carries `readonly=1`, so the server itself refuses writes.
pub struct Provider(Arc<Handle>);

/// A ClickHouse error: its code (`X-ClickHouse-Exception-Code`) and message; code 0 when the
/// server was not reached or did not say.
#[derive(Debug)]
pub struct ChError {
    pub code: u32,
    pub message: String,
}

/// Error codes the provider reacts to.
pub mod code {
    pub const UNKNOWN_TABLE: u32 = 60;
    pub const UNKNOWN_DATABASE: u32 = 81;
    pub const TABLE_ALREADY_EXISTS: u32 = 57;
    pub const DATABASE_ALREADY_EXISTS: u32 = 82;
    pub const FUNCTION_ALREADY_EXISTS: u32 = 609;
    /// ACCESS_ENTITY_ALREADY_EXISTS: a user or role of that name exists.
    pub const USER_ALREADY_EXISTS: u32 = 493;
    pub const READONLY: u32 = 164;
    pub const UNKNOWN_USER: u32 = 192;
    pub const UNKNOWN_ROLE: u32 = 511;
    /// Login refused: unknown user, wrong password, authentication failed, password required.
    pub const LOGIN: &[u32] = &[192, 193, 194, 516];
}

/// What both handles share. Not `Debug`: it holds the password.
pub struct Handle {
    http: reqwest::Client,
    base: url::Url,
    read_only: bool,
    pub(crate) target: String,
    pub(crate) user: String,
    pub(crate) provider: ProviderId,
    pub(crate) deployment: String,
    pub(crate) meta: String,
    pub(crate) cluster: Option<String>,
    pub(crate) lease: Duration,
    max_concurrency: usize,
    pub(crate) queries: Arc<AtomicU64>,
    /// The server's version (major, minor), read at connect.
    pub(crate) version: (u32, u32),
    /// The plan's grants, as the last orphan scan saw them (see `grant.rs`).
    pub(crate) planned_grants: std::sync::Mutex<Vec<Resource>>,
    /// The grants the last orphan scan read (see `grant.rs`).
    pub(crate) plan_grants: std::sync::Mutex<Option<Arc<crate::grant::Grants>>>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// DDL on a cluster waits for every replica (distributed_ddl_task_timeout is 180 s by default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

impl Handle {
    async fn connect(config: &ProviderConfig, deployment: &str, read_only: bool) -> Result<Handle, ProviderError> {
        let attr = |name: &str| config.attrs.get(name);
        let Some(Value::Str(url)) = attr("url") else {
            return Err(ProviderError::new(format!("[providers.{}] needs `url`", config.id)));
        };
        let check = schema::schema().provider_attrs.into_iter().find(|a| a.name == "url").and_then(|a| a.check);
        if let Some(Err(e)) = check.map(|f| f(&Value::from(url.as_str()))) {
            return Err(ProviderError::new(format!("[providers.{}] `url`: {e}", config.id)));
        }
        let base =
            url::Url::parse(url).map_err(|e| ProviderError::new(format!("[providers.{}] `url`: {e}", config.id)))?;
        let user = attr("user").and_then(Value::as_str).unwrap_or("default").to_owned();
        let password = match attr("password") {
            Some(Value::Sensitive(s)) => s.clone(),
            Some(Value::Str(s)) => Secret::new(s.clone()),
            _ => Secret::new(String::new()),
        };
        let mut headers = HeaderMap::new();
        let header = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                ProviderError::new(format!(
                    "[providers.{}]: the user or password cannot be sent in an HTTP header",
                    config.id
                ))
            })
        };
        headers.insert("X-ClickHouse-User", header(&user)?);
        let mut key = header(password.expose())?;
        key.set_sensitive(true);
        headers.insert("X-ClickHouse-Key", key);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ProviderError::new(format!("cannot set up HTTP for ClickHouse: {e}")))?;
        let int = |name: &str, default: i64| match attr(name) {
            Some(Value::Int(n)) if *n > 0 => *n as u64,
            _ => default as u64,
        };
        let target = format!(
            "{}://{}:{}",
            base.scheme(),
            base.host_str().unwrap_or_default(),
            base.port_or_known_default().unwrap_or(8123)
        );
        let mut handle = Handle {
            http,
            base,
            read_only,
            target,
            user,
            provider: config.id.clone(),
            deployment: deployment.to_owned(),
            meta: attr("meta_database").and_then(Value::as_str).unwrap_or(DEFAULT_META_DATABASE).to_owned(),
            cluster: attr("cluster").and_then(Value::as_str).map(str::to_owned),
            lease: Duration::from_secs(int("lock_lease_seconds", DEFAULT_LOCK_LEASE)),
            max_concurrency: int("max_concurrency", DEFAULT_MAX_CONCURRENCY) as usize,
            queries: Arc::new(AtomicU64::new(0)),
            version: (0, 0),
            planned_grants: std::sync::Mutex::new(Vec::new()),
            plan_grants: std::sync::Mutex::new(None),
        };
        let version = handle.query("SELECT version()", &[]).await.map_err(|e| handle.err(&e, "connecting"))?;
        let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        handle.version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        Ok(handle)
    }

    /// One statement; `params` are `{name:Type}` values. Returns the body as text.
    pub(crate) async fn query(&self, sql: &str, params: &[(&str, &str)]) -> Result<String, ChError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(sql, "query");
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            if self.read_only {
                q.append_pair("readonly", "1");
            }
            for (name, value) in params {
                q.append_pair(&format!("param_{name}"), value);
            }
        }
        let sent = self.http.post(url).body(sql.to_owned()).send().await;
        let response = sent.map_err(|e| ChError { code: 0, message: reqwest_reason(e) })?;
        let status = response.status();
        let code = response
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response.text().await.map_err(|e| ChError { code: 0, message: reqwest_reason(e) })?;
        match (status.is_success(), code) {
            (true, None) => Ok(body),
            (_, code) => Err(ChError {
                code: code.unwrap_or(0),
                message: if body.trim().is_empty() { format!("HTTP {status}") } else { body.trim().to_owned() },
            }),
        }
    }

    /// Logs in as `user` (`SELECT 1`): `Ok` when the server accepts the password.
    pub(crate) async fn login(&self, user: &str, password: &str) -> Result<(), ChError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let fail = |message: String| ChError { code: 0, message };
        let user = HeaderValue::from_str(user).map_err(|_| fail("the user name cannot be sent in a header".into()))?;
        let mut key =
            HeaderValue::from_str(password).map_err(|_| fail("the password cannot be sent in a header".into()))?;
        key.set_sensitive(true);
        let sent = self.http.post(self.base.clone()).header("X-ClickHouse-User", user).header("X-ClickHouse-Key", key);
        let response = sent.body("SELECT 1").send().await.map_err(|e| fail(reqwest_reason(e)))?;
        let code = response.headers().get("X-ClickHouse-Exception-Code").and_then(|v| v.to_str().ok()?.parse().ok());
        match (response.status().is_success(), code) {
            (true, None) => Ok(()),
            (_, code) => Err(ChError { code: code.unwrap_or(0), message: format!("HTTP {}", response.status()) }),
        }
    }

    /// A query answered as JSON rows (`FORMAT JSONEachRow` is appended).
    pub(crate) async fn rows(
        &self,
        sql: &str,
        params: &[(&str, &str)],
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, ChError> {
        let body = self.query(&format!("{sql} FORMAT JSONEachRow"), params).await?;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| match serde_json::from_str(l) {
                Ok(serde_json::Value::Object(row)) => Ok(row),
                _ => Err(ChError { code: 0, message: format!("unexpected answer from the server: {l:?}") }),
            })
            .collect()
    }

    /// A write statement: a crash point for the fault hook.
    pub(crate) async fn execute(&self, sql: &str, params: &[(&str, &str)], doing: &str) -> Result<(), ProviderError> {
        tracing::debug!(sql, "statement");
        let result = self.query(sql, params).await;
        aspects_engine::fault::after_write();
        result.map(drop).map_err(|e| self.err(&e, doing))
    }

    /// `doing` is a phrase like "creating table `a`.`b`".
    pub(crate) fn err(&self, e: &ChError, doing: &str) -> ProviderError {
        let target = &self.target;
        match e.code {
            0 => ProviderError::new(format!("cannot reach ClickHouse at {target} while {doing}: {}", e.message))
                .with_hint("is the server running? check `url` in [providers.clickhouse]"),
            c if code::LOGIN.contains(&c) => ProviderError::new(format!(
                "ClickHouse at {target} refused the login of the provider user '{}': {}",
                self.user, e.message
            ))
            .with_hint("check `user` and the secret behind `password` in [providers.clickhouse]"),
            code::READONLY if self.read_only => ProviderError::new(format!(
                "{doing} on {target} was refused: {} (this handle is read-only: plan and drift never write)",
                e.message
            )),
            c => ProviderError::new(format!("{doing} on {target} failed: {} (ClickHouse error {c})", e.message)),
        }
    }

    /// ` ON CLUSTER `c`` when a cluster is configured.
    pub(crate) fn on_cluster(&self) -> String {
        crate::ddl::on_cluster(self.cluster.as_deref())
    }
}

/// What reqwest says, with the chain of causes (connection refused ...), never the URL's query.
fn reqwest_reason(e: reqwest::Error) -> String {
    aspects_engine::provider::error_chain(&e.without_url())
}

/// An identifier in backticks, with `\` and `` ` `` escaped (ClickHouse's backslash escaping).
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// A string literal, with `\` and `'` escaped.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A JSON row's column as text (ClickHouse quotes 64-bit integers in JSON).
pub fn col(row: &serde_json::Map<String, serde_json::Value>, name: &str) -> String {
    match row.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A value list as a ClickHouse `Array(String)` parameter: `['a','b']`.
pub fn array_param<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    format!("[{}]", items.into_iter().map(literal).collect::<Vec<_>>().join(","))
}

#[async_trait]
impl ProviderRead for Provider {
    fn target(&self) -> String {
        self.0.target.clone()
    }
    fn max_concurrency(&self) -> usize {
        self.0.max_concurrency
    }
    fn queries(&self) -> u64 {
        self.0.queries.load(Ordering::Relaxed)
    }
    /// Schema defaults only: everything else is compared in the server's canonical form (read.rs).
    fn normalise(&self, kind: &KindSchema, resource: &mut Resource) {
        aspects_engine::ownership::fill_defaults(kind, resource)
    }
    fn secret_rotation(&self, kind: &KindSchema) -> SecretRotation {
        self.0.secret_rotation(kind)
    }
    async fn read(&self, kind: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        self.0.read(kind, desired).await
    }
    async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        self.0.orphans(desired).await
    }
}

#[async_trait]
impl ProviderWrite for Provider {
    async fn apply(&self, kind: &KindSchema, change: &Change, desired: Option<&Resource>) -> Result<(), ProviderError> {
        self.0.apply(kind, change, desired).await
    }
    async fn apply_keeping_old_secret(
        &self,
        kind: &KindSchema,
        change: &Change,
        desired: &Resource,
    ) -> Result<(), ProviderError> {
        self.0.apply_keeping_old_secret(kind, change, desired).await
    }
    async fn discard_old_secret(&self, kind: &KindSchema, desired: &Resource) -> Result<(), ProviderError> {
        self.0.discard_old_secret(kind, desired).await
    }
    async fn prune(&self, desired: &[Resource]) -> Result<usize, ProviderError> {
        self.0.prune(desired).await
    }
    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Box<dyn LockGuard>, ProviderError> {
        Ok(Box::new(self.0.lock(holder, wait, waiting).await?))
    }
}

/// Attribute maps from pairs.
pub fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a`b\\c"), "`a\\`b\\\\c`");
        assert_eq!(literal("it's \\"), "'it\\'s \\\\'");
        assert_eq!(array_param(["a", "b'c"]), "['a','b\\'c']");
    }
}

//! Opening handles: settings from `[providers.mysql]`, the read-only and write pools, what the
//! server tells us at connect time, and the statement helpers every other module goes through
//! (they count statements and keep secret-bearing SQL out of logs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_core::{Change, KindSchema, Live, Orphan, ProviderConfig, Resource, SystemSchema, Value};
use aspects_engine::provider::{Connector, LockGuard, ProviderError, ProviderRead, ProviderWrite};
use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Executor, MySqlPool, Row};

use crate::error;
use crate::privileges::LevelSets;
use crate::schema::{self, DEFAULT_MAX_CONCURRENCY, DEFAULT_META_DATABASE};
use crate::sql::SESSION_SQL_MODE;

/// The MySQL/MariaDB system: register it with the engine.
pub struct MySql;

#[async_trait]
impl Connector for MySql {
    fn schema(&self) -> SystemSchema {
        schema::schema()
    }

    async fn connect_read(&self, config: &ProviderConfig, deployment: &str) -> Result<Arc<dyn ProviderRead>, ProviderError> {
        Ok(Arc::new(Reader(Handle::connect(config, deployment, true).await?)))
    }

    async fn connect_write(&self, config: &ProviderConfig, deployment: &str) -> Result<Arc<dyn ProviderWrite>, ProviderError> {
        let handle = Handle::connect(config, deployment, false).await?;
        handle.ensure_meta().await?;
        Ok(Arc::new(Writer(handle)))
    }
}

/// Plan-time handle: its sessions are `READ ONLY`, so the server itself refuses any write.
pub struct Reader(Handle);

/// Apply-time handle.
pub struct Writer(Handle);

/// What both handles share. Deliberately not `Debug`: the connect options hold the password.
pub struct Handle {
    pub(crate) pool: MySqlPool,
    /// The provider's own options, for the lock's dedicated connection and login probes.
    pub(crate) options: MySqlConnectOptions,
    pub(crate) target: String,
    pub(crate) admin: String,
    pub(crate) deployment: String,
    pub(crate) meta: String,
    max_concurrency: usize,
    pub(crate) mariadb: bool,
    /// Character set -> its default collation, as this server defines it.
    pub(crate) charsets: BTreeMap<String, String>,
    pub(crate) levels: LevelSets,
    queries: AtomicU64,
}

/// How long to wait for a connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Handle {
    async fn connect(config: &ProviderConfig, deployment: &str, read_only: bool) -> Result<Handle, ProviderError> {
        let url = match config.attrs.get("url") {
            Some(Value::Str(url)) => url.as_str(),
            _ => return Err(ProviderError::new(format!("[providers.{}] needs `url`", config.id))),
        };
        let check = schema::schema().provider_attrs.into_iter().find(|a| a.name == "url").and_then(|a| a.check);
        if let Some(Err(e)) = check.map(|f| f(&Value::from(url))) {
            return Err(ProviderError::new(format!("[providers.{}] `url`: {e}", config.id)));
        }
        let mut options: MySqlConnectOptions = url
            .parse()
            .map_err(|e| ProviderError::new(format!("[providers.{}] `url`: {e}", config.id)))?;
        match config.attrs.get("password") {
            Some(Value::Sensitive(s)) => options = options.password(s.expose()),
            Some(Value::Str(s)) => options = options.password(s),
            _ => {}
        }
        // Statement logging would print SQL text (with password hashes) through `log`.
        let options = options.pipes_as_concat(false).no_engine_substitution(false).disable_statement_logging();
        let target = format!("mysql://{}:{}", options.get_host(), options.get_port());
        let admin = options.get_username().to_owned();
        let max_concurrency = match config.attrs.get("max_concurrency") {
            Some(Value::Int(n)) if *n > 0 => *n as usize,
            _ => DEFAULT_MAX_CONCURRENCY as usize,
        };
        let meta = config
            .attrs
            .get("meta_database")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_META_DATABASE)
            .to_owned();
        let pool = MySqlPoolOptions::new()
            .max_connections(if read_only { 2 } else { max_concurrency as u32 + 1 })
            .min_connections(0)
            .acquire_timeout(CONNECT_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(sqlx::raw_sql(SESSION_SQL_MODE)).await?;
                    if read_only {
                        conn.execute(sqlx::raw_sql("SET SESSION TRANSACTION READ ONLY")).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(|e| error::from_sqlx(&e, &target, &admin, "connecting", &[]))?;
        let mut handle = Handle {
            pool,
            options,
            target,
            admin,
            deployment: deployment.to_owned(),
            meta,
            max_concurrency,
            mariadb: true,
            charsets: BTreeMap::new(),
            levels: LevelSets::default(),
            queries: AtomicU64::new(0),
        };
        handle.learn_server().await?;
        Ok(handle)
    }

    /// Version flavour, default collations and what `ALL` means at each level: the normaliser
    /// needs these and they cannot change while we run.
    async fn learn_server(&mut self) -> Result<(), ProviderError> {
        let doing = "reading server capabilities";
        let version: String = self.rows("SELECT VERSION()", &[]).await.map_err(|e| self.err(&e, doing))?[0].get(0);
        self.mariadb = version.contains("MariaDB");
        self.charsets = self
            .rows("SELECT CHARACTER_SET_NAME, DEFAULT_COLLATE_NAME FROM information_schema.CHARACTER_SETS", &[])
            .await
            .map_err(|e| self.err(&e, doing))?
            .iter()
            .map(|r| (r.get::<String, _>(0).to_lowercase(), r.get::<String, _>(1).to_lowercase()))
            .collect();
        let columns = self
            .rows(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' \
                 AND ((TABLE_NAME = 'db' AND COLUMN_NAME LIKE '%\\_priv') OR (TABLE_NAME = 'tables_priv' AND COLUMN_NAME = 'Table_priv')) \
                 ORDER BY ORDINAL_POSITION",
                &[],
            )
            .await
            .map_err(|e| self.err(&e, doing))?;
        let columns: Vec<(String, String, String)> = columns.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        self.levels
            .set_database(columns.iter().filter(|c| c.0.eq_ignore_ascii_case("db")).map(|c| c.1.as_str()));
        if let Some(c) = columns.iter().find(|c| c.0.eq_ignore_ascii_case("tables_priv")) {
            self.levels.set_table(&c.2);
        }
        self.count();
        let privileges = sqlx::raw_sql("SHOW PRIVILEGES")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(&e, doing))?;
        let names: Vec<String> = privileges.iter().map(|r| r.get(0)).collect();
        self.levels.set_global(names.iter().map(String::as_str));
        self.levels.fill_missing();
        Ok(())
    }

    pub(crate) fn count(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn err(&self, e: &sqlx::Error, doing: &str) -> ProviderError {
        error::from_sqlx(e, &self.target, &self.admin, doing, &[])
    }

    /// A query with string parameters (names are data here, so they are bound, never quoted).
    /// Not kept as a prepared statement: IN lists vary in length.
    pub(crate) async fn rows(&self, sql: &str, binds: &[&str]) -> Result<Vec<MySqlRow>, sqlx::Error> {
        self.count();
        tracing::trace!(sql, "query");
        let mut query = sqlx::query(AssertSqlSafe(sql.to_owned())).persistent(false);
        for b in binds {
            query = query.bind(*b);
        }
        query.fetch_all(&self.pool).await
    }

    /// A statement in the text protocol (DDL, GRANT). `secrets` are the secret strings the SQL
    /// embeds: such SQL is never logged and they are scrubbed from any error.
    pub(crate) async fn run(&self, sql: &str, doing: &str, secrets: &[&str]) -> Result<(), ProviderError> {
        self.count();
        if secrets.is_empty() {
            tracing::debug!(sql, "statement");
        } else {
            tracing::debug!("statement {doing} (text withheld: it carries secret material)");
        }
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| error::from_sqlx(&e, &self.target, &self.admin, doing, secrets))
    }
}

/// `?, ?, ?` for an IN list.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The read side, shared by both handles.
#[async_trait]
impl ProviderRead for Reader {
    fn target(&self) -> String {
        self.0.target.clone()
    }
    fn max_concurrency(&self) -> usize {
        self.0.max_concurrency
    }
    fn queries(&self) -> u64 {
        self.0.queries.load(Ordering::Relaxed)
    }
    fn normalise(&self, kind: &KindSchema, resource: &mut Resource) {
        self.0.normalise(kind, resource)
    }
    async fn read(&self, kind: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        self.0.read(kind, desired).await
    }
    async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        self.0.orphans(desired).await
    }
}

#[async_trait]
impl ProviderRead for Writer {
    fn target(&self) -> String {
        self.0.target.clone()
    }
    fn max_concurrency(&self) -> usize {
        self.0.max_concurrency
    }
    fn queries(&self) -> u64 {
        self.0.queries.load(Ordering::Relaxed)
    }
    fn normalise(&self, kind: &KindSchema, resource: &mut Resource) {
        self.0.normalise(kind, resource)
    }
    async fn read(&self, kind: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        self.0.read(kind, desired).await
    }
    async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        self.0.orphans(desired).await
    }
}

#[async_trait]
impl ProviderWrite for Writer {
    async fn apply(&self, kind: &KindSchema, change: &Change, desired: Option<&Resource>) -> Result<(), ProviderError> {
        self.0.apply(kind, change, desired).await
    }
    async fn lock(&self, holder: &str, wait: Duration) -> Result<Box<dyn LockGuard>, ProviderError> {
        Ok(Box::new(self.0.lock(holder, wait).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_join() {
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(placeholders(0), "");
    }
}

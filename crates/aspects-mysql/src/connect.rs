//! Opening handles: settings from `[providers.mysql]`, the read-only and write pools, what the
//! server tells us at connect time, and the statement helpers every other module goes through
//! (they count statements and keep secret-bearing SQL out of logs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_core::{Change, KindSchema, Live, Orphan, ProviderConfig, ProviderId, Resource, SystemSchema, Value};
use aspects_engine::provider::{
    Connector, Invalid, LockGuard, ProviderError, ProviderRead, ProviderWrite, SecretRotation,
};
use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, MySqlPool, Row};

use crate::error;
use crate::flavour::Flavour;
use crate::password;
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

    async fn connect_read(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderRead>, ProviderError> {
        Ok(Arc::new(Reader(Handle::connect(config, deployment, true).await?)))
    }

    async fn connect_write(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderWrite>, ProviderError> {
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
    /// The provider's own options, for the lock's dedicated connection.
    pub(crate) options: MySqlConnectOptions,
    pub(crate) target: String,
    pub(crate) admin: String,
    /// `mysql` or `mysql.lms`, for the orphans this handle reports.
    pub(crate) provider: ProviderId,
    pub(crate) deployment: String,
    pub(crate) meta: String,
    max_concurrency: usize,
    pub(crate) flavour: Flavour,
    /// Rounds of a new `caching_sha2_password` hash: the server's
    /// `caching_sha2_password_digest_rounds` (MySQL 8.0.24+), else MySQL's fixed 5000.
    pub(crate) sha2_rounds: u32,
    /// Character set -> its default collation, as this server defines it.
    pub(crate) charsets: BTreeMap<String, String>,
    /// Collation -> its character set (full names, e.g. `utf8mb4_uca1400_ai_ci` on MariaDB).
    pub(crate) collations: BTreeMap<String, String>,
    /// The account the server resolved this provider's login to (`CURRENT_USER()`): never managed.
    pub(crate) current: (String, String),
    /// Active authentication plugins (`ed25519` must be loaded before an account can use it).
    pub(crate) auth_plugins: std::collections::BTreeSet<String>,
    pub(crate) levels: LevelSets,
    /// Shared with lock guards, which outlive a borrow of the handle.
    pub(crate) queries: Arc<AtomicU64>,
}

/// How long to wait for a connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Handle {
    async fn connect(config: &ProviderConfig, deployment: &str, read_only: bool) -> Result<Handle, ProviderError> {
        let url = match config.attrs.get("url") {
            Some(Value::Str(url)) => url.as_str(),
            _ => {
                return Err(ProviderError::new(format!("[providers.{}] needs `url`", config.id)));
            }
        };
        let check = schema::schema().provider_attrs.into_iter().find(|a| a.name == "url").and_then(|a| a.check);
        if let Some(Err(e)) = check.map(|f| f(&Value::from(url))) {
            return Err(ProviderError::new(format!("[providers.{}] `url`: {e}", config.id)));
        }
        let mut options: MySqlConnectOptions =
            url.parse().map_err(|e| ProviderError::new(format!("[providers.{}] `url`: {e}", config.id)))?;
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
        let meta =
            config.attrs.get("meta_database").and_then(Value::as_str).unwrap_or(DEFAULT_META_DATABASE).to_owned();
        // One plain connection first: the pool retries a refused connection until its timeout
        // and then reports only that it timed out, hiding the reason.
        let fail = |e: sqlx::Error| error::from_sqlx(&e, &target, &admin, "connecting", &[]);
        let first = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| fail(sqlx::Error::PoolTimedOut))?
            .map_err(fail)?;
        // Closing politely is best effort; the connection has done its job.
        let _ = first.close().await;
        let pool = MySqlPoolOptions::new()
            .max_connections(if read_only { 2 } else { max_concurrency as u32 + 1 })
            .min_connections(0)
            // No extra round trip per statement: a run lasts seconds, and a connection that died
            // fails its statement with a clear error anyway.
            .test_before_acquire(false)
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
            .map_err(fail)?;
        let mut handle = Handle {
            pool,
            options,
            target,
            admin,
            provider: config.id.clone(),
            deployment: deployment.to_owned(),
            meta,
            max_concurrency,
            flavour: Flavour::parse("MariaDB"),
            sha2_rounds: password::CACHING_SHA2_ROUNDS,
            charsets: BTreeMap::new(),
            collations: BTreeMap::new(),
            current: Default::default(),
            auth_plugins: Default::default(),
            levels: LevelSets::default(),
            queries: Arc::new(AtomicU64::new(0)),
        };
        handle.learn_server().await?;
        Ok(handle)
    }

    /// Version flavour, default collations and what `ALL` means at each level: the normaliser
    /// needs these and they cannot change while we run.
    async fn learn_server(&mut self) -> Result<(), ProviderError> {
        let doing = "reading server capabilities";
        let rows = self.rows("SELECT VERSION(), CURRENT_USER()", &[]).await.map_err(|e| self.err(&e, doing))?;
        let (version, current) = match rows.first() {
            Some(r) => (text(r, 0)?, text(r, 1)?),
            None => Default::default(),
        };
        self.flavour = Flavour::parse(&version);
        // `user@host`: the host never contains `@`, the user may.
        if let Some((user, host)) = current.rsplit_once('@') {
            self.current = (user.to_owned(), host.to_lowercase());
        }
        self.auth_plugins = self
            .rows(
                "SELECT PLUGIN_NAME FROM information_schema.PLUGINS \
                 WHERE PLUGIN_TYPE = 'AUTHENTICATION' AND PLUGIN_STATUS = 'ACTIVE'",
                &[],
            )
            .await
            .map_err(|e| self.err(&e, doing))?
            .iter()
            .map(|r| Ok(text(r, 0)?.to_lowercase()))
            .collect::<Result<_, ProviderError>>()?;
        // MariaDB 10.10+ adds FULL_COLLATION_NAME (the name a database reports) as column 3.
        self.collations = self
            .rows("SELECT * FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY", &[])
            .await
            .map_err(|e| self.err(&e, doing))?
            .iter()
            .map(|r| Ok((text(r, if r.len() > 2 { 2 } else { 0 })?.to_lowercase(), text(r, 1)?.to_lowercase())))
            .collect::<Result<_, ProviderError>>()?;
        self.charsets = self
            .rows("SELECT CHARACTER_SET_NAME, DEFAULT_COLLATE_NAME FROM information_schema.CHARACTER_SETS", &[])
            .await
            .map_err(|e| self.err(&e, doing))?
            .iter()
            .map(|r| Ok((text(r, 0)?.to_lowercase(), text(r, 1)?.to_lowercase())))
            .collect::<Result<_, ProviderError>>()?;
        let columns = self
            .rows(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' \
                 AND ((TABLE_NAME = 'db' AND COLUMN_NAME LIKE '%\\_priv') OR (TABLE_NAME = 'tables_priv' AND COLUMN_NAME = 'Table_priv')) \
                 ORDER BY ORDINAL_POSITION",
                &[],
            )
            .await
            .map_err(|e| self.err(&e, doing))?;
        let columns = columns
            .iter()
            .map(|r| Ok((text(r, 0)?, text(r, 1)?, text(r, 2)?)))
            .collect::<Result<Vec<_>, ProviderError>>()?;
        self.levels.set_database(columns.iter().filter(|c| c.0.eq_ignore_ascii_case("db")).map(|c| c.1.as_str()));
        if let Some(c) = columns.iter().find(|c| c.0.eq_ignore_ascii_case("tables_priv")) {
            self.levels.set_table(&c.2);
        }
        if self.flavour.mysql8() {
            // Absent before 8.0.24 (no row). Kept to whole thousands: the stored form only
            // records rounds / 1000.
            self.count();
            let rounds = sqlx::raw_sql("SHOW GLOBAL VARIABLES LIKE 'caching_sha2_password_digest_rounds'")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(&e, doing))?;
            if let Some(r) = rounds.first() {
                let n: u32 = text(r, 1)?.parse().unwrap_or(password::CACHING_SHA2_ROUNDS);
                self.sha2_rounds = (n / 1000 * 1000).max(password::CACHING_SHA2_ROUNDS);
            }
        }
        self.count();
        let privileges =
            sqlx::raw_sql("SHOW PRIVILEGES").fetch_all(&self.pool).await.map_err(|e| self.err(&e, doing))?;
        let names = privileges.iter().map(|r| text(r, 0)).collect::<Result<Vec<_>, _>>()?;
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
    /// Kept in sqlx's per-connection statement cache (bounded, LRU) although IN lists vary in
    /// length: closing a one-shot statement sends a COM_STMT_CLOSE the server never answers, and
    /// the next small packet then waits ~40 ms on Nagle + delayed ACK (measured on loopback).
    pub(crate) async fn rows(&self, sql: &str, binds: &[&str]) -> Result<Vec<MySqlRow>, sqlx::Error> {
        self.count();
        tracing::trace!(sql, "query");
        let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
        for b in binds {
            query = query.bind(*b);
        }
        query.fetch_all(&self.pool).await
    }

    /// A statement in the text protocol (DDL, GRANT: MySQL cannot prepare all of them, and SQL
    /// with secret material should not sit in the server's statement cache). `secret`
    /// statements are never logged.
    pub(crate) async fn execute(&self, sql: &str, secret: bool) -> Result<(), sqlx::Error> {
        self.count();
        if secret {
            tracing::debug!("statement (text withheld: it carries secret material)");
        } else {
            tracing::debug!(sql, "statement");
        }
        let result = sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&self.pool).await.map(drop);
        aspects_engine::fault::after_write();
        result
    }

    /// [`Self::execute`] with the error explained; `secrets` are the secret strings the SQL
    /// embeds, scrubbed from any error.
    pub(crate) async fn run(&self, sql: &str, doing: &str, secrets: &[&str]) -> Result<(), ProviderError> {
        self.execute(sql, !secrets.is_empty())
            .await
            .map_err(|e| error::from_sqlx(&e, &self.target, &self.admin, doing, secrets))
    }
}

/// A text column. Servers type some names as binary strings (MySQL 8's `mysql.user`); those
/// are read as bytes. A surprise is an error, never a panic.
pub(crate) fn text(row: &MySqlRow, i: usize) -> Result<String, ProviderError> {
    row.try_get::<String, _>(i)
        .or_else(|_| row.try_get::<Vec<u8>, _>(i).map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| ProviderError::new(format!("unexpected result from the server: {e}")))
}

/// An integer column (NULL is None).
pub(crate) fn int(row: &MySqlRow, i: usize) -> Result<Option<i64>, ProviderError> {
    row.try_get(i).map_err(|e| ProviderError::new(format!("unexpected result from the server: {e}")))
}

/// `?, ?, ?` for an IN list.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The read side is the same for both handles.
macro_rules! provider_read {
    ($handle:ty) => {
        #[async_trait]
        impl ProviderRead for $handle {
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
            fn check(&self, kind: &KindSchema, resource: &Resource) -> Vec<Invalid> {
                self.0.check(kind, resource)
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
    };
}

provider_read!(Reader);
provider_read!(Writer);

#[async_trait]
impl ProviderWrite for Writer {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::ident;

    #[test]
    fn placeholders_join() {
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(placeholders(0), "");
    }

    /// The test server (`aspects_e2e::mysql_url`), as a provider block. These tests need
    /// private access to send SQL the public API never would.
    fn config() -> ProviderConfig {
        let url = aspects_e2e::mysql_url();
        let mut attrs = BTreeMap::new();
        let (scheme, rest) = url.split_once("://").unwrap();
        match rest.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let (user, pw) = userinfo.split_once(':').unwrap();
                attrs.insert("url".to_owned(), Value::from(format!("{scheme}://{user}@{host}")));
                attrs.insert("password".to_owned(), Value::Sensitive(aspects_core::Secret::new(pw)));
            }
            _ => {
                attrs.insert("url".to_owned(), Value::from(url.as_str()));
            }
        }
        ProviderConfig { id: "mysql".into(), system: "mysql".into(), attrs, origin: "test".into() }
    }

    #[tokio::test]
    async fn the_server_refuses_writes_on_a_read_handle() {
        let h = Handle::connect(&config(), "ro", true).await.unwrap();
        let name = format!("t{}_read_only", std::process::id());
        let err = h.run(&format!("CREATE DATABASE {}", ident(&name)), "creating a database", &[]).await.unwrap_err();
        assert!(err.message.contains("Cannot execute statement in a READ ONLY transaction"), "{err}");
        assert!(err.message.contains("this handle is read-only"), "{err}");
        assert!(h.schemata(&[&name]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_server_error_quoting_a_password_statement_is_scrubbed() {
        let h = Handle::connect(&config(), "scrub", true).await.unwrap();
        let pw = "Zz-secret-pw";
        let hash = password::native_hash(pw);
        // A syntax error whose "near '...'" quote would carry both the plaintext and the hash.
        let sql = format!("CREATE USER OOPS BY '{pw}' AS '{hash}'");
        let forms = password::secret_forms(pw);
        let secrets: Vec<&str> = forms.iter().map(String::as_str).collect();
        let raw = sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&h.pool).await.unwrap_err();
        assert!(raw.to_string().contains(pw), "the server does echo the statement: {raw}");
        let err = h.run(&sql, "creating a user", &secrets).await.unwrap_err();
        assert!(!err.message.contains(pw) && !err.message.contains(&hash), "{err}");
        assert!(err.message.contains("near (statement text withheld)"), "{err}");
        assert!(err.message.contains("MySQL error 1064"), "{err}");
    }
}

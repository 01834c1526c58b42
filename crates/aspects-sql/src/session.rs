//! [`Sql`]: a provider's pool on one server and the statement helpers every query goes through
//! (they count statements and keep secret-bearing SQL out of logs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_engine::provider::ProviderError;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Execute, Executor, MySqlPool, Row};

use crate::error::{self, Endpoint, System};
use crate::quote::SESSION_SQL_MODE;

/// How long to wait for a connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool on one server. Deliberately not `Debug`: the connect options hold the password.
pub struct Sql {
    pub pool: MySqlPool,
    /// The provider's own options, for connections of its own (a lock's).
    pub options: MySqlConnectOptions,
    pub endpoint: Endpoint,
    /// Statements sent; shared with whatever outlives a borrow of this (lock guards).
    pub queries: Arc<AtomicU64>,
}

impl Sql {
    /// Connects with `options` (the password already set); every session gets
    /// [`SESSION_SQL_MODE`], and `read_only` ones `READ ONLY` transactions, so the server itself
    /// refuses writes.
    pub async fn connect(
        options: MySqlConnectOptions,
        system: &'static System,
        max_connections: u32,
        read_only: bool,
    ) -> Result<Sql, ProviderError> {
        // Statement logging would print SQL text (with password hashes) through `log`.
        let options = options.pipes_as_concat(false).no_engine_substitution(false).disable_statement_logging();
        let endpoint = Endpoint {
            target: format!("mysql://{}:{}", options.get_host(), options.get_port()),
            admin: options.get_username().to_owned(),
            system,
        };
        // One plain connection first: the pool retries a refused connection until its timeout
        // and then reports only that it timed out, hiding the reason.
        let fail = |e: sqlx::Error| endpoint.error(&e, "connecting", &[]);
        let first = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| fail(sqlx::Error::PoolTimedOut))?
            .map_err(fail)?;
        // Closing politely is best effort; the connection has done its job.
        let _ = first.close().await;
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
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
        Ok(Sql { pool, options, endpoint, queries: Arc::new(AtomicU64::new(0)) })
    }

    pub fn count(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn err(&self, e: &sqlx::Error, doing: &str) -> ProviderError {
        self.endpoint.error(e, doing, &[])
    }

    /// A query with string parameters (names are data here, so they are bound, never quoted).
    /// Kept in sqlx's per-connection statement cache (bounded, LRU) although IN lists vary in
    /// length: closing a one-shot statement sends a COM_STMT_CLOSE the server never answers, and
    /// the next small packet then waits ~40 ms on Nagle + delayed ACK (measured on loopback).
    pub async fn rows(&self, sql: &str, binds: &[&str]) -> Result<Vec<MySqlRow>, sqlx::Error> {
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
    pub async fn execute(&self, sql: &str, secret: bool) -> Result<(), sqlx::Error> {
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
    pub async fn run(&self, sql: &str, doing: &str, secrets: &[&str]) -> Result<(), ProviderError> {
        self.execute(sql, !secrets.is_empty()).await.map_err(|e| self.endpoint.error(&e, doing, secrets))
    }

    /// A write with its values bound, never spliced into the SQL text (so secret values stay out
    /// of statement text); a crash point like every write (`aspects_engine::fault`). Returns the
    /// rows it affected; `secrets` are scrubbed from any error (a duplicate-key error quotes
    /// the value).
    pub async fn write(
        &self,
        query: sqlx::query::Query<'_, sqlx::MySql, sqlx::mysql::MySqlArguments>,
        doing: &str,
        secrets: &[&str],
    ) -> Result<u64, ProviderError> {
        let mut query = query;
        let fail = |e: &sqlx::Error| self.endpoint.error(e, doing, secrets);
        let arguments = query.take_arguments().map_err(|e| fail(&sqlx::Error::Encode(e)))?.unwrap_or_default();
        let sql = query.sql();
        let mut attempt = 0;
        let result = loop {
            self.count();
            let result = sqlx::query_with(sql.clone(), arguments.clone()).execute(&self.pool).await;
            match result {
                Err(e) if attempt < CONFLICT_RETRIES && error::number(&e).is_some_and(|n| CONFLICT.contains(&n)) => {
                    attempt += 1;
                    tracing::debug!(attempt, doing, "write lost a lock conflict; retrying");
                    tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                }
                result => break result,
            }
        };
        aspects_engine::fault::after_write();
        result.map(|r| r.rows_affected()).map_err(|e| fail(&e))
    }
}

/// Errors where the server rolled the statement back because a concurrent one won a lock:
/// deadlock (1213), and 1467, which InnoDB returns instead when the deadlock is on a table's
/// AUTO-INC lock (two `INSERT ... SELECT ... WHERE NOT EXISTS` into one table, each holding the
/// other's gap). The statement had no effect, so running it again is safe.
const CONFLICT: &[u16] = &[1213, 1467];
const CONFLICT_RETRIES: u32 = 4;

/// A text column. Servers type some names as binary strings (MySQL 8's `mysql.user`); those
/// are read as bytes. A surprise is an error, never a panic.
pub fn text(row: &MySqlRow, i: usize) -> Result<String, ProviderError> {
    row.try_get::<String, _>(i)
        .or_else(|_| row.try_get::<Vec<u8>, _>(i).map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| ProviderError::new(format!("unexpected result from the server: {e}")))
}

/// An integer column (NULL is None).
pub fn int(row: &MySqlRow, i: usize) -> Result<Option<i64>, ProviderError> {
    row.try_get(i).map_err(|e| ProviderError::new(format!("unexpected result from the server: {e}")))
}

/// `?, ?, ?` for an IN list.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
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

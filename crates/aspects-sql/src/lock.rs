//! The deployment's advisory lock: `GET_LOCK` on a dedicated connection, so the server frees it
//! when that connection closes (a killed apply never leaves a stuck lock), plus a row naming the
//! holder and its connection, so a blocked run can say who holds it and for how long, and never
//! names a holder whose connection is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_engine::provider::{LockGuard, ProviderError};
use async_trait::async_trait;
use sha1::{Digest, Sha1};
use sqlx::mysql::MySqlRow;
use sqlx::{ConnectOptions, Connection, Executor, MySqlConnection, Row};
use tokio::sync::Mutex;

use crate::Server;
use crate::quote::SESSION_SQL_MODE;
use crate::session::int;

/// Held while an apply runs; the lock lives as long as `conn`.
pub struct Lock {
    conn: Mutex<MySqlConnection>,
    name: String,
    holder: String,
    locks_table: String,
    queries: Arc<AtomicU64>,
    /// For messages: which deployment on which server.
    what: String,
}

/// `<prefix>:<deployment>`, hashed when longer than the 64 characters MySQL allows a lock name.
pub fn lock_name(prefix: &str, deployment: &str) -> String {
    let name = format!("{prefix}:{deployment}");
    if name.chars().count() <= 64 {
        name
    } else {
        format!("{prefix}:{}", hex::encode(Sha1::digest(deployment.as_bytes()).as_slice()))
    }
}

/// How long to wait for a holder whose connection is being killed to let go: the server frees
/// the lock when the dying thread finishes, usually within milliseconds.
const DYING_HOLDER_WAIT: u64 = 2;

/// Who holds a busy lock, as far as the server can tell.
enum Busy {
    /// The lock was freed in the meantime.
    Free,
    /// Its connection is being killed, or its process has exited: it will be free in a moment.
    Dying,
    /// A live holder, described for messages.
    Held(String),
}

impl Server {
    pub async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Lock, ProviderError> {
        let name = lock_name(self.sql.endpoint.system.lock_prefix, &self.deployment);
        let what = format!("deployment '{}' on {}", self.deployment, self.sql.endpoint.target);
        let doing = format!("taking the lock of deployment '{}'", self.deployment);
        let fail = |e: sqlx::Error| self.sql.err(&e, &doing);
        let mut conn = self.sql.options.connect().await.map_err(fail)?;
        conn.execute(sqlx::raw_sql(SESSION_SQL_MODE)).await.map_err(fail)?;
        // GET_LOCK takes whole seconds on MySQL; round up so a short wait still waits.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut got = self.get_lock(&mut conn, &name, 0).await.map_err(fail)?;
        if !got {
            match self.busy(&mut conn, &name).await.map_err(fail)? {
                Busy::Free | Busy::Dying => {
                    got = self.get_lock(&mut conn, &name, seconds.max(DYING_HOLDER_WAIT)).await.map_err(fail)?;
                }
                Busy::Held(by) if seconds > 0 => {
                    waiting(format!(
                        "{what} is locked by {by}; waiting up to {} for it",
                        humantime::format_duration(Duration::from_secs(seconds))
                    ));
                    got = self.get_lock(&mut conn, &name, seconds).await.map_err(fail)?;
                }
                Busy::Held(_) => {}
            }
        }
        if got {
            self.sql.count();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "REPLACE INTO {} (name, holder, acquired_at, connection_id) VALUES (?, ?, NOW(), CONNECTION_ID())",
                self.locks_table()
            )))
            .bind(&name)
            .bind(holder)
            .execute(&mut conn)
            .await
            .map_err(fail)?;
            tracing::debug!(lock = name, "lock taken");
            return Ok(Lock {
                conn: Mutex::new(conn),
                name,
                holder: holder.to_owned(),
                locks_table: self.locks_table(),
                queries: self.sql.queries.clone(),
                what,
            });
        }
        let by = match self.busy(&mut conn, &name).await.map_err(fail)? {
            Busy::Held(by) => by,
            Busy::Free | Busy::Dying => "a session that is letting go of it right now".to_owned(),
        };
        // Closing is best effort: the lock was not taken, so nothing depends on it.
        let _ = conn.close().await;
        Err(ProviderError::locked(format!("{what} is locked by {by} (waited {seconds}s)")).with_hint(
            "another apply is running; wait for it or pass --lock-timeout DURATION; the lock frees itself when that process exits",
        ))
    }

    async fn get_lock(&self, conn: &mut MySqlConnection, name: &str, seconds: u64) -> Result<bool, sqlx::Error> {
        self.sql.count();
        let row = sqlx::query("SELECT GET_LOCK(?, ?)").bind(name).bind(seconds).fetch_one(conn).await?;
        Ok(row.try_get::<Option<i64>, _>(0)? == Some(1))
    }

    /// The lock's holder: its connection as the server sees it, and our holder row only when
    /// it names that same connection (a row left by an earlier holder names nobody).
    async fn busy(&self, conn: &mut MySqlConnection, name: &str) -> Result<Busy, sqlx::Error> {
        self.sql.count();
        let row: MySqlRow = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT c.id, l.holder, TIMESTAMPDIFF(SECOND, l.acquired_at, NOW()), \
             (SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = c.id) \
             FROM (SELECT IS_USED_LOCK(?) AS id) c LEFT JOIN {} l ON l.name = ? AND l.connection_id = c.id",
            self.locks_table()
        )))
        .bind(name)
        .bind(name)
        .fetch_one(conn)
        .await?;
        let Some(id) = row.try_get::<Option<i64>, _>(0)? else {
            return Ok(Busy::Free);
        };
        // Seeing other sessions needs PROCESS; without it the holder simply counts as alive.
        let command: Option<String> = row.try_get(3).ok().flatten();
        if command.is_some_and(|c| c.eq_ignore_ascii_case("Killed")) {
            return Ok(Busy::Dying);
        }
        Ok(match (row.try_get::<Option<String>, _>(1)?, row.try_get::<Option<i64>, _>(2)?) {
            // A run on this host that has exited (killed): its connection is closing.
            (Some(holder), _) if aspects_engine::lock::holder_gone(&holder) => Busy::Dying,
            (Some(holder), age) => Busy::Held(format!("{holder} for {}s (connection {id})", age.unwrap_or(0))),
            (None, _) => Busy::Held(format!("another session (connection {id})")),
        })
    }
}

#[async_trait]
impl LockGuard for Lock {
    /// Asks on the lock's own connection: a connection the server killed cannot answer, and a
    /// live one says whether it still holds the lock.
    async fn check(&self) -> Result<(), ProviderError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.conn.lock().await;
        let held = sqlx::query("SELECT IS_USED_LOCK(?) = CONNECTION_ID()")
            .bind(&self.name)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| int(&r, 0).map_err(|e| e.message));
        match held {
            Ok(Some(1)) => Ok(()),
            Ok(_) => Err(ProviderError::new(format!("{} is no longer held by this run", self.what))),
            Err(e) => Err(ProviderError::new(format!(
                "the connection holding the lock of {} is gone ({e}), so the server has released the lock",
                self.what
            ))),
        }
    }

    async fn release(self: Box<Self>) {
        let Lock { conn, name, holder, locks_table, queries, .. } = *self;
        let mut conn = conn.into_inner();
        // Remove the holder row while still holding the lock, then let go. Failures only leave a
        // stale row (never reported: it names a connection that no longer holds the lock), and
        // the lock dies with the connection anyway.
        queries.fetch_add(2, Ordering::Relaxed);
        let deleted =
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {locks_table} WHERE name = ? AND holder = ?")))
                .bind(&name)
                .bind(&holder)
                .execute(&mut conn)
                .await;
        let released = sqlx::query("SELECT RELEASE_LOCK(?)").bind(&name).execute(&mut conn).await;
        if let Err(e) = deleted.and(released) {
            tracing::warn!(lock = name, "releasing the lock: {e}");
        }
        let _ = conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_fit_mysql() {
        assert_eq!(lock_name("aspects", "prod"), "aspects:prod");
        let long = lock_name("aspects", &"x".repeat(100));
        assert!(long.starts_with("aspects:") && long.len() == 48);
        assert_eq!(lock_name("aspects-lms", "prod"), "aspects-lms:prod");
    }
}

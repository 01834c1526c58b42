//! The deployment's advisory lock: `GET_LOCK` on a dedicated connection, so the server frees it
//! when that connection closes (a killed apply never leaves a stuck lock), plus a row naming the
//! holder so a blocked run can say who holds it and for how long.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_engine::provider::{LockGuard, ProviderError};
use async_trait::async_trait;
use sha1::{Digest, Sha1};
use sqlx::{ConnectOptions, Connection, Executor, MySqlConnection};

use crate::connect::{Handle, int, text};
use crate::sql::SESSION_SQL_MODE;

/// Held while an apply runs; the lock lives as long as `conn`.
pub struct Lock {
    conn: MySqlConnection,
    name: String,
    holder: String,
    locks_table: String,
    queries: Arc<AtomicU64>,
}

/// `aspects:<deployment>`, hashed when longer than the 64 characters MySQL allows a lock name.
pub fn lock_name(deployment: &str) -> String {
    let name = format!("aspects:{deployment}");
    if name.chars().count() <= 64 {
        name
    } else {
        format!("aspects:{}", hex::encode(Sha1::digest(deployment.as_bytes()).as_slice()))
    }
}

impl Handle {
    pub(crate) async fn lock(&self, holder: &str, wait: Duration) -> Result<Lock, ProviderError> {
        let name = lock_name(&self.deployment);
        let doing = format!("taking the lock of deployment '{}'", self.deployment);
        let fail = |e: sqlx::Error| self.err(&e, &doing);
        let mut conn = self.options.connect().await.map_err(fail)?;
        conn.execute(sqlx::raw_sql(SESSION_SQL_MODE)).await.map_err(fail)?;
        // GET_LOCK takes whole seconds on MySQL; round up so a short wait still waits.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.count();
        let got =
            sqlx::query("SELECT GET_LOCK(?, ?)").bind(&name).bind(seconds).fetch_one(&mut conn).await.map_err(fail)?;
        if int(&got, 0)? == Some(1) {
            self.count();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "REPLACE INTO {} (name, holder, acquired_at) VALUES (?, ?, NOW())",
                self.locks_table()
            )))
            .bind(&name)
            .bind(holder)
            .execute(&mut conn)
            .await
            .map_err(fail)?;
            tracing::debug!(lock = name, "lock taken");
            return Ok(Lock {
                conn,
                name,
                holder: holder.to_owned(),
                locks_table: self.locks_table(),
                queries: self.queries.clone(),
            });
        }
        self.count();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT holder, TIMESTAMPDIFF(SECOND, acquired_at, NOW()) FROM {} WHERE name = ?",
            self.locks_table()
        )))
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .map_err(fail)?;
        // Closing is best effort: the lock was not taken, so nothing depends on it.
        let _ = conn.close().await;
        let by = match row {
            Some(r) => format!("{} for {}s", text(&r, 0)?, int(&r, 1)?.unwrap_or(0)),
            None => "another session".to_owned(),
        };
        Err(ProviderError::locked(format!(
            "deployment '{}' on {} is locked by {by} (waited {}s)",
            self.deployment, self.target, seconds
        ))
        .with_hint(
            "another apply is running; wait for it or pass --lock-timeout DURATION; the lock frees itself when that process exits",
        ))
    }
}

#[async_trait]
impl LockGuard for Lock {
    async fn release(self: Box<Self>) {
        let Lock { mut conn, name, holder, locks_table, queries } = *self;
        // Remove the holder row while still holding the lock, then let go. Failures only leave a
        // stale row (overwritten by the next holder) and the lock dies with the connection anyway.
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
        assert_eq!(lock_name("prod"), "aspects:prod");
        let long = lock_name(&"x".repeat(100));
        assert!(long.starts_with("aspects:") && long.len() == 48);
    }
}

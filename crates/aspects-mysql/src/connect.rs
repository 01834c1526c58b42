//! Opening handles: settings from `[providers.mysql]`, the read-only and write pools (an
//! [`aspects_sql::Sql`] each, whose statement helpers every other module goes through: they count
//! statements and keep secret-bearing SQL out of logs), and what the server tells us at connect
//! time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aspects_core::{Change, KindSchema, Live, Orphan, ProviderConfig, ProviderId, Resource, SystemSchema};
use aspects_engine::provider::{
    Connector, Invalid, LockGuard, ProviderError, ProviderRead, ProviderWrite, SecretRotation,
};
use aspects_sql::Server;
use async_trait::async_trait;
use sqlx::Row;

pub(crate) use aspects_sql::{int, placeholders, text};

use crate::error;
use crate::flavour::Flavour;
use crate::password;
use crate::privileges::LevelSets;
use crate::schema;

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
        handle.db.ensure_meta().await?;
        Ok(Arc::new(Writer(handle)))
    }
}

/// Plan-time handle: its sessions are `READ ONLY`, so the server itself refuses any write.
pub struct Reader(Handle);

/// Apply-time handle.
pub struct Writer(Handle);

/// What both handles share. Deliberately not `Debug`: the connect options hold the password.
pub struct Handle {
    /// The pool (with the provider's own connect options, for the lock's dedicated connection,
    /// the server and user named in messages, the statement counter), the meta database with
    /// the ownership records and lock, and the deployment.
    pub(crate) db: Server,
    /// `mysql` or `mysql.lms`, for the orphans this handle reports.
    pub(crate) provider: ProviderId,
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
}

impl Handle {
    async fn connect(config: &ProviderConfig, deployment: &str, read_only: bool) -> Result<Handle, ProviderError> {
        let (db, max_concurrency) = Server::connect(config, deployment, &error::MYSQL, read_only).await?;
        let mut handle = Handle {
            db,
            provider: config.id.clone(),
            max_concurrency,
            flavour: Flavour::parse("MariaDB"),
            sha2_rounds: password::CACHING_SHA2_ROUNDS,
            charsets: BTreeMap::new(),
            collations: BTreeMap::new(),
            current: Default::default(),
            auth_plugins: Default::default(),
            levels: LevelSets::default(),
        };
        handle.learn_server().await?;
        Ok(handle)
    }

    /// Version flavour, default collations and what `ALL` means at each level: the normaliser
    /// needs these and they cannot change while we run.
    async fn learn_server(&mut self) -> Result<(), ProviderError> {
        let doing = "reading server capabilities";
        let rows =
            self.db.sql.rows("SELECT VERSION(), CURRENT_USER()", &[]).await.map_err(|e| self.db.sql.err(&e, doing))?;
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
            .db
            .sql
            .rows(
                "SELECT PLUGIN_NAME FROM information_schema.PLUGINS \
                 WHERE PLUGIN_TYPE = 'AUTHENTICATION' AND PLUGIN_STATUS = 'ACTIVE'",
                &[],
            )
            .await
            .map_err(|e| self.db.sql.err(&e, doing))?
            .iter()
            .map(|r| Ok(text(r, 0)?.to_lowercase()))
            .collect::<Result<_, ProviderError>>()?;
        // MariaDB 10.10+ adds FULL_COLLATION_NAME (the name a database reports) as column 3.
        self.collations = self
            .db
            .sql
            .rows("SELECT * FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY", &[])
            .await
            .map_err(|e| self.db.sql.err(&e, doing))?
            .iter()
            .map(|r| Ok((text(r, if r.len() > 2 { 2 } else { 0 })?.to_lowercase(), text(r, 1)?.to_lowercase())))
            .collect::<Result<_, ProviderError>>()?;
        self.charsets = self
            .db
            .sql
            .rows("SELECT CHARACTER_SET_NAME, DEFAULT_COLLATE_NAME FROM information_schema.CHARACTER_SETS", &[])
            .await
            .map_err(|e| self.db.sql.err(&e, doing))?
            .iter()
            .map(|r| Ok((text(r, 0)?.to_lowercase(), text(r, 1)?.to_lowercase())))
            .collect::<Result<_, ProviderError>>()?;
        let columns = self.db.sql
            .rows(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' \
                 AND ((TABLE_NAME = 'db' AND COLUMN_NAME LIKE '%\\_priv') OR (TABLE_NAME = 'tables_priv' AND COLUMN_NAME = 'Table_priv')) \
                 ORDER BY ORDINAL_POSITION",
                &[],
            )
            .await
            .map_err(|e| self.db.sql.err(&e, doing))?;
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
            self.db.sql.count();
            let rounds = sqlx::raw_sql("SHOW GLOBAL VARIABLES LIKE 'caching_sha2_password_digest_rounds'")
                .fetch_all(&self.db.sql.pool)
                .await
                .map_err(|e| self.db.sql.err(&e, doing))?;
            if let Some(r) = rounds.first() {
                let n: u32 = text(r, 1)?.parse().unwrap_or(password::CACHING_SHA2_ROUNDS);
                self.sha2_rounds = (n / 1000 * 1000).max(password::CACHING_SHA2_ROUNDS);
            }
        }
        self.db.sql.count();
        let privileges = sqlx::raw_sql("SHOW PRIVILEGES")
            .fetch_all(&self.db.sql.pool)
            .await
            .map_err(|e| self.db.sql.err(&e, doing))?;
        let names = privileges.iter().map(|r| text(r, 0)).collect::<Result<Vec<_>, _>>()?;
        self.levels.set_global(names.iter().map(String::as_str));
        self.levels.fill_missing();
        Ok(())
    }
}

/// The read side is the same for both handles.
macro_rules! provider_read {
    ($handle:ty) => {
        #[async_trait]
        impl ProviderRead for $handle {
            fn target(&self) -> String {
                self.0.db.sql.endpoint.target.clone()
            }
            fn max_concurrency(&self) -> usize {
                self.0.max_concurrency
            }
            fn queries(&self) -> u64 {
                self.0.db.sql.queries.load(Ordering::Relaxed)
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
        Ok(Box::new(self.0.db.lock(holder, wait, waiting).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::ident;
    use aspects_core::Value;

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
        let err =
            h.db.sql.run(&format!("CREATE DATABASE {}", ident(&name)), "creating a database", &[]).await.unwrap_err();
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
        let raw = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&h.db.sql.pool).await.unwrap_err();
        assert!(raw.to_string().contains(pw), "the server does echo the statement: {raw}");
        let err = h.db.sql.run(&sql, "creating a user", &secrets).await.unwrap_err();
        assert!(!err.message.contains(pw) && !err.message.contains(&hash), "{err}");
        assert!(err.message.contains("near (statement text withheld)"), "{err}");
        assert!(err.message.contains("MySQL error 1064"), "{err}");
    }
}

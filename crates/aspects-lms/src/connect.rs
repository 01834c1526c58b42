//! Opening handles from `[providers.lms]`, and the engine's traits on them. Plan handles run in
//! `READ ONLY` sessions ([`aspects_sql::Sql`]), so the server itself refuses their writes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aspects_core::{Change, KindSchema, Live, Orphan, ProviderConfig, ProviderId, Resource, SystemSchema, Value};
use aspects_engine::provider::{Connector, Invalid, LockGuard, ProviderError, ProviderRead, ProviderWrite};
use aspects_sql::{Server, System};
use async_trait::async_trait;

use crate::fernet;
use crate::schema::{self, DEFAULT_META_DATABASE, ROUTER};

pub static LMS: System = System {
    server: "the LMS database",
    block: "[providers.lms]",
    privileges: "the provider user needs SELECT, INSERT, UPDATE, DELETE on the LMS's database and CREATE, SELECT, \
                 INSERT, UPDATE, DELETE on the meta database (`meta_database`); e.g. \
                 `GRANT ALL ON aspects_lms_meta.* TO 'openedx'@'%'`",
    meta_default: DEFAULT_META_DATABASE,
    // Its own lock name: the MySQL provider may lock the same server in the same apply.
    lock_prefix: "aspects-lms",
    url_check: schema::check_lms_url,
};

/// The LMS system: register it with the engine.
pub struct Lms;

#[async_trait]
impl Connector for Lms {
    fn schema(&self) -> SystemSchema {
        schema::schema()
    }

    async fn connect_read(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderRead>, ProviderError> {
        Ok(Arc::new(Handle::connect(config, deployment, true).await?))
    }

    async fn connect_write(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderWrite>, ProviderError> {
        let handle = Handle::connect(config, deployment, false).await?;
        handle.db.ensure_meta().await?;
        Ok(Arc::new(handle))
    }
}

/// One connection pool on the LMS's database. Deliberately not `Debug`: it holds the password
/// and the Fernet key.
pub struct Handle {
    pub(crate) db: Server,
    pub(crate) provider: ProviderId,
    max_concurrency: usize,
    /// The key RouterConfiguration's credentials are encrypted with, when configured.
    pub(crate) fernet: Option<fernet::Key>,
    pub(crate) hash_client_secrets: bool,
}

impl Handle {
    async fn connect(config: &ProviderConfig, deployment: &str, read_only: bool) -> Result<Handle, ProviderError> {
        let (db, max_concurrency) = Server::connect(config, deployment, &LMS, read_only).await?;
        let attr = |name: &str| config.attrs.get(name);
        let fernet = match attr("fernet_key") {
            Some(Value::Sensitive(s)) => Some(fernet::Key::derive(s.expose())),
            Some(Value::Str(s)) => Some(fernet::Key::derive(s)),
            _ => None,
        };
        Ok(Handle {
            db,
            provider: config.id.clone(),
            max_concurrency,
            fernet,
            hash_client_secrets: matches!(attr("hash_client_secrets"), Some(Value::Bool(true))),
        })
    }
}

#[async_trait]
impl ProviderRead for Handle {
    fn target(&self) -> String {
        self.db.sql.endpoint.target.clone()
    }
    fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }
    fn queries(&self) -> u64 {
        self.db.sql.queries.load(Ordering::Relaxed)
    }
    fn normalise(&self, kind: &KindSchema, resource: &mut Resource) {
        crate::read::normalise(kind, resource)
    }
    fn check(&self, kind: &KindSchema, _resource: &Resource) -> Vec<Invalid> {
        if kind.kind == ROUTER && self.fernet.is_none() {
            return vec![
                Invalid::new("route_url", "RouterConfiguration's credentials are encrypted with the LMS's FERNET_KEYS")
                    .with_hint(
                        "set `fernet_key = \"${secrets.NAME}\"` in [providers.lms] to the first of the LMS's \
                         FERNET_KEYS (its SECRET_KEY when FERNET_KEYS is unset)",
                    ),
            ];
        }
        Vec::new()
    }
    async fn read(&self, kind: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        self.read_kind(kind, desired).await
    }
    async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        self.orphans_of(desired).await
    }
}

#[async_trait]
impl ProviderWrite for Handle {
    async fn apply(&self, kind: &KindSchema, change: &Change, desired: Option<&Resource>) -> Result<(), ProviderError> {
        self.apply_change(kind, change, desired).await
    }
    async fn prune(&self, desired: &[Resource]) -> Result<usize, ProviderError> {
        self.prune_records(desired).await
    }
    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Box<dyn LockGuard>, ProviderError> {
        Ok(Box::new(self.db.lock(holder, wait, waiting).await?))
    }
}

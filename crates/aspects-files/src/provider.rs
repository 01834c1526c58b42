//! The handles: settings from `[providers.files]`, normalising (rendering), reading files back,
//! orphans from the records, and the lock (the engine's `flock` on `<state_dir>/lock`).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aspects_core::{
    Address, Change, Desired, KindSchema, Live, Orphan, ProviderConfig, ProviderId, Resource, SystemSchema, Text, Value,
};
use aspects_engine::ownership::{State, fill_defaults, mark_owner};
use aspects_engine::provider::{Connector, Invalid, LockGuard, ProviderError, ProviderRead, ProviderWrite};
use async_trait::async_trait;

use crate::schema::{self, FILE, RALPH_AUTH, parse_mode};
use crate::state::{self, Records};
use crate::{paths, ralph, render};

/// The files system: register it with the engine.
pub struct Files;

#[async_trait]
impl Connector for Files {
    fn schema(&self) -> SystemSchema {
        schema::schema()
    }

    async fn connect_read(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderRead>, ProviderError> {
        Ok(Arc::new(Handle::new(config, deployment)))
    }

    async fn connect_write(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderWrite>, ProviderError> {
        Ok(Arc::new(Handle::new(config, deployment)))
    }
}

/// What the live side of `on_change` shows while a run that changed the content has not run it.
const PENDING: &str = "(not yet run after the last content change)";

pub struct Handle {
    id: ProviderId,
    pub(crate) deployment: String,
    pub(crate) root: PathBuf,
    pub(crate) state_dir: PathBuf,
    templates: Option<PathBuf>,
    max_concurrency: usize,
    pub(crate) ops: AtomicU64,
    /// Serialises read-modify-write of this deployment's records file within the run.
    pub(crate) records: tokio::sync::Mutex<()>,
}

impl Handle {
    pub fn new(config: &ProviderConfig, deployment: &str) -> Self {
        let get = |name: &str| config.attrs.get(name).and_then(Value::as_str);
        let root = PathBuf::from(get("root").unwrap_or("/"));
        // A root that is itself a link is the operator's choice; links below it are refused.
        let root = root.canonicalize().unwrap_or(root);
        let state_dir = match get("state_dir") {
            Some(d) => PathBuf::from(d),
            None if root == Path::new("/") => PathBuf::from("/var/lib/aspects"),
            None => root.join(".aspects"),
        };
        // Relative to the plan file that sets it (`origin` is `file:line:col`).
        let plan_dir = config.origin.rsplitn(3, ':').nth(2).and_then(|f| Path::new(f).parent()).map(Path::to_owned);
        let templates = get("templates").map(|t| plan_dir.unwrap_or_default().join(t));
        let max_concurrency = config.attrs.get("max_concurrency").and_then(|v| match v {
            Value::Int(n) => usize::try_from(*n).ok(),
            _ => None,
        });
        Self {
            id: config.id.clone(),
            deployment: deployment.to_owned(),
            root,
            state_dir,
            templates,
            max_concurrency: max_concurrency.unwrap_or(4),
            ops: AtomicU64::new(0),
            records: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn full_path(&self, r: &Resource) -> Result<PathBuf, ProviderError> {
        paths::resolve(&self.root, &self.state_dir, r.str("path").unwrap_or_default())
            .map_err(|e| ProviderError::new(format!("{}: {e}", r.address)))
    }

    /// The rendered content (normalising already rendered it; a template error is reported by
    /// `check` before anything runs).
    pub(crate) fn content(&self, r: &Resource) -> Result<Text, ProviderError> {
        if r.address.kind == RALPH_AUTH {
            // Hashes that still verify are kept: the file as it is now is an input.
            let live = self.full_path(r).ok().and_then(|p| std::fs::read(p).ok());
            let cost = match r.get("bcrypt_cost") {
                Some(Value::Int(n)) => u32::try_from(*n).unwrap_or(12),
                _ => 12,
            };
            return ralph::content(r, live.as_deref(), cost)
                .map_err(|e| ProviderError::new(format!("{}: {e}", r.address)));
        }
        match r.get("content") {
            Some(Value::Text(t)) => Ok(Text::clone(t)),
            _ => render::render(r, self.templates.as_deref())
                .map_err(|e| ProviderError::new(format!("{}: the template does not render: {e}", r.address))),
        }
    }

    pub(crate) fn load(&self) -> Result<BTreeMap<String, Records>, ProviderError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        state::read_all(&self.state_dir).map_err(ProviderError::new)
    }

    fn read_one(&self, r: &Resource, all: &BTreeMap<String, Records>) -> Result<Option<Live>, ProviderError> {
        let path = self.full_path(r)?;
        let key = path.to_string_lossy().into_owned();
        self.ops.fetch_add(1, Ordering::Relaxed);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ProviderError::new(format!("{}: reading {}: {e}", r.address, path.display()))),
        };
        let meta = std::fs::metadata(&path).map_err(|e| ProviderError::new(format!("{}: {e}", path.display())))?;
        let mut live = Live::default();
        let mine = all.get(&self.deployment).and_then(|recs| recs.files.get(&key));
        if let Some(rec) = mine {
            mark_owner(&mut live, &self.deployment, &self.deployment, rec.state());
        }
        for (owner, recs) in all.iter().filter(|(d, _)| **d != self.deployment) {
            if let Some(rec) = recs.files.get(&key) {
                mark_owner(&mut live, &self.deployment, owner, rec.state());
            }
        }
        let mut attrs = BTreeMap::from([
            ("path".to_owned(), r.get("path").cloned().unwrap_or_else(|| Value::from(key.as_str()))),
            ("mode".to_owned(), Value::Str(format!("{:04o}", meta.permissions().mode() & 0o7777))),
        ]);
        if r.address.kind == RALPH_AUTH {
            attrs.insert("users".into(), ralph::live_users(r, &bytes));
            attrs.extend(r.get("bcrypt_cost").map(|c| ("bcrypt_cost".to_owned(), c.clone())));
        } else {
            // Masked with the desired secrets and with whatever sits where the last write put one.
            let mut content = Text::plain(String::from_utf8_lossy(&bytes));
            if let Some(Value::Text(desired)) = r.get("content") {
                for s in desired.spans() {
                    content.mark(&desired.expose()[s.clone()]);
                }
            }
            if let Some(rec) = mine {
                rec.mask(&mut content);
            }
            attrs.insert("content".into(), Value::Text(Box::new(content)));
        }
        if r.get("owner").is_some() {
            let user = nix::unistd::User::from_uid(meta.uid().into()).ok().flatten();
            attrs.insert("owner".into(), Value::Str(user.map_or_else(|| meta.uid().to_string(), |u| u.name)));
        }
        if r.get("group").is_some() {
            let group = nix::unistd::Group::from_gid(meta.gid().into()).ok().flatten();
            attrs.insert("group".into(), Value::Str(group.map_or_else(|| meta.gid().to_string(), |g| g.name)));
        }
        if let Some(argv) = r.get("on_change") {
            let pending = mine.is_some_and(|rec| rec.on_change_pending);
            attrs.insert("on_change".into(), if pending { Value::from(PENDING) } else { argv.clone() });
        }
        live.attrs = attrs;
        Ok(Some(live))
    }
}

#[async_trait]
impl ProviderRead for Handle {
    fn target(&self) -> String {
        format!("files under {}", self.root.display())
    }

    fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    fn queries(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    fn normalise(&self, kind: &KindSchema, resource: &mut Resource) {
        fill_defaults(kind, resource);
        if let Some(mode) = resource.str("mode").and_then(parse_mode) {
            resource.attrs.insert("mode".into(), Value::Str(format!("{mode:04o}")));
        }
        // The rendered text is what is compared; its sources are inputs, not live properties.
        if resource.address.kind == FILE
            && let Ok(text) = render::render(resource, self.templates.as_deref())
        {
            resource.attrs.insert("content".into(), Value::Text(Box::new(text)));
            resource.attrs.remove("template");
            resource.attrs.remove("context");
        }
    }

    fn check(&self, _kind: &KindSchema, r: &Resource) -> Vec<Invalid> {
        let mut out = Vec::new();
        if let Err(e) = paths::resolve(&self.root, &self.state_dir, r.str("path").unwrap_or_default()) {
            out.push(
                Invalid::new("path", e).with_hint("write a path inside the provider's root, with no links on the way"),
            );
        }
        if r.address.kind == FILE && !matches!(r.get("content"), Some(Value::Text(_))) {
            let attr = if r.get("template").is_some() { "template" } else { "content" };
            if let Err(e) = render::render(r, self.templates.as_deref()) {
                out.push(Invalid::new(attr, format!("the template does not render: {e}")).with_hint(
                    "every name it uses must be in `context` (Tutor's names), and {% include %}d files under `templates`",
                ));
            }
        }
        if let Some(name) = r.str("owner")
            && let Ok(None) = nix::unistd::User::from_name(name)
        {
            out.push(Invalid::new("owner", format!("no user named {name:?} on this machine")));
        }
        if let Some(name) = r.str("group")
            && let Ok(None) = nix::unistd::Group::from_name(name)
        {
            out.push(Invalid::new("group", format!("no group named {name:?} on this machine")));
        }
        out
    }

    async fn read(&self, _kind: &KindSchema, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let all = self.load()?;
        desired.iter().map(|r| self.read_one(r, &all)).collect()
    }

    async fn orphans(&self, desired: &[Resource]) -> Result<Vec<Orphan>, ProviderError> {
        let all = self.load()?;
        let Some(mine) = all.get(&self.deployment) else { return Ok(Vec::new()) };
        let planned: Vec<PathBuf> = desired.iter().filter_map(|r| self.full_path(r).ok()).collect();
        let mut out = Vec::new();
        for (path, rec) in &mine.files {
            let state = rec.state();
            if planned.iter().any(|p| p.as_os_str() == path.as_str()) || !state.owns() || !Path::new(path).exists() {
                continue;
            }
            let identity = BTreeMap::from([("path".to_owned(), Value::from(path.as_str()))]);
            out.push(Orphan {
                address: Address::new(rec.kind.clone(), rec.name.clone()),
                attrs: identity.clone(),
                identity,
                provider: self.id.clone(),
                reason: "not in the plan".into(),
                adopted: state == State::Adopted,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl ProviderWrite for Handle {
    async fn apply(&self, kind: &KindSchema, change: &Change, desired: Option<&Resource>) -> Result<(), ProviderError> {
        crate::apply::apply(self, kind, change, desired).await
    }

    async fn prune(&self, desired: &[Resource]) -> Result<usize, ProviderError> {
        crate::apply::prune(self, desired).await
    }

    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        waiting: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Box<dyn LockGuard>, ProviderError> {
        aspects_engine::lock::flock(&self.state_dir.join("lock"), holder, wait, waiting).await
    }
}

/// `aspects render --out DIR`: every file resource of `desired` rendered into `out`, under its
/// path relative to its provider's root. Touches no service, runs no `on_change`. Returns the
/// written paths.
pub fn render_all(desired: &Desired, out: &Path) -> Result<Vec<PathBuf>, ProviderError> {
    let mut written = Vec::new();
    for r in desired.resources.values().filter(|r| [FILE, RALPH_AUTH].contains(&r.address.kind.as_str())) {
        let config = desired.providers.get(&r.provider).ok_or_else(|| ProviderError::new("no provider"))?;
        let handle = Handle::new(config, &desired.deployment);
        let path = handle.full_path(r)?;
        let rel = path.strip_prefix(&handle.root).map_err(|e| ProviderError::new(e.to_string()))?;
        let target = out.join(rel);
        let text = handle.content(r)?;
        let mode = r.str("mode").and_then(parse_mode).unwrap_or(0o644);
        crate::apply::write_atomically(&target, text.expose().as_bytes(), mode, None)
            .map_err(|e| ProviderError::new(format!("{}: {e}", r.address)))?;
        written.push(target);
    }
    Ok(written)
}

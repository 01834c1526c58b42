//! The secrets file: generated secrets (and the fingerprint key) kept as `name = "value"` lines in
//! a 0600 file beside the plan, and the rotations in progress under `[__pending.NAME]`. It is
//! never printed; a file others can read is refused.
//!
//! A rotation writes its new value here as pending *before* any target changes and promotes it
//! only once every consumer uses it, so the file always holds every value a live consumer may
//! still need, and a re-run after a crash reuses the pending value instead of making a third.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aspects_core::Secret;
use hmac::{KeyInit, Mac};
use rand::RngExt;

/// Not valid secret names (names start with a letter), so they cannot collide.
const FINGERPRINT_KEY: &str = "__fingerprint_key";

/// The file's shape: plain values, then one table per rotation in progress.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Body {
    #[serde(flatten)]
    values: BTreeMap<String, String>,
    #[serde(rename = "__pending", default, skip_serializing_if = "BTreeMap::is_empty")]
    pending: BTreeMap<String, PendingEntry>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct PendingEntry {
    /// The new value of a `generate` secret. Env and file secrets keep theirs in their source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// When the rotation began (RFC 3339), for messages and the journal.
    started: String,
}

/// A rotation in progress, as the secrets file records it.
#[derive(Clone)]
pub struct Pending {
    /// The new value, for a `generate` secret.
    pub value: Option<Secret>,
    pub started: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("secrets file {path} is readable by other users (mode {mode:o})")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{what} {path} belongs to uid {owner}, not to the user running aspects (uid {me})")]
    Owner { what: &'static str, path: PathBuf, owner: u32, me: u32 },
    #[error("the secrets file's folder {path} is writable by other users (mode {mode:o})")]
    FolderPermissions { path: PathBuf, mode: u32 },
    #[error("cannot read secrets file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("secrets file {path} is not `name = \"value\"` lines: {message}")]
    Format { path: PathBuf, message: String },
    #[error("cannot write secrets file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl StoreError {
    pub fn hint(&self) -> String {
        match self {
            StoreError::Permissions { path, .. } => format!("run `chmod 600 {}`", path.display()),
            // As ssh does with its keys: anyone who can write it could plant the passwords.
            StoreError::Owner { path, me, .. } => format!(
                "aspects trusts only a secrets file and folder of its own user; if it is yours, `chown {me} {}`, otherwise point at your own file with --secrets PATH",
                path.display()
            ),
            StoreError::FolderPermissions { path, .. } => format!("run `chmod go-w {}`", path.display()),
            StoreError::Read { .. } | StoreError::Write { .. } => {
                "check the path (--secrets or ASPECTS_SECRETS) and its permissions".into()
            }
            StoreError::Format { .. } => "each line must be name = \"value\"; restore the file from a backup".into(),
        }
    }
}

pub struct SecretStore {
    path: PathBuf,
    values: BTreeMap<String, String>,
    pending: BTreeMap<String, PendingEntry>,
    dirty: bool,
    /// Held from before reading until the generated secrets are saved, so two runs starting
    /// together cannot each generate (and one of them lose) the same secret.
    lock: Option<fs::File>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore").field("path", &self.path).field("names", &self.values.keys()).finish()
    }
}

impl SecretStore {
    /// Opens the store for generating: takes an exclusive lock on its directory first (released
    /// by [`SecretStore::unlock`] or on drop), then reads it.
    ///
    /// The lock is on the folder *above* the secrets folder, which exists before the first save
    /// creates the secrets folder, so every run using this file locks the same directory.
    pub(crate) fn open_for_generating(path: &Path) -> Result<Self, StoreError> {
        let dir = folder(path);
        let above = folder(&dir);
        let lock = fs::File::open(&above)
            .and_then(|d| d.lock().map(|()| d))
            .map_err(|source| StoreError::Read { path: above, source })?;
        if dir.exists() {
            check_folder(&dir)?;
        }
        let mut store = Self::open(path)?;
        store.lock = Some(lock);
        Ok(store)
    }

    /// A store that reads nothing (validate, graph).
    pub(crate) fn unread(path: &Path) -> Self {
        Self { path: path.to_owned(), values: BTreeMap::new(), pending: BTreeMap::new(), dirty: false, lock: None }
    }

    pub(crate) fn unlock(&mut self) {
        self.lock = None;
    }

    /// Opens the store; a missing file is an empty store (created on first save).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut store = Self::unread(path);
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(source) => {
                return Err(StoreError::Read { path: path.to_owned(), source });
            }
        };
        check_owner("secrets file", path, &meta)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Permissions { path: path.to_owned(), mode });
        }
        check_folder(&folder(path))?;
        let text = fs::read_to_string(path).map_err(|source| StoreError::Read { path: path.to_owned(), source })?;
        // Deliberately not echoing the parser's message: it quotes the offending line.
        let body: Body = toml::from_str(&text).map_err(|e| StoreError::Format {
            path: path.to_owned(),
            message: e.span().map_or("unreadable".into(), |s| format!("error at byte {}", s.start)),
        })?;
        (store.values, store.pending) = (body.values, body.pending);
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Option<Secret> {
        self.values.get(name).map(|v| Secret::new(v.as_str()))
    }

    /// Every value the file holds, pending ones included: diagnostics and messages mask them,
    /// even before any secret is read.
    pub fn values(&self) -> impl Iterator<Item = Secret> + '_ {
        let pending = self.pending.values().filter_map(|p| p.value.as_deref());
        self.values.values().map(String::as_str).chain(pending).map(Secret::new)
    }

    /// The rotation of `name` in progress, if any.
    pub fn pending(&self, name: &str) -> Option<Pending> {
        self.pending
            .get(name)
            .map(|p| Pending { value: p.value.as_deref().map(Secret::new), started: p.started.clone() })
    }

    /// Names of the secrets whose rotation is in progress.
    pub fn pending_names(&self) -> impl Iterator<Item = &str> {
        self.pending.keys().map(String::as_str)
    }

    /// Records a rotation of `name` towards `value` (`None`: the value lives in an env or file
    /// source). Saved by [`SecretStore::save`].
    pub fn set_pending(&mut self, name: &str, value: Option<&Secret>, started: &str) {
        let entry = PendingEntry { value: value.map(|v| v.expose().to_owned()), started: started.to_owned() };
        self.pending.insert(name.to_owned(), entry);
        self.dirty = true;
    }

    /// Ends the rotation of `name`: its pending value becomes the current one.
    pub fn promote(&mut self, name: &str) {
        if let Some(p) = self.pending.remove(name) {
            if let Some(v) = p.value {
                self.values.insert(name.to_owned(), v);
            }
            self.dirty = true;
        }
    }

    /// Re-reads the file under the folder lock, lets `change` modify it, and saves it: how a
    /// rotation records and promotes its pending values without losing what another run saved
    /// since this one loaded.
    pub fn update(path: &Path, change: impl FnOnce(&mut SecretStore)) -> Result<(), StoreError> {
        let mut store = Self::open_for_generating(path)?;
        change(&mut store);
        store.save()
    }

    pub(crate) fn set(&mut self, name: &str, value: &Secret) {
        self.values.insert(name.to_owned(), value.expose().to_owned());
        self.dirty = true;
    }

    /// The key that makes secret fingerprints in saved plans useless to anyone without this file,
    /// if the store has one (`Loaded::save_secrets` makes it).
    pub fn existing_fingerprint_key(&self) -> Option<Secret> {
        self.get(FINGERPRINT_KEY)
    }

    pub(crate) fn fingerprint_key(&mut self) -> Secret {
        if let Some(k) = self.get(FINGERPRINT_KEY) {
            return k;
        }
        let key = generate(48);
        self.set(FINGERPRINT_KEY, &key);
        key
    }

    /// Writes atomically (temp file created 0600, then renamed over the old one).
    pub(crate) fn save(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        let err = |source| StoreError::Write { path: self.path.clone(), source };
        let dir = folder(&self.path);
        if !dir.exists() {
            fs::DirBuilder::new().mode(0o700).create(&dir).map_err(err)?;
        }
        let body = Body { values: self.values.clone(), pending: self.pending.clone() };
        let body = toml::to_string(&body).expect("a map of strings serialises");
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(err)?;
        f.write_all(b"# Secrets generated by aspects. Keep this file private (mode 0600) and backed up.\n")
            .and_then(|()| f.write_all(body.as_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)?;
        // The rename is durable only once the folder's entry is on disk: a rotation that
        // believes its pending value saved must find it after a power cut.
        fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(err)?;
        self.dirty = false;
        Ok(())
    }
}

fn folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn check_owner(what: &'static str, path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    let me = rustix::process::geteuid().as_raw();
    match meta.uid() {
        owner if owner == me => Ok(()),
        owner => Err(StoreError::Owner { what, path: path.to_owned(), owner, me }),
    }
}

/// The folder must be the user's own and not writable by others, or the file could be swapped.
fn check_folder(dir: &Path) -> Result<(), StoreError> {
    let meta = fs::metadata(dir).map_err(|source| StoreError::Read { path: dir.to_owned(), source })?;
    check_owner("the secrets file's folder", dir, &meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(StoreError::FolderPermissions { path: dir.to_owned(), mode });
    }
    Ok(())
}

/// A random alphanumeric secret of `len` characters.
pub fn generate(len: usize) -> Secret {
    let s: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(len).map(char::from).collect();
    Secret::new(s)
}

/// A keyed fingerprint of a secret: shows whether it changed without revealing it.
pub fn fingerprint(key: &Secret, name: &str, value: &Secret) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac.update(value.expose().as_bytes());
    format!("hmac-sha256:{}", hex::encode(&mac.finalize().into_bytes()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aspects-store-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir.join("s.secrets.toml")
    }

    #[test]
    fn saves_0600_and_reads_back() {
        let path = tmp("rt");
        let _ = fs::remove_file(&path);
        let mut s = SecretStore::open(&path).unwrap();
        s.set("a", &Secret::new("va\"l\\ue"));
        s.save().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(SecretStore::open(&path).unwrap().get("a").unwrap().expose(), "va\"l\\ue");
    }

    #[test]
    fn pending_rotations_round_trip_and_promote() {
        let path = tmp("pending");
        let _ = fs::remove_file(&path);
        let mut s = SecretStore::open(&path).unwrap();
        s.set("a", &Secret::new("old"));
        s.set("e", &Secret::new("unrelated"));
        s.set_pending("a", Some(&Secret::new("new")), "2026-12-01T10:00:00Z");
        s.set_pending("env_one", None, "2026-12-01T10:00:00Z");
        s.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("[__pending.a]"), "{text}");
        let mut s = SecretStore::open(&path).unwrap();
        assert_eq!(s.get("a").unwrap().expose(), "old");
        assert_eq!(s.pending("a").unwrap().value.unwrap().expose(), "new");
        assert!(s.pending("env_one").unwrap().value.is_none());
        assert_eq!(s.pending_names().collect::<Vec<_>>(), ["a", "env_one"]);
        assert!(s.values().any(|v| v.expose() == "new"), "pending values are masked too");
        s.promote("a");
        s.promote("env_one");
        s.save().unwrap();
        let s = SecretStore::open(&path).unwrap();
        assert_eq!(s.get("a").unwrap().expose(), "new");
        assert!(s.pending("a").is_none() && s.get("env_one").is_none());
        assert_eq!(s.get("e").unwrap().expose(), "unrelated");
        assert!(!fs::read_to_string(&path).unwrap().contains("__pending"));
    }

    #[test]
    fn update_keeps_what_another_run_saved_since() {
        let path = tmp("update");
        let _ = fs::remove_file(&path);
        let mut first = SecretStore::open(&path).unwrap();
        first.set("a", &Secret::new("va"));
        first.save().unwrap();
        let stale = SecretStore::open(&path).unwrap();
        SecretStore::update(&path, |s| s.set("b", &Secret::new("vb"))).unwrap();
        SecretStore::update(stale.path(), |s| s.set_pending("a", Some(&Secret::new("va2")), "t")).unwrap();
        let s = SecretStore::open(&path).unwrap();
        assert_eq!(s.get("b").unwrap().expose(), "vb");
        assert_eq!(s.pending("a").unwrap().value.unwrap().expose(), "va2");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn refuses_a_file_others_can_read() {
        let path = tmp("perm");
        fs::write(&path, "a = \"b\"\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretStore::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::Permissions { mode: 0o644, .. }), "{e}");
    }

    #[test]
    fn refuses_a_file_or_folder_of_another_user_or_a_folder_others_can_write() {
        use std::os::unix::fs::chown;
        let path = tmp("owner");
        let dir = path.parent().unwrap().to_owned();
        fs::write(&path, "a = \"b\"\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SecretStore::open(&path).is_ok());
        // The tests run as root, who could read it anyway: ownership is what is checked.
        chown(&path, Some(65534), None).unwrap();
        let e = SecretStore::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::Owner { owner: 65534, .. }), "{e}");
        assert!(e.hint().contains("--secrets PATH"), "{}", e.hint());
        chown(&path, Some(rustix::process::geteuid().as_raw()), None).unwrap();
        chown(&dir, Some(65534), None).unwrap();
        assert!(matches!(SecretStore::open(&path).unwrap_err(), StoreError::Owner { owner: 65534, .. }));
        assert!(matches!(SecretStore::open_for_generating(&path).unwrap_err(), StoreError::Owner { .. }));
        chown(&dir, Some(rustix::process::geteuid().as_raw()), None).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = SecretStore::open(&path).unwrap_err();
        assert!(matches!(e, StoreError::FolderPermissions { mode: 0o777, .. }), "{e}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(SecretStore::open(&path).is_ok());
    }

    #[test]
    fn fingerprints_are_keyed_and_do_not_contain_the_value() {
        let v = Secret::new("hunter2");
        let a = fingerprint(&Secret::new("k1"), "x", &v);
        assert_ne!(a, fingerprint(&Secret::new("k2"), "x", &v));
        assert_eq!(a, fingerprint(&Secret::new("k1"), "x", &v));
        assert!(!a.contains("hunter2"));
        assert_eq!(generate(24).expose().len(), 24);
    }
}

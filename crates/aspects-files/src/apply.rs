//! Carrying out changes to files. Every step is one durable write, in an order a kill at any
//! point leaves convergent: the record is claimed (and `on_change` marked pending) before the
//! content is replaced, the content replaced atomically (temp file in the same folder, fsync,
//! rename, fsync of the folder), and the hook's pending mark cleared only once it succeeded, so
//! a re-run finishes what a killed run started and never runs the hook for nothing.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aspects_core::{Action, Change, KindSchema, Redactor, Resource, Secret, Text, Value};
use aspects_engine::fault;
use aspects_engine::ownership::{State, identity_json, owned_elsewhere};
use aspects_engine::provider::{ProviderError, desired_for};

use crate::provider::Handle;
use crate::schema::parse_mode;
use crate::state::{self, Record, Records};

/// Owner and group ids to set, each only when the plan names it.
pub type Owner = (Option<u32>, Option<u32>);

pub async fn apply(
    h: &Handle,
    _kind: &KindSchema,
    change: &Change,
    desired: Option<&Resource>,
) -> Result<(), ProviderError> {
    let _records = h.records.lock().await;
    let old_path = change.old_identity.as_ref().and_then(|i| i.get("path")).and_then(Value::as_str);
    match change.action {
        Action::NoOp => Ok(()),
        Action::Delete | Action::Release => forget(h, change, old_path.unwrap_or_default()),
        Action::Replace => {
            // A new path: the file moves, the old one goes.
            forget(h, change, old_path.unwrap_or_default())?;
            write(h, desired_for(change, desired)?).await
        }
        _ => write(h, desired_for(change, desired)?).await,
    }
}

fn err(r: &Resource, what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(format!("{}: {what}: {e}", r.address))
}

fn mine(h: &Handle) -> Result<Records, ProviderError> {
    let all = h.load()?;
    Ok(all.get(&h.deployment).cloned().unwrap_or_default())
}

fn save(h: &Handle, records: &Records) -> Result<(), ProviderError> {
    state::save(&h.state_dir, &h.deployment, records).map_err(ProviderError::new)?;
    fault::after_write();
    Ok(())
}

async fn write(h: &Handle, r: &Resource) -> Result<(), ProviderError> {
    let path = h.full_path(r)?;
    let key = path.to_string_lossy().into_owned();
    let text = h.content(r)?;
    let mode = r.str("mode").and_then(parse_mode).unwrap_or(0o644);
    let owner = owner_ids(r)?;
    let all = h.load()?;
    if let Some((other, rec)) =
        all.iter().filter(|(d, _)| **d != h.deployment).find_map(|(d, recs)| recs.files.get(&key).map(|rec| (d, rec)))
    {
        let id = identity_json(&[("path".to_owned(), Value::from(key.as_str()))].into());
        return Err(owned_elsewhere(&r.address.kind, &id, other, rec.state()));
    }
    let mut records = all.get(&h.deployment).cloned().unwrap_or_default();
    let current = match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err(r, "reading", e)),
    };
    let changed = current.as_deref() != Some(text.expose().as_bytes());
    let hook = r.get("on_change").and_then(Value::as_list).filter(|l| !l.is_empty());

    // 1. Claim, and mark the hook due, before the content moves.
    let existed = current.is_some();
    let rec = records.files.entry(key.clone()).or_insert_with(|| Record {
        kind: r.address.kind.clone(),
        name: r.address.name.clone(),
        state: if existed { State::Adopted } else { State::Creating }.as_str().to_owned(),
        sha256: String::new(),
        secret_lines: Vec::new(),
        on_change_pending: false,
    });
    let before = (rec.name.clone(), rec.on_change_pending);
    rec.name = r.address.name.clone();
    rec.on_change_pending = hook.is_some() && (rec.on_change_pending || changed);
    if rec.sha256.is_empty() || before != (rec.name.clone(), rec.on_change_pending) {
        save(h, &records)?;
    }

    // 2. The content (atomically) or, when only they differ, mode and owner in place.
    paths_still_safe(h, r)?;
    if changed {
        write_atomically(&path, text.expose().as_bytes(), mode, Some(owner)).map_err(|e| err(r, "writing", e))?;
        fault::after_write();
    } else {
        let perms = std::fs::metadata(&path).map_err(|e| err(r, "reading", e))?.permissions();
        if perms.mode() & 0o7777 != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| err(r, "chmod", e))?;
            fault::after_write();
        }
        if owner != (None, None) {
            std::os::unix::fs::chown(&path, owner.0, owner.1).map_err(|e| err(r, "chown", e))?;
            fault::after_write();
        }
    }

    // 3. Confirm: what was written, and the create proven.
    let rec = records.files.get_mut(&key).expect("claimed above");
    rec.wrote(&text);
    if rec.state() == State::Creating {
        rec.state = State::Created.as_str().to_owned();
    }
    save(h, &records)?;

    // 4. The hook, once per content change; its mark stays until it succeeds.
    if let Some(argv) = hook
        && records.files[&key].on_change_pending
    {
        run_hook(r, argv, &path, &text).await?;
        records.files.get_mut(&key).expect("claimed above").on_change_pending = false;
        save(h, &records)?;
    }
    Ok(())
}

/// The plan's checks ran before any write; a link planted since is refused here.
fn paths_still_safe(h: &Handle, r: &Resource) -> Result<(), ProviderError> {
    h.full_path(r).map(|_| ())
}

fn owner_ids(r: &Resource) -> Result<Owner, ProviderError> {
    // One lookup per attribute the plan sets: (attribute, what it names, its id on this machine).
    let id = |attr: &str, what: &str, find: fn(&str) -> Option<u32>| {
        r.str(attr).map(|name| find(name).ok_or_else(|| err(r, attr, format!("no {what} named {name:?}")))).transpose()
    };
    let uid = id("owner", "user", |n| nix::unistd::User::from_name(n).ok().flatten().map(|u| u.uid.as_raw()))?;
    let gid = id("group", "group", |n| nix::unistd::Group::from_name(n).ok().flatten().map(|g| g.gid.as_raw()))?;
    Ok((uid, gid))
}

/// Runs `on_change` without a shell; it gets the file's path in `ASPECTS_FILE` and no secret.
/// Its output is shown only on failure, with the file's secrets scrubbed.
async fn run_hook(r: &Resource, argv: &[Value], path: &Path, text: &Text) -> Result<(), ProviderError> {
    let args: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
    let out = tokio::process::Command::new(args[0])
        .args(&args[1..])
        .current_dir(path.parent().unwrap_or(Path::new("/")))
        .env("ASPECTS_FILE", path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| err(r, &format!("on_change `{}`", args[0]), e))?;
    if out.status.success() {
        return Ok(());
    }
    let secrets = text.spans().iter().map(|s| Secret::new(&text.expose()[s.clone()]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(ProviderError::new(format!(
        "{}: on_change `{}` failed ({}): {}",
        r.address,
        args[0],
        out.status,
        Redactor::new(secrets).scrub(&tail.join("\n"))
    ))
    .with_hint("the file is written; the next apply runs the command again until it succeeds"))
}

/// Deletes an owned file (or, for a release, keeps it) and drops its record.
fn forget(h: &Handle, change: &Change, path: &str) -> Result<(), ProviderError> {
    let mut records = mine(h)?;
    let key = path.to_owned();
    if !records.files.contains_key(&key) {
        return Ok(());
    }
    if change.action != Action::Release {
        match std::fs::remove_file(&key) {
            Ok(()) => fault::after_write(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ProviderError::new(format!("{}: deleting {key}: {e}", change.address))),
        }
    }
    records.files.remove(&key);
    save(h, &records)
}

pub async fn prune(h: &Handle, desired: &[Resource]) -> Result<usize, ProviderError> {
    let _records = h.records.lock().await;
    let mut records = mine(h)?;
    let planned: Vec<String> =
        desired.iter().filter_map(|r| h.full_path(r).ok()).map(|p| p.to_string_lossy().into_owned()).collect();
    let before = records.files.len();
    records.files.retain(|path, rec| Path::new(path).exists() && (rec.state().owns() || planned.contains(path)));
    let pruned = before - records.files.len();
    if pruned > 0 {
        save(h, &records)?;
    }
    Ok(pruned)
}

/// Replaces `target` so that readers see the old content or the new, never part of either:
/// a temp file beside it (same file system), mode and owner set before it appears, fsync,
/// rename, fsync of the folder. A temp file a kill left behind is overwritten next time.
pub fn write_atomically(target: &Path, bytes: &[u8], mode: u32, owner: Option<Owner>) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.aspects-new"));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner.filter(|o| *o != (None, None)) {
        std::os::unix::fs::fchown(&f, uid, gid)?;
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, target)?;
    std::fs::File::open(dir)?.sync_all()
}

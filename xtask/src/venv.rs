//! Python virtualenvs for the stack's Python-based parts (chdb's front, the LMS schema project),
//! cached outside the checkout in `~/.cache/aspects-stack/<name>/`, so every checkout and every
//! fresh clone on the machine shares one install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::root;

/// What pip needs to build mysqlclient (it publishes no Linux wheels).
pub const MYSQLCLIENT_BUILD_DEPS: &[&str] = &["default-libmysqlclient-dev", "pkg-config", "build-essential"];

pub fn cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| root().join("target"))
        .join("aspects-stack")
}

/// The venv `name` under the cache, whether installed or not.
fn dir(name: &str) -> PathBuf {
    cache().join(name)
}

/// The python of the venv `name` holding exactly `requirements` (pip requirement specifiers),
/// installing them first when the cache lacks this exact set. Built beside its final place and
/// renamed into it, so an interrupted install is never used. `debian` lists the Debian packages
/// pip needs to build them (installed only when pip has to run); `what` names the install in
/// progress messages (with its expected cost). The venv's console scripts (bin/*) name the
/// staging directory in their `#!` line and do not run: run modules with the returned python.
pub fn ensure(name: &str, requirements: &[String], debian: &[&str], what: &str) -> Result<PathBuf, String> {
    let venv = dir(name);
    let stamp = requirements.join("\n");
    let installed = || fs::read_to_string(venv.join("installed")).is_ok_and(|s| s == stamp);
    if installed() {
        return Ok(venv.join("bin/python"));
    }
    // One installer at a time per venv, across checkouts: another one's final rename would
    // otherwise replace (remove, then move) a venv this one is already running from.
    fs::create_dir_all(cache()).map_err(|e| e.to_string())?;
    let lock_path = cache().join(format!("{name}.lock"));
    let lock = fs::File::create(&lock_path).map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if installed() {
        return Ok(venv.join("bin/python"));
    }
    crate::stack::apt_install(debian)?;
    let staging = cache().join(format!("{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    eprintln!("stack: installing {what} into {} (first time only)", venv.display());
    let started = Instant::now();
    crate::run(Command::new("python3").args(["-m", "venv"]).arg(&staging).stdout(Stdio::null()))?;
    crate::run(
        Command::new(staging.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"])
            .args(requirements),
    )?;
    fs::write(staging.join("installed"), &stamp).map_err(|e| e.to_string())?;
    // Under the lock: what is there is an older, different install (or a broken one).
    let _ = fs::remove_dir_all(&venv);
    fs::rename(&staging, &venv).map_err(|e| format!("cannot move the venv into {}: {e}", venv.display()))?;
    eprintln!("stack: {name} installed in {} s", started.elapsed().as_secs());
    Ok(venv.join("bin/python"))
}

/// [`ensure`] for a pip requirements file (one specifier a line, `#` comments) checked into the
/// repository: the venv is `<prefix>-<hash of the file>`, so a change of pins installs a new one
/// beside the old, and every checkout with the same file shares it.
pub fn ensure_file(prefix: &str, file: &Path, debian: &[&str], what: &str) -> Result<PathBuf, String> {
    let text = fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let requirements: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect();
    ensure(&format!("{prefix}-{}", short_hash(text.as_bytes())), &requirements, debian, what)
}

/// The first 12 hex digits of the SHA-256 of `bytes`: names a cache entry by its content.
pub fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

//! The stack's Apache Superset 6.1.0, served by gunicorn on 127.0.0.1, its metadata in the
//! database `superset` (utf8mb4) of the stack's MariaDB, as Aspects runs it.
//!
//! - The venv (every package pinned in xtask/superset/requirements.txt, with the fixes 6.1.0 needs
//!   as published) is cached in `~/.cache/aspects-stack/superset-<hash>/`, shared by checkouts.
//! - This stack's own files are under target/stack/superset/: the generated secret key and admin
//!   password (0600, never printed, never in a process argument), SUPERSET_HOME, the pid file,
//!   port and log of gunicorn, and the metadata snapshot.
//! - First `up`: `superset db upgrade`, `superset init`, the admin user (xtask/superset/admin.py),
//!   then a dump of the initialised database (`metadata.sql`). A later `up` whose MariaDB lost the
//!   database restores the dump instead (seconds, not the ~45 s of initialising). The dump is
//!   used only while its key (the hash of requirements.txt, superset_config.py and admin.py) is
//!   current; it goes with the secret key and password it was made with when target/stack is
//!   removed.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, MySqlConnection};

use crate::root;
use crate::stack::{alive, block_on, create_private, free_port, http_ok, read_number, stop};
use crate::venv::{MYSQLCLIENT_BUILD_DEPS, short_hash};

/// The Superset the tests and the demo use (`http://127.0.0.1:PORT`).
pub const URL: &str = "ASPECTS_STACK_SUPERSET_URL";
/// Its admin user and password.
pub const USER: &str = "ASPECTS_STACK_SUPERSET_USER";
pub const PASSWORD: &str = "ASPECTS_STACK_SUPERSET_PASSWORD";
/// The python of its venv, for tests that run the `superset` CLI (an `exec` step's check).
pub const PYTHON: &str = "ASPECTS_STACK_SUPERSET_PYTHON";
const VERSION: &str = "6.1.0";
const ADMIN: &str = "admin";
const DATABASE: &str = "superset";
/// The first port tried: clear of Superset's usual 8088.
const FIRST_PORT: u16 = 18088;

fn dir() -> PathBuf {
    crate::stack::dir().join("superset")
}

/// The project's files for Superset: requirements.txt, superset_config.py, admin.py.
fn files() -> PathBuf {
    root().join("xtask/superset")
}

fn pid_file() -> PathBuf {
    dir().join("gunicorn.pid")
}

/// Installs, initialises and starts what is missing; returns the environment entries naming it.
/// `mysql` is the stack's server URL (no path). `fresh`: Superset is restarted on its metadata
/// as initialised (the snapshot), whatever ran against it since.
pub fn up(mysql: &str, fresh: bool) -> Result<Vec<(String, String)>, String> {
    let python = crate::venv::ensure_file(
        &format!("superset-{VERSION}"),
        &files().join("requirements.txt"),
        MYSQLCLIENT_BUILD_DEPS,
        &format!("Apache Superset {VERSION} (~3 min cold, ~830 MB)"),
    )?;
    fs::create_dir_all(dir().join("home")).map_err(|e| e.to_string())?;
    secret("secret_key")?;
    let password = secret("admin_password")?;
    let env = |port: u16| {
        vec![
            (URL.to_owned(), format!("http://127.0.0.1:{port}")),
            (USER.to_owned(), ADMIN.to_owned()),
            (PASSWORD.to_owned(), password.clone()),
            (PYTHON.to_owned(), python.display().to_string()),
            // The reference plan's vars (plans/local.toml): the provider and the SSO redirect
            // URIs point here.
            ("ASPECTS_VAR_SUPERSET_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("ASPECTS_VAR_SUPERSET_PORT".to_owned(), port.to_string()),
        ]
    };
    let metadata = Metadata::new(mysql)?;
    if fresh {
        if let Some((pid, _)) = running() {
            stop(pid);
        }
        // Without the database `initialise` restores the snapshot (seconds).
        metadata.drop()?;
    }
    if let Some((_, port)) = running() {
        wait_for(port, None)?;
        return Ok(env(port));
    }
    initialise(&python, &metadata, &password)?;
    let port = free_port(FIRST_PORT)?;
    fs::write(dir().join("port"), format!("{port}\n")).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(pid_file());
    let log = fs::File::create(dir().join("gunicorn.log")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    // setsid + every fd redirected: a child holding the caller's stdout would hang CI. The
    // working directory is what `running` recognises this checkout's gunicorn by.
    let child = superset_command("setsid", &metadata)
        .arg(&python)
        .args(["-m", "gunicorn"])
        .args(["--workers", "2", "--worker-class", "gthread", "--threads", "4", "--timeout", "120"])
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--pid")
        .arg(pid_file())
        .arg("superset.app:create_app()")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start gunicorn: {e}"))?;
    wait_for(port, Some(child))?;
    eprintln!(
        "stack: started Superset {VERSION} (gunicorn, 2 workers) on 127.0.0.1:{port} in {} ms \
         (metadata in the MariaDB database {DATABASE})",
        started.elapsed().as_millis()
    );
    Ok(env(port))
}

pub fn down() {
    match running() {
        Some((pid, port)) => {
            stop(pid);
            eprintln!("stack: stopped Superset on 127.0.0.1:{port} (pid {pid})");
        }
        None => eprintln!("stack: no Superset started by `stack up` is running"),
    }
}

pub fn status() {
    match running() {
        Some((pid, port)) => {
            let state = if http_ok(port, "/health", "OK") { "up" } else { "starting or not answering" };
            println!(
                "superset {VERSION} (private) 127.0.0.1:{port}  {state} (gunicorn pid {pid}, metadata in MariaDB \
                 database {DATABASE}, admin user {ADMIN}, files in {})",
                dir().display()
            );
        }
        None => println!("superset (private) not running; `cargo xtask stack up` starts it"),
    }
}

/// This checkout's gunicorn master, if its pid file names a live process working in this
/// checkout's directory (never another checkout's that reused the pid): (pid, recorded port).
fn running() -> Option<(u32, u16)> {
    let pid = read_number::<u32>(&pid_file()).filter(|p| alive(*p))?;
    (fs::read_link(format!("/proc/{pid}/cwd")).ok()? == dir()).then_some(())?;
    Some((pid, read_number(&dir().join("port"))?))
}

/// Up when gunicorn has written its pid file and `/health` answers `OK`. `child`, when this call
/// started it, fails the wait as soon as it exits.
fn wait_for(port: u16, mut child: Option<Child>) -> Result<(), String> {
    let log = dir().join("gunicorn.log");
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if running().is_some() && http_ok(port, "/health", "OK") {
            return Ok(());
        }
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(format!("gunicorn exited ({status}); see {}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("Superset did not come up on 127.0.0.1:{port}; see {}", log.display()))
}

/// `program` (the venv's python, or setsid in front of it) with the stack's
/// Superset configuration. The secrets reach Superset through files and the environment, never
/// through arguments.
fn superset_command(program: impl AsRef<OsStr>, metadata: &Metadata) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir())
        .env("SUPERSET_CONFIG_PATH", files().join("superset_config.py"))
        .env("SUPERSET_HOME", dir().join("home"))
        .env("ASPECTS_SUPERSET_STATE", dir())
        .env("ASPECTS_SUPERSET_METADATA_URI", metadata.sqlalchemy_uri());
    c
}

/// Runs a step of the initialisation, its output kept in the log and shown only on failure.
fn step(what: &str, cmd: &mut Command, stdin: Option<&str>) -> Result<(), String> {
    let started = Instant::now();
    let log = dir().join("init.log");
    let out = fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if let Some(input) = stdin {
        child.stdin.take().expect("piped").write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{what} failed ({status}); see {}", log.display()));
    }
    eprintln!("stack: superset: {what} ({} ms)", started.elapsed().as_millis());
    Ok(())
}

/// Brings the metadata database to the initialised state of this key: already there, restored
/// from the snapshot, or initialised from scratch (then snapshotted).
fn initialise(python: &Path, metadata: &Metadata, password: &str) -> Result<(), String> {
    let key = snapshot_key()?;
    let snapshot = dir().join("metadata.sql");
    let key_file = dir().join("metadata.key");
    let snapshot_current = fs::read_to_string(&key_file).is_ok_and(|k| k == key) && snapshot.exists();
    if snapshot_current && metadata.has_admin() {
        return Ok(());
    }
    if snapshot_current {
        let started = Instant::now();
        metadata.recreate()?;
        metadata.restore(&snapshot)?;
        eprintln!(
            "stack: superset: metadata restored from {} ({} ms)",
            snapshot.display(),
            started.elapsed().as_millis()
        );
        return Ok(());
    }
    eprintln!("stack: initialising Superset's metadata database {DATABASE} (first time only, ~45 s)");
    let _ = fs::remove_file(&key_file);
    metadata.create()?;
    // The `superset` console script, run by the venv's python (see venv::ensure).
    let cli = |args: &[&str]| {
        let mut c = superset_command(python, metadata);
        c.args(["-c", "from superset.cli.main import superset; superset()"]).args(args);
        c
    };
    step("superset db upgrade", &mut cli(&["db", "upgrade"]), None)?;
    step("superset init", &mut cli(&["init"]), None)?;
    step("admin user", superset_command(python, metadata).arg(files().join("admin.py")).arg(ADMIN), Some(password))?;
    metadata.dump(&snapshot)?;
    fs::write(&key_file, key).map_err(|e| e.to_string())
}

/// What the snapshot depends on besides the secret key and password beside it.
fn snapshot_key() -> Result<String, String> {
    let mut all = Vec::new();
    for name in ["requirements.txt", "superset_config.py", "admin.py"] {
        let path = files().join(name);
        all.extend(fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?);
    }
    Ok(short_hash(&all))
}

/// The secret `name` of this stack (target/stack/superset/NAME, 0600): generated once.
fn secret(name: &str) -> Result<String, String> {
    let path = dir().join(name);
    if let Ok(value) = fs::read_to_string(&path) {
        return Ok(value);
    }
    let mut bytes = [0u8; 24];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(|e| e.to_string())?;
    let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    create_private(&path)?.write_all(value.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(value)
}

/// The metadata database on the stack's server.
struct Metadata {
    /// `mysql://USER[:PASSWORD]@HOST:PORT`, as the stack names its server.
    server: String,
    url: url::Url,
}

impl Metadata {
    fn new(server: &str) -> Result<Self, String> {
        let server = server.trim_end_matches('/').to_owned();
        // Not echoed: it may carry a password.
        let url = url::Url::parse(&server).map_err(|_| format!("{} is not a mysql:// URL", crate::stack::MYSQL_URL))?;
        Ok(Metadata { server, url })
    }

    fn sqlalchemy_uri(&self) -> String {
        format!("{}/{DATABASE}?charset=utf8mb4", self.server.replacen("mysql://", "mysql+mysqldb://", 1))
    }

    fn has_admin(&self) -> bool {
        block_on(async {
            let mut c = MySqlConnection::connect(&self.server).await?;
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM superset.ab_user WHERE username = ?")
                .bind(ADMIN)
                .fetch_one(&mut c)
                .await
        })
        .is_ok_and(|n| n == 1)
    }

    fn create(&self) -> Result<(), String> {
        self.execute(&["CREATE DATABASE IF NOT EXISTS superset CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"])
    }

    fn drop(&self) -> Result<(), String> {
        self.execute(&["DROP DATABASE IF EXISTS superset"])
    }

    fn recreate(&self) -> Result<(), String> {
        self.execute(&[
            "DROP DATABASE IF EXISTS superset",
            "CREATE DATABASE superset CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        ])
    }

    fn execute(&self, statements: &[&'static str]) -> Result<(), String> {
        block_on(async {
            let mut c = MySqlConnection::connect(&self.server).await?;
            for s in statements {
                sqlx::query(*s).execute(&mut c).await?;
            }
            c.close().await
        })
        .map_err(|e| format!("Superset's metadata database: {e}"))
    }

    /// `mariadb-dump` / `mariadb` on the stack's server: the password, if any, in MYSQL_PWD.
    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.args(["--protocol=TCP", "-h", self.url.host_str().unwrap_or("127.0.0.1")])
            .args(["-P", &self.url.port().unwrap_or(3306).to_string(), "-u"])
            .arg(percent_encoding::percent_decode_str(self.url.username()).decode_utf8_lossy().as_ref());
        if let Some(p) = self.url.password() {
            c.env("MYSQL_PWD", percent_encoding::percent_decode_str(p).decode_utf8_lossy().as_ref());
        }
        c
    }

    /// The dump holds the admin's password hash: readable by its owner only.
    fn dump(&self, path: &Path) -> Result<(), String> {
        let started = Instant::now();
        let file = create_private(path)?;
        crate::run(
            self.client("mariadb-dump")
                .args(["--single-transaction", "--skip-comments", "--skip-dump-date", DATABASE])
                .stdout(file),
        )?;
        eprintln!("stack: superset: metadata snapshot in {} ({} ms)", path.display(), started.elapsed().as_millis());
        Ok(())
    }

    fn restore(&self, path: &Path) -> Result<(), String> {
        let file = fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        crate::run(self.client("mariadb").arg(DATABASE).stdin(file))
    }
}

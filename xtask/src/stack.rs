//! The local stack: real services on 127.0.0.1 for the tests and the demo, private to this
//! checkout. `up` starts its own MariaDB (data directory, socket, pid and port under
//! target/stack/mariadb/) on the first free port from 3307 upward and records that port; it reuses
//! only the server its own target/stack records. The machine's own server is used only when
//! ASPECTS_STACK_MYSQL_URL names it. `down` stops only what `up` started (by pid file).
//!
//! ClickHouse (the real engine through chdb, behind the project's HTTP front) lives in
//! `clickhouse.rs`; the LMS database (real upstream migrations into `openedx` on this MariaDB) in
//! `lms.rs`; Superset (metadata in this MariaDB, served by gunicorn) in `superset.rs`. Ralph joins
//! as its provider lands.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::root;

/// The environment variable naming the MariaDB the tests and the demo use.
pub const MYSQL_URL: &str = "ASPECTS_STACK_MYSQL_URL";
/// The first port tried for the private MariaDB (3306 is left to the machine's own server).
const FIRST_PORT: u16 = 3307;
/// How far up to look for a free port (every service of the stack).
const PORTS: u16 = 100;

pub fn dir() -> PathBuf {
    root().join("target/stack")
}

fn mariadb_dir() -> PathBuf {
    dir().join("mariadb")
}

/// The demo's own files (secrets file, journal): under target/, never beside the plan files.
pub fn demo_dir() -> PathBuf {
    root().join("target/demo")
}

/// Starts what is missing; returns the environment the tests and the demo need, also written to
/// target/stack/env as shell `export` lines (`. target/stack/env`).
pub fn up() -> Result<Vec<(String, String)>, String> {
    up_with(false)
}

/// [`up`], with Superset's metadata back at its initialised snapshot: the tests start from a
/// Superset nothing else touched (the demo's bundle holds the Aspects UUIDs the upstream-bundle
/// test imports; an interrupted run leaves objects behind).
pub fn up_fresh() -> Result<Vec<(String, String)>, String> {
    up_with(true)
}

fn up_with(fresh_superset: bool) -> Result<Vec<(String, String)>, String> {
    fs::create_dir_all(dir()).map_err(|e| e.to_string())?;
    let mysql = match std::env::var(MYSQL_URL) {
        Ok(url) if !url.is_empty() => {
            eprintln!("stack: using the MariaDB named by {MYSQL_URL} (nothing started)");
            url
        }
        _ => private_mysql()?,
    };
    let lms = crate::lms::up(&mysql)?;
    let clickhouse = crate::clickhouse::up()?;
    let superset = crate::superset::up(&mysql, fresh_superset)?;
    let ralph = crate::ralph::up(&clickhouse)?;
    let demo = demo_dir();
    let mut env = vec![(MYSQL_URL.to_owned(), mysql.clone()), (crate::clickhouse::URL.to_owned(), clickhouse)];
    env.extend(lms);
    env.extend(superset);
    env.extend(ralph);
    env.extend(crate::upstream::up()?);
    // The reference plan's endpoint vars, so `aspects -f plans/aspects.toml -f plans/local.toml`
    // reaches this server.
    env.extend(endpoint_vars(&mysql)?);
    env.extend(crate::clickhouse::endpoint_vars(&env[1].1)?);
    // The reference plan's rendered files (and Ralph's auth file) go under target/stack/.
    env.push(("ASPECTS_VAR_ASPECTS_CONFIG_ROOT".to_owned(), dir().display().to_string()));
    env.extend([
        ("ASPECTS_SECRETS".to_owned(), demo.join("local.secrets.toml").display().to_string()),
        ("ASPECTS_JOURNAL".to_owned(), demo.join("local.journal.jsonl").display().to_string()),
    ]);
    let mut text = String::from(
        "# Written by `cargo xtask stack up`; `cargo xtask stack down` rewrites it. Load it with\n\
         # `. target/stack/env` to run aspects by hand against the local stack with the demo's files:\n\
         #   ASPECTS_STACK_MYSQL_URL           the MariaDB the tests and the demo use\n\
         #   ASPECTS_STACK_CLICKHOUSE_URL      the ClickHouse (HTTP) the tests and the demo use\n\
         #   ASPECTS_STACK_LMS_DB_URL          the LMS database (real upstream migrations, fixtures/lms)\n\
         #   ASPECTS_STACK_LMS_PYTHON          the python that runs fixtures/lms/manage.py\n\
         #   ASPECTS_STACK_SUPERSET_URL        the Superset (gunicorn) the tests and the demo use\n\
         #   ASPECTS_STACK_SUPERSET_USER,\n\
         #   ASPECTS_STACK_SUPERSET_PASSWORD   its admin user (generated; this file is 0600)\n\
         #   ASPECTS_STACK_SUPERSET_PYTHON     the python of its venv (the `superset` CLI)\n\
         #   ASPECTS_STACK_RALPH_URL           the Ralph LRS (uvicorn, ClickHouse backend on xapi.xapi_events_all)\n\
         #   ASPECTS_STACK_RALPH_RESTART       restarts it (the on_change of its auth file, target/stack/ralph/auth.json)\n\
         #   ASPECTS_STACK_LMS_FERNET_KEY      the LMS fixture's Fernet key (a test value)\n\
         #   ASPECTS_STACK_TUTOR_ASPECTS       tutor-contrib-aspects 6.1.0 unpacked (the fidelity test)\n\
         #   ASPECTS_VAR_MYSQL_HOST, _PORT,\n\
         #   ASPECTS_VAR_MYSQL_ROOT_USERNAME   the same server, as plans/aspects.toml's vars\n\
         #   ASPECTS_VAR_CLICKHOUSE_HOST,\n\
         #   ASPECTS_VAR_CLICKHOUSE_INTERNAL_HTTP_PORT  the ClickHouse, as plans/aspects.toml's vars\n\
         #   ASPECTS_VAR_RALPH_HOST, _PORT, _RESTART  the Ralph, as plans/local.toml's vars\n\
         #   ASPECTS_VAR_ASPECTS_CONFIG_ROOT   where the reference plan's files go (target/stack/)\n\
         #   ASPECTS_SECRETS                   the demo's secrets file (under target/demo/)\n\
         #   ASPECTS_JOURNAL                   the demo's apply journal (under target/demo/)\n",
    );
    for (k, v) in &env {
        text.push_str(&format!("export {k}='{}'\n", v.replace('\'', r"'\''")));
    }
    write_env(&text)?;
    eprintln!("stack: {MYSQL_URL}={}, {}={} (exports in target/stack/env)", env[0].1, env[1].0, env[1].1);
    Ok(env)
}

/// `mysql://USER@HOST:PORT` as the reference plan's MYSQL_ROOT_USERNAME, MYSQL_HOST and MYSQL_PORT
/// vars. The local overlay unsets the provider password, so a URL with one cannot be used there.
fn endpoint_vars(url: &str) -> Result<Vec<(String, String)>, String> {
    // The URL itself is not echoed: the one refused here may carry a password.
    let bad = || format!("{MYSQL_URL} is not mysql://USER@HOST:PORT (no password, no path)");
    let rest = url.strip_prefix("mysql://").ok_or_else(bad)?;
    let (user, address) = rest.split_once('@').ok_or_else(bad)?;
    let (host, port) = address.trim_end_matches('/').rsplit_once(':').unwrap_or((address, "3306"));
    let valid = !user.is_empty() && !user.contains(':') && !host.is_empty() && port.parse::<u16>().is_ok();
    if !valid {
        return Err(bad());
    }
    Ok(vec![
        ("ASPECTS_VAR_MYSQL_ROOT_USERNAME".to_owned(), user.to_owned()),
        ("ASPECTS_VAR_MYSQL_HOST".to_owned(), host.to_owned()),
        ("ASPECTS_VAR_MYSQL_PORT".to_owned(), port.to_owned()),
    ])
}

/// Holds Superset's admin password, and the URL may carry one (a server named by the
/// environment): readable by its owner only.
fn write_env(text: &str) -> Result<(), String> {
    let path = dir().join("env");
    create_private(&path)?.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates `path` afresh, readable and writable by its owner only (0600) from the start: for
/// files holding secrets.
pub fn create_private(path: &Path) -> Result<fs::File, String> {
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn down() -> Result<(), String> {
    // Superset first: its workers hold connections to the MariaDB.
    crate::superset::down();
    crate::ralph::down();
    match running() {
        Some((pid, port)) => {
            stop(pid);
            eprintln!("stack: stopped the private MariaDB on 127.0.0.1:{port} (pid {pid})");
        }
        None => eprintln!("stack: no MariaDB started by `stack up` is running"),
    }
    crate::clickhouse::down();
    if dir().exists() {
        write_env(
            "# Written by `cargo xtask stack down`: nothing of the local stack is running.\n\
             # `cargo xtask stack up` starts it again and writes the exports here.\n",
        )?;
    }
    Ok(())
}

pub fn status() -> Result<(), String> {
    match running() {
        Some((pid, port)) => {
            let state = if ours(port) { "up" } else { "starting or not answering" };
            println!("mariadb (private) 127.0.0.1:{port}  {state} (pid {pid}, data in {})", mariadb_dir().display());
        }
        None => println!("mariadb (private) not running; `cargo xtask stack up` starts it"),
    }
    let named = std::env::var(MYSQL_URL).ok().filter(|u| !u.is_empty());
    if named.is_some() {
        println!("{MYSQL_URL} is set: tests and the demo use that server instead");
    }
    crate::lms::status(named.or_else(|| running().map(|(_, port)| private_url(port))));
    crate::clickhouse::status();
    crate::superset::status();
    crate::ralph::status();
    Ok(())
}

/// This checkout's MariaDB, if its pid file names a live process: (pid, recorded port).
fn running() -> Option<(u32, u16)> {
    let base = mariadb_dir();
    let pid = read_number::<u32>(&base.join("mariadb.pid")).filter(|p| alive(*p))?;
    Some((pid, read_number(&base.join("port"))?))
}

fn private_url(port: u16) -> String {
    format!("mysql://root@127.0.0.1:{port}")
}

fn private_mysql() -> Result<String, String> {
    let base = mariadb_dir();
    if let Some((_, port)) = running() {
        wait_for(port, &base)?;
        return Ok(private_url(port));
    }
    let server = ensure_mariadb_installed()?;
    let data = base.join("data");
    if !data.join("mysql").exists() {
        fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        eprintln!("stack: creating a private MariaDB data directory in {} (~5 s)", data.display());
        crate::run(
            Command::new("mariadb-install-db")
                .args([
                    "--no-defaults".into(),
                    format!("--datadir={}", data.display()),
                    "--auth-root-authentication-method=normal".into(),
                    "--skip-test-db".into(),
                ])
                .stdout(Stdio::null()),
        )?;
    }
    let port = free_port(FIRST_PORT)?;
    fs::write(base.join("port"), format!("{port}\n")).map_err(|e| e.to_string())?;
    let log = fs::File::create(base.join("mariadb.log")).map_err(|e| e.to_string())?;
    let user = String::from_utf8(Command::new("id").arg("-un").output().map_err(|e| e.to_string())?.stdout)
        .unwrap_or_default();
    // setsid + every fd redirected: a child holding the caller's stdout would hang CI.
    Command::new("setsid")
        .arg(server)
        .args([
            "--no-defaults".to_owned(),
            format!("--datadir={}", data.display()),
            format!("--socket={}", base.join("mariadb.sock").display()),
            format!("--pid-file={}", base.join("mariadb.pid").display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--user={}", user.trim()),
            "--skip-log-bin".into(),
            // A disposable server: no fsync per commit. Dropping thousands of objects (the
            // benchmarks' teardown) was otherwise bound by the disk, not by aspects.
            "--innodb-flush-log-at-trx-commit=0".into(),
            "--innodb-doublewrite=0".into(),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start mariadbd: {e}"))?;
    wait_for(port, &base)?;
    eprintln!("stack: started a private MariaDB on 127.0.0.1:{port} (data in {})", data.display());
    Ok(private_url(port))
}

fn wait_for(port: u16, base: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ours(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("MariaDB did not come up on 127.0.0.1:{port}; see {}", base.join("mariadb.log").display()))
}

/// The first port from `first` up (of 100) that nothing listens on on 127.0.0.1, another
/// checkout's stack included.
pub fn free_port(first: u16) -> Result<u16, String> {
    (first..first + PORTS)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| format!("no free port in 127.0.0.1:{first}..{}", first + PORTS))
}

fn ensure_mariadb_installed() -> Result<PathBuf, String> {
    let find = || ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"].into_iter().map(PathBuf::from).find(|p| p.exists());
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("stack: installing mariadb-server from Debian's archive (first time only, ~40 s)");
    apt_install(&["mariadb-server"])?;
    find().ok_or_else(|| "mariadb-server installed but mariadbd is not in /usr/sbin".into())
}

/// Installs the Debian packages of `packages` that are not installed yet.
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    let installed = |p: &&str| {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", p])
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.stdout.ends_with(b" installed"))
    };
    let missing: Vec<&str> = packages.iter().filter(|p| !installed(p)).copied().collect();
    if missing.is_empty() {
        return Ok(());
    }
    crate::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    crate::run(
        Command::new("apt-get").args(["install", "-y", "-qq"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The server on `port` answers as root without a password and serves this checkout's data
/// directory: never another checkout's server that happens to hold the port.
fn ours(port: u16) -> bool {
    if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_err() {
        return false;
    }
    let out = Command::new("mariadb")
        .args(["--protocol=TCP", "-h", "127.0.0.1", "-P", &port.to_string(), "-u", "root", "-N", "-e"])
        .arg("SELECT @@datadir")
        .stderr(Stdio::null())
        .output();
    let data = mariadb_dir().join("data");
    out.is_ok_and(|o| o.status.success() && Path::new(String::from_utf8_lossy(&o.stdout).trim()) == data)
}

pub fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Stops the process `pid` that a pid file of the stack names (SIGTERM), waiting up to 30 s.
pub fn stop(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `GET path` on 127.0.0.1:`port` answers 200 with exactly `body`.
pub fn http_ok(port: u16, path: &str, body: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reply = String::new();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).is_ok()
        && s.read_to_string(&mut reply).is_ok()
        && reply.split_once("\r\n").is_some_and(|(status, _)| status.starts_with("HTTP/1.") && status.contains(" 200 "))
        && reply.split_once("\r\n\r\n").is_some_and(|(_, b)| b == body)
}

pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(f)
}

//! The local stack: real services on 127.0.0.1 for the tests and the demo. A service that is
//! already reachable is reused; otherwise it is installed (first time) and started privately
//! under target/stack/, and only what `up` started is stopped by `down` (by pid file).
//!
//! Today: MariaDB. The ClickHouse engine, Superset and Ralph join as their providers land.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::root;

/// The machine's own MariaDB, if it runs one (the project's CI machines do).
const SYSTEM_MYSQL_PORT: u16 = 3306;
/// A private instance, when there is no system one.
const PRIVATE_MYSQL_PORT: u16 = 3307;

fn dir() -> PathBuf {
    root().join("target/stack")
}

/// Starts what is missing; returns the environment the tests need (also written to
/// target/stack/env as shell `export` lines).
pub fn up() -> Result<Vec<(String, String)>, String> {
    fs::create_dir_all(dir()).map_err(|e| e.to_string())?;
    let mysql = mysql_up()?;
    let env = vec![("ASPECTS_STACK_MYSQL_URL".to_owned(), mysql)];
    let text: String = env.iter().map(|(k, v)| format!("export {k}='{v}'\n")).collect();
    fs::write(dir().join("env"), text).map_err(|e| e.to_string())?;
    for (k, v) in &env {
        eprintln!("stack: {k}={v}");
    }
    Ok(env)
}

pub fn down() -> Result<(), String> {
    let pid_file = dir().join("mariadb/mariadb.pid");
    match read_pid(&pid_file) {
        Some(pid) if alive(pid) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("stack: stopped the private MariaDB (pid {pid})");
        }
        _ => eprintln!("stack: nothing started by `stack up` is running"),
    }
    Ok(())
}

pub fn status() -> Result<(), String> {
    let private = read_pid(&dir().join("mariadb/mariadb.pid")).filter(|p| alive(*p));
    for (port, what) in [(SYSTEM_MYSQL_PORT, "system"), (PRIVATE_MYSQL_PORT, "private")] {
        let state = if mysql_ok(port) { "up" } else { "down" };
        let owner = if what == "private" {
            private.map_or(String::new(), |p| format!(" (started by stack up, pid {p})"))
        } else {
            String::new()
        };
        println!("mariadb {what:7} 127.0.0.1:{port}  {state}{owner}");
    }
    Ok(())
}

fn mysql_up() -> Result<String, String> {
    if let Ok(url) = std::env::var("ASPECTS_STACK_MYSQL_URL") {
        return Ok(url);
    }
    let url = |port| format!("mysql://root@127.0.0.1:{port}");
    // ASPECTS_STACK_PRIVATE=1: never reuse the machine's own server (e.g. its root has a password).
    let private_only = std::env::var_os("ASPECTS_STACK_PRIVATE").is_some_and(|v| v == "1");
    if !private_only && mysql_ok(SYSTEM_MYSQL_PORT) {
        return Ok(url(SYSTEM_MYSQL_PORT));
    }
    if mysql_ok(PRIVATE_MYSQL_PORT) {
        return Ok(url(PRIVATE_MYSQL_PORT));
    }
    let server = ensure_mariadb_installed()?;
    let base = dir().join("mariadb");
    let data = base.join("data");
    if !data.join("mysql").exists() {
        fs::create_dir_all(&data).map_err(|e| e.to_string())?;
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
            format!("--port={PRIVATE_MYSQL_PORT}"),
            "--bind-address=127.0.0.1".into(),
            format!("--user={}", user.trim()),
            "--skip-log-bin".into(),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start mariadbd: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if mysql_ok(PRIVATE_MYSQL_PORT) {
            eprintln!("stack: started a private MariaDB on 127.0.0.1:{PRIVATE_MYSQL_PORT}");
            return Ok(url(PRIVATE_MYSQL_PORT));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("MariaDB did not come up; see {}", base.join("mariadb.log").display()))
}

fn ensure_mariadb_installed() -> Result<PathBuf, String> {
    let find = || ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"].into_iter().map(PathBuf::from).find(|p| p.exists());
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("stack: installing mariadb-server from Debian's archive (first time only, ~40 s)");
    crate::run(Command::new("apt-get").arg("update").arg("-qq"))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "mariadb-server"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    find().ok_or_else(|| "mariadb-server installed but mariadbd is not in /usr/sbin".into())
}

/// Reachable and answering queries as root without a password.
fn mysql_ok(port: u16) -> bool {
    if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_err() {
        return false;
    }
    Command::new("mariadb")
        .args(["--protocol=TCP", "-h", "127.0.0.1", "-P", &port.to_string(), "-u", "root", "-e", "SELECT 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

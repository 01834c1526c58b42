//! The stack's ClickHouse: the real ClickHouse engine (chdb, pinned below) behind the project's own
//! HTTP front, xtask/clickhouse_front.py, on 127.0.0.1. chdb and its venv are installed once into
//! `~/.cache/aspects-stack/chdb-<version>/` (outside the checkout, shared by every checkout);
//! the data directory, pid file, port and log are this checkout's, under target/stack/clickhouse/.
//! What the front emulates (authentication, one query at a time) is listed in its docstring.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::root;
use crate::stack::{alive, free_port, http_ok, read_number, stop};

/// The environment variable naming the ClickHouse HTTP endpoint the tests and the demo use.
pub const URL: &str = "ASPECTS_STACK_CLICKHOUSE_URL";
/// The engine (ClickHouse 26.9) and the one extra module the front uses; the cache is keyed by
/// the first, and reinstalled when this list changes.
const CHDB_VERSION: &str = "26.9.0";
const REQUIREMENTS: &[&str] = &["chdb-core==26.9.0", "lz4==4.4.5"];
/// The first port tried for the front: clear of a real ClickHouse's 8123.
const FIRST_PORT: u16 = 18123;

fn dir() -> PathBuf {
    crate::stack::dir().join("clickhouse")
}

fn data_dir() -> PathBuf {
    dir().join("data")
}

fn pid_file() -> PathBuf {
    dir().join("front.pid")
}

/// The URL of the running front (started if needed), or the server the environment names.
pub fn up() -> Result<String, String> {
    if let Ok(url) = std::env::var(URL)
        && !url.is_empty()
    {
        eprintln!("stack: using the ClickHouse named by {URL} (nothing started)");
        return Ok(url);
    }
    let url = |port| format!("http://127.0.0.1:{port}");
    let script = root().join("xtask/clickhouse_front.py");
    let version = crate::venv::short_hash(&fs::read(&script).map_err(|e| format!("{}: {e}", script.display()))?);
    let started_version = dir().join("front.version");
    if let Some((pid, port)) = running() {
        if fs::read_to_string(&started_version).ok().as_deref() == Some(version.as_str()) {
            wait_for(port)?;
            return Ok(url(port));
        }
        // A front from before the last pull would serve the new provider with old behaviour.
        eprintln!("stack: xtask/clickhouse_front.py changed since the running front started; restarting it");
        stop(pid);
    }
    let requirements: Vec<String> = REQUIREMENTS.iter().map(|r| (*r).to_owned()).collect();
    let python = crate::venv::ensure(
        &format!("chdb-{CHDB_VERSION}"),
        &requirements,
        &[],
        &format!("chdb {CHDB_VERSION} (~25 s, ~900 MB)"),
    )?;
    fs::create_dir_all(data_dir()).map_err(|e| e.to_string())?;
    let port = free_port(FIRST_PORT)?;
    fs::write(dir().join("port"), format!("{port}\n")).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(pid_file());
    let log = fs::File::create(dir().join("front.log")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    // setsid + every fd redirected: a child holding the caller's stdout would hang CI.
    fs::write(&started_version, &version).map_err(|e| e.to_string())?;
    Command::new("setsid")
        .arg(python)
        .arg(&script)
        .arg("--port")
        .arg(port.to_string())
        .arg("--data")
        .arg(data_dir())
        .arg("--pid-file")
        .arg(pid_file())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start the ClickHouse front: {e}"))?;
    wait_for(port)?;
    eprintln!(
        "stack: started ClickHouse (chdb {CHDB_VERSION} behind xtask/clickhouse_front.py) on 127.0.0.1:{port} \
         in {} ms (data in {})",
        started.elapsed().as_millis(),
        data_dir().display()
    );
    Ok(url(port))
}

/// `http://HOST:PORT` as the reference plan's CLICKHOUSE_HOST and CLICKHOUSE_INTERNAL_HTTP_PORT
/// vars. The URL itself is not echoed: the one refused here may carry credentials.
pub fn endpoint_vars(url: &str) -> Result<Vec<(String, String)>, String> {
    let bad = || format!("{URL} is not http://HOST:PORT (no user, no password, no path)");
    let address = url.strip_prefix("http://").ok_or_else(bad)?.trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(['@', '/']) || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(vec![
        ("ASPECTS_VAR_CLICKHOUSE_HOST".to_owned(), host.to_owned()),
        ("ASPECTS_VAR_CLICKHOUSE_INTERNAL_HTTP_PORT".to_owned(), port.to_owned()),
    ])
}

pub fn down() {
    match running() {
        Some((pid, port)) => {
            stop(pid);
            eprintln!("stack: stopped ClickHouse on 127.0.0.1:{port} (pid {pid})");
        }
        None => eprintln!("stack: no ClickHouse started by `stack up` is running"),
    }
}

pub fn status() {
    match running() {
        Some((pid, port)) => {
            let state = if ping(port) { "up" } else { "starting or not answering" };
            println!(
                "clickhouse (chdb {CHDB_VERSION}, private) 127.0.0.1:{port}  {state} (pid {pid}, data in {})",
                data_dir().display()
            );
        }
        None => println!("clickhouse (private) not running; `cargo xtask stack up` starts it"),
    }
    if std::env::var(URL).is_ok() {
        println!("{URL} is set: tests and the demo use that server instead");
    }
}

/// This checkout's front, if its pid file names a live process serving this checkout's data
/// directory (never another checkout's front that reused the pid): (pid, recorded port).
fn running() -> Option<(u32, u16)> {
    let pid = read_number::<u32>(&pid_file()).filter(|p| alive(*p))?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let data = data_dir();
    let ours = cmdline.split(|b| *b == 0).any(|arg| Path::new(&*String::from_utf8_lossy(arg)) == data);
    ours.then_some(())?;
    Some((pid, read_number(&dir().join("port"))?))
}

/// Up when the pid file exists (written once the port is bound) and `/ping` answers `Ok.`.
fn wait_for(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if running().is_some() && ping(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("ClickHouse did not come up on 127.0.0.1:{port}; see {}", dir().join("front.log").display()))
}

fn ping(port: u16) -> bool {
    http_ok(port, "/ping", "Ok.\n")
}

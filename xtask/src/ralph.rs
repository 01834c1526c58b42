//! The stack's Ralph LRS: ralph-malph pinned, in a venv under `~/.cache/aspects-stack/`, served
//! by uvicorn on 127.0.0.1 with the ClickHouse backend on the stack's ClickHouse (database
//! `xapi`, table `xapi_events_all`, which the plan that uses Ralph creates). Its auth file,
//! target/stack/ralph/auth.json, is the engine's to write (a `ralph_auth` resource), and
//! target/stack/ralph/restart restarts it for that resource's `on_change`: Ralph reads the file
//! once per process and caches logins. No secret is in its environment (the stack's ClickHouse
//! user has no password).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use crate::stack::{alive, free_port, read_number, stop};

/// The Ralph the tests and the demo use (`http://127.0.0.1:PORT`).
pub const URL: &str = "ASPECTS_STACK_RALPH_URL";
/// The script that (re)starts it: the `on_change` of the auth file.
pub const RESTART: &str = "ASPECTS_STACK_RALPH_RESTART";
const VERSION: &str = "5.1.0";
const FIRST_PORT: u16 = 18100;

fn dir() -> PathBuf {
    crate::stack::dir().join("ralph")
}

/// Starts Ralph unless it runs; returns its URL and restart script.
pub fn up(clickhouse_url: &str) -> Result<Vec<(String, String)>, String> {
    // `requests` is imported by ralph.api but not declared by the `lrs` extra.
    let requirements =
        vec![format!("ralph-malph[cli,lrs,backend-clickhouse]=={VERSION}"), "requests==2.32.3".to_owned()];
    let python = crate::venv::ensure(&format!("ralph-{VERSION}"), &requirements, &[], "Ralph 5.1.0 (~25 s)")?;
    fs::create_dir_all(dir()).map_err(|e| e.to_string())?;
    let (ch_host, ch_port) = clickhouse_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(|| format!("{clickhouse_url} is not http://HOST:PORT"))?;
    let port = match read_number::<u16>(&dir().join("port")) {
        Some(p) if running().is_some() => p,
        _ => free_port(FIRST_PORT)?,
    };
    fs::write(dir().join("port"), format!("{port}\n")).map_err(|e| e.to_string())?;
    let script = dir().join("restart");
    let d = dir().display().to_string();
    let text = format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask stack up`: (re)starts the stack's Ralph {VERSION}, e.g. as the on_change of\n\
         # its auth file (Ralph reads it once per process). Returns once Ralph answers.\n\
         cd '{d}' || exit 1\n\
         if [ -f pid ]; then kill -TERM \"$(cat pid)\" 2>/dev/null; i=0; while kill -0 \"$(cat pid)\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; fi\n\
         RALPH_RUNSERVER_BACKEND=clickhouse RALPH_AUTH_FILE='{d}/auth.json' \\\n\
         RALPH_BACKENDS__LRS__CLICKHOUSE__HOST='{ch_host}' RALPH_BACKENDS__LRS__CLICKHOUSE__PORT='{ch_port}' \\\n\
         RALPH_BACKENDS__LRS__CLICKHOUSE__DATABASE=xapi RALPH_BACKENDS__LRS__CLICKHOUSE__EVENT_TABLE_NAME=xapi_events_all \\\n\
         RALPH_BACKENDS__LRS__CLICKHOUSE__USERNAME=default RALPH_BACKENDS__LRS__CLICKHOUSE__PASSWORD= \\\n\
         exec '{python}' -m uvicorn ralph.api:app --host 127.0.0.1 --port {port} </dev/null >>log 2>&1 &\n\
         echo $! > pid\n\
         i=0; until '{python}' -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:{port}/__lbheartbeat__\")' 2>/dev/null; do\n\
         \x20 [ $i -ge 300 ] && {{ echo 'Ralph did not start; see {d}/log' >&2; exit 1; }}; sleep 0.1; i=$((i+1)); done\n",
        python = python.display(),
    );
    fs::write(&script, text).map_err(|e| e.to_string())?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    if running().is_none() {
        let started = std::time::Instant::now();
        crate::run(&mut Command::new(&script))?;
        eprintln!(
            "stack: started Ralph {VERSION} (uvicorn) on 127.0.0.1:{port} in {} ms",
            started.elapsed().as_millis()
        );
    }
    let script = script.display().to_string();
    Ok(vec![
        (URL.to_owned(), format!("http://127.0.0.1:{port}")),
        (RESTART.to_owned(), script.clone()),
        // The reference plan's vars (plans/local.toml): the LMS routes xAPI here, and the demo's
        // auth file restarts this Ralph.
        ("ASPECTS_VAR_RALPH_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("ASPECTS_VAR_RALPH_PORT".to_owned(), port.to_string()),
        ("ASPECTS_VAR_RALPH_RESTART".to_owned(), script),
    ])
}

/// The pid and port of a Ralph this stack started, if its process lives.
fn running() -> Option<(u32, u16)> {
    let pid = read_number(&dir().join("pid")).filter(|p| alive(*p))?;
    Some((pid, read_number(&dir().join("port"))?))
}

pub fn down() {
    if let Some(pid) = read_number::<u32>(&dir().join("pid")).filter(|p| alive(*p)) {
        stop(pid);
    }
}

pub fn status() {
    match running() {
        Some((pid, port)) => println!("ralph (private) running: pid {pid}, http://127.0.0.1:{port}"),
        None => println!("ralph (private) not running; `cargo xtask stack up` starts it"),
    }
}

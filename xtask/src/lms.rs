//! The stack's LMS database: the schema the LMS's own packages create, built by running the real
//! upstream Django migrations of the pinned project in fixtures/lms/ into the database `openedx`
//! (utf8mb4) on the stack's MariaDB. The project's venv is cached like chdb's
//! (`~/.cache/aspects-stack/lms-<hash of fixtures/lms/requirements.txt>/`); nothing runs once
//! `up` returns, so `down` has nothing to stop (the rows live in MariaDB's data directory).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use sqlx::{Connection, MySqlConnection};

use crate::root;
use crate::stack::block_on;

/// The LMS database the tests and the demo use (`mysql://USER@HOST:PORT/openedx`).
pub const DB_URL: &str = "ASPECTS_STACK_LMS_DB_URL";
/// The python of the fixture's venv: tests read rows back through the real Django models with
/// `$ASPECTS_STACK_LMS_PYTHON fixtures/lms/manage.py shell -c ...`.
pub const PYTHON: &str = "ASPECTS_STACK_LMS_PYTHON";
/// The fixture's FERNET_KEYS[0] (fixtures/lms/lms_fixture/settings.py: a test value, never beside
/// a real LMS), for the reference plan's OPENEDX_FERNET_KEY on the stack.
pub const FERNET_KEY: &str = "ASPECTS_STACK_LMS_FERNET_KEY";
const DATABASE: &str = "openedx";

fn project() -> PathBuf {
    root().join("fixtures/lms")
}

/// Installs the venv if needed, creates the database and migrates it; returns the environment
/// entries naming it. `mysql` is the stack's server URL (no path).
pub fn up(mysql: &str) -> Result<Vec<(String, String)>, String> {
    let python = ensure_installed()?;
    let url = format!("{}/{DATABASE}", mysql.trim_end_matches('/'));
    block_on(create_database(mysql))?;
    let started = Instant::now();
    let out = Command::new(&python)
        .arg(project().join("manage.py"))
        .args(["migrate", "--no-input"])
        .current_dir(project())
        .env(DB_URL, &url)
        .output()
        .map_err(|e| format!("cannot run the LMS fixture's manage.py: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`manage.py migrate` of fixtures/lms failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let applied = String::from_utf8_lossy(&out.stdout).matches("  Applying ").count();
    eprintln!(
        "stack: LMS schema in database {DATABASE}: {applied} migrations applied in {} ms (fixtures/lms)",
        started.elapsed().as_millis()
    );
    Ok(vec![
        (DB_URL.to_owned(), url),
        (PYTHON.to_owned(), python.display().to_string()),
        (FERNET_KEY.to_owned(), "aspects-lms-schema-fixture-fernet-key".to_owned()),
    ])
}

/// Which migrations the database holds, for `stack status`.
pub fn status(mysql: Option<String>) {
    let Some(mysql) = mysql else {
        println!("lms schema not available: MariaDB is not running");
        return;
    };
    let count = block_on(async {
        let mut c = MySqlConnection::connect(&mysql).await?;
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM openedx.django_migrations").fetch_one(&mut c).await?;
        Ok::<_, sqlx::Error>(n.0)
    });
    match count {
        Ok(n) => println!("lms schema (fixtures/lms) database {DATABASE}  migrated ({n} migrations recorded)"),
        Err(_) => println!("lms schema not migrated; `cargo xtask stack up` does it"),
    }
}

/// The venv for fixtures/lms/requirements.txt, keyed by the file's hash.
fn ensure_installed() -> Result<PathBuf, String> {
    crate::venv::ensure_file(
        "lms",
        &project().join("requirements.txt"),
        crate::venv::MYSQLCLIENT_BUILD_DEPS,
        "the LMS schema project's Django packages (~60 s)",
    )
}

async fn create_database(mysql: &str) -> Result<(), String> {
    let fail = |e: sqlx::Error| format!("cannot create the LMS database {DATABASE}: {e}");
    let mut c = MySqlConnection::connect(mysql).await.map_err(fail)?;
    // The private server's default character set is latin1; the LMS's database is utf8mb4.
    sqlx::query("CREATE DATABASE IF NOT EXISTS openedx CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        .execute(&mut c)
        .await
        .map_err(fail)?;
    c.close().await.map_err(fail)
}

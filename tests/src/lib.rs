//! Harness for the end-to-end tests: runs the real `aspects` binary against the real local
//! stack (MariaDB from `cargo xtask stack up`; see [`mysql_url`]).
//!
//! Every test gets a [`Sandbox`]: its own directory, and a unique prefix for the objects it
//! creates, so tests run in parallel and repeated runs never collide.

pub mod clickhouse;
pub mod superset;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, MySqlPool};

/// The MariaDB the tests use: ASPECTS_STACK_MYSQL_URL, else the one `cargo xtask stack up`
/// recorded in target/stack/env (its private server, on whatever port it got).
pub fn mysql_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| stack_env(STACK_MYSQL_URL)).clone()
}

/// A value `cargo xtask stack up` exports: from the environment (the tests run under `cargo xtask
/// test`, or with `. target/stack/env`), else from target/stack/env.
pub fn stack_env(name: &str) -> String {
    optional_stack_env(name).unwrap_or_else(|| {
        panic!("no {name}: run `cargo xtask stack up` (it writes {}) or set {name}", stack_env_file().display())
    })
}

/// [`stack_env`], or None when neither the environment nor target/stack/env has it.
pub fn optional_stack_env(name: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name)
        && !value.is_empty()
    {
        return Some(value);
    }
    std::fs::read_to_string(stack_env_file())
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .map(|v| v.trim_matches('\'').replace(r"'\''", "'"))
}

fn stack_env_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/stack/env")
}

const STACK_MYSQL_URL: &str = "ASPECTS_STACK_MYSQL_URL";

/// The pause test hook (`aspects_engine::fault`): `k:PATH` holds a run after its k-th write
/// until PATH exists.
const PAUSE_AFTER_WRITES: &str = "ASPECTS_FAULT_PAUSE_AFTER_WRITES";

/// The `aspects` binary. The e2e tests are test targets of `aspects-cli`, so cargo has built it
/// beside the test executable's `deps/` folder (wherever CARGO_TARGET_DIR puts it).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("aspects");
    assert!(bin.exists(), "{} is missing: run the tests with `cargo xtask test`", bin.display());
    bin
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Sandbox {
    pub dir: PathBuf,
    /// Prefix of every object name this test creates (`t<pid>_<n>_`).
    pub prefix: String,
    pub env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-9),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Sandbox {
    pub fn new(name: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("t{}_{n}_", std::process::id());
        let dir = std::env::temp_dir().join(format!("aspects-e2e-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Sandbox { dir, prefix, env: Vec::new() }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn write(&self, file: &str, text: &str) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A plan file header: this sandbox's deployment and provider. `@@` in the body becomes the
    /// sandbox prefix, so tests read like plan files.
    pub fn plan(&self, body: &str) -> String {
        format!(
            "[deployment]\nname = \"{p}dep\"\n\n[providers.mysql]\nurl = \"{url}\"\n\n{}",
            body.replace("@@", &self.prefix),
            p = self.prefix,
            url = mysql_url()
        )
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args).current_dir(&self.dir).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("ASPECTS_") || k == "NO_COLOR" {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// Starts `aspects ARGS` held right after its `k`-th write (the pause test hook), and returns
    /// once it says so; creating the returned file lets it go on. Run without $USER and $LOGNAME,
    /// as under cron: whoever reports it as a lock holder must still name it.
    pub fn paused(&self, args: &[&str], k: usize) -> (Child, PathBuf) {
        let go = self.path(&format!("go-{k}"));
        let mut c = self.command(args);
        c.env(PAUSE_AFTER_WRITES, format!("{k}:{}", go.display()));
        c.env_remove("USER").env_remove("LOGNAME");
        let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        wait_line(&mut child, "(test hook)");
        (child, go)
    }

    /// Text with the sandbox's own paths and prefix replaced, for snapshots.
    pub fn scrub(&self, text: &str) -> String {
        // The prefix also appears with its `_` escaped, as a MySQL pattern (doubled once more
        // in quoted output).
        let escaped = self.prefix.replace('_', "\\_");
        text.replace(&self.dir.display().to_string(), "[DIR]")
            .replace(&escaped.replace('\\', "\\\\"), "@@")
            .replace(&escaped, "@@")
            .replace(&self.prefix, "@@")
    }

    /// Where the sandbox deployment's secrets file is by default (bound to the deployment).
    pub fn secrets_path(&self) -> PathBuf {
        self.path(&format!(".aspects/{}dep.secrets.toml", self.prefix))
    }

    pub fn secrets_file(&self) -> String {
        std::fs::read_to_string(self.secrets_path()).unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || block_on(cleanup(&prefix))).join();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// No value the secrets file ever held may appear in output, the journal or a saved plan: every
/// file under the sandbox but the secrets file, and every run's output.
pub fn assert_no_secret(s: &Sandbox, values: &[&str], runs: &[&Run]) {
    let files = read_tree(&s.dir).replace(&std::fs::read_to_string(s.secrets_path()).unwrap_or_default(), "");
    for v in values {
        assert!(!files.contains(v), "a secret value is in a file under the sandbox");
        for r in runs {
            assert!(!r.all().contains(v), "a secret value is in the output: {r:?}");
        }
    }
}

/// Runs `aspects ARGS` with the fault hook aborting it right after its `k`-th write (as `kill -9`
/// would); a run that makes fewer than `k` writes finishes normally.
pub fn crash_after_write(s: &Sandbox, args: &[&str], k: usize) -> Run {
    let mut crashing = s.command(args);
    crashing.env(aspects_engine::fault::ABORT_AFTER_WRITES, k.to_string());
    crashing.output().unwrap().into()
}

/// Aborts `aspects ARGS` (an apply, a rotate) right after its k-th write, for k = 1, 2, ...,
/// calling `after_crash(k, aborted)` after each aborted run: the test converges and checks there,
/// and puts back what the next run starts from. The aborted run is passed so a test can check
/// what it printed (no secret). Ends when a run makes fewer than k writes and succeeds: every
/// crash point was tried. Returns how many writes that whole run makes.
pub fn crash_at_every_write(s: &Sandbox, args: &[&str], mut after_crash: impl FnMut(usize, &Run)) -> usize {
    let mut k = 1;
    loop {
        let r = crash_after_write(s, args, k);
        if r.code == 0 {
            return k - 1;
        }
        assert!(r.stderr.contains(&format!("aborting after write {k} (test hook)")), "k = {k}: {r:?}");
        after_crash(k, &r);
        k += 1;
    }
}

/// Copies the folder `from` to `to`, recursively (a fixture a test changes).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

pub async fn admin() -> MySqlPool {
    let opts: MySqlConnectOptions = mysql_url().parse().unwrap();
    MySqlPoolOptions::new().max_connections(2).connect_with(opts.disable_statement_logging()).await.unwrap()
}

/// Runs `f` while a connection of the test's own holds the advisory lock `name`, as another run
/// would; the lock is released when `f` returns.
pub fn holding_lock<T>(name: &str, f: impl FnOnce() -> T) -> T {
    block_on(async {
        let pool = admin().await;
        let mut held = pool.acquire().await.unwrap();
        let got: (i64,) = sqlx::query_as("SELECT GET_LOCK(?, 0)").bind(name).fetch_one(&mut *held).await.unwrap();
        assert_eq!(got.0, 1, "lock {name} is free");
        let out = f();
        let _: (Option<i64>,) =
            sqlx::query_as("SELECT RELEASE_LOCK(?)").bind(name).fetch_one(&mut *held).await.unwrap();
        out
    })
}

/// Runs statements as the admin (to inject drift), panicking on error. Test-authored SQL only.
pub fn sql(statements: &[&str]) {
    block_on(async {
        let pool = admin().await;
        for s in statements {
            sqlx::raw_sql(AssertSqlSafe(s.to_string())).execute(&pool).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    })
}

/// The first column of the first row, as text.
pub fn query_one(statement: &str) -> Option<String> {
    block_on(async {
        let pool = admin().await;
        let row: Option<(Option<String>,)> = sqlx::query_as(AssertSqlSafe(statement.to_owned()))
            .fetch_optional(&pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        row.and_then(|r| r.0)
    })
}

/// Can `user`@127.0.0.1 log in with `password`?
pub fn can_login(user: &str, password: &str) -> bool {
    block_on(async {
        let opts: MySqlConnectOptions = mysql_url().parse().unwrap();
        let opts = opts.username(user).password(password).disable_statement_logging();
        match opts.connect().await {
            Ok(c) => {
                let _ = sqlx::Connection::close(c).await;
                true
            }
            Err(_) => false,
        }
    })
}

async fn cleanup(prefix: &str) {
    let pool = admin().await;
    let like = format!("{}%", prefix.replace('_', "\\_"));
    // The meta tables may not exist (nothing was applied): ignore that.
    let _ = sqlx::query("DELETE FROM aspects_meta.owned WHERE deployment LIKE ?").bind(&like).execute(&pool).await;
    let _ = sqlx::query("DELETE FROM aspects_meta.locks WHERE name LIKE ?")
        .bind(format!("aspects:{like}"))
        .execute(&pool)
        .await;
    let dbs: Vec<(String,)> =
        sqlx::query_as("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?")
            .bind(&like)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    for (db,) in dbs {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{}`", db.replace('`', "``"))))
            .execute(&pool)
            .await;
    }
    let users: Vec<(String, String)> =
        sqlx::query_as("SELECT CAST(User AS CHAR), CAST(Host AS CHAR) FROM mysql.user WHERE User LIKE ?")
            .bind(&like)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    for (u, h) in users {
        let q = |s: &str| s.replace('\\', "\\\\").replace('\'', "''");
        // A MariaDB role is a user row with an empty host that only DROP ROLE removes.
        let drop = if h.is_empty() {
            format!("DROP ROLE IF EXISTS '{}'", q(&u))
        } else {
            format!("DROP USER IF EXISTS '{}'@'{}'", q(&u), q(&h))
        };
        let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&pool).await;
    }
}

/// Reads the child's stderr until a line holds `what`; every line stays in its output.
pub fn wait_line(child: &mut Child, what: &str) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref().map_while(Result::ok) {
        let found = l.contains(what);
        seen.push(l);
        if found {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.contains(what)), "the run never said {what:?}: {seen:?}");
    let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for l in seen.into_iter().chain(lines.map_while(Result::ok)) {
            let _ = writeln!(tx, "{l}");
        }
    });
    child.stderr = Some(std::os::fd::OwnedFd::from(rx).into());
}

/// Every file under `dir`, concatenated, for secret scans.
pub fn read_tree(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push_str(&read_tree(&p));
        } else if let Ok(t) = std::fs::read_to_string(&p) {
            out.push_str(&t);
        }
    }
    out
}

/// A plan body of `groups` databases, each with a user and a grant (`@@` prefixed names): many
/// independent changes, for locks, concurrency and scale.
pub fn many(groups: usize) -> String {
    let mut body = String::from("[secrets]\npw = { generate = 24 }\n");
    for i in 0..groups {
        body.push_str(&format!(
            "\n[mysql_database.d{i}]\nname = \"@@d{i}\"\n\n[mysql_user.u{i}]\nuser = \"@@u{i}\"\npassword = \"${{secrets.pw}}\"\n\n\
             [mysql_grant.g{i}]\nuser = \"${{mysql_user.u{i}.user}}\"\non = \"${{mysql_database.d{i}.name}}.*\"\nprivileges = [\"ALL\"]\n"
        ));
    }
    body
}

/// What plans/local.toml reads from target/stack/env besides the endpoints a test sets itself:
/// the LMS fixture's Fernet key, the stack's Superset (address and admin password), the
/// plugin's templates (the asset bundle), and a files root of the sandbox's own. Sandboxes start without any `ASPECTS_*` variable.
pub fn local_overlay_env(s: &Sandbox) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        "ASPECTS_STACK_LMS_FERNET_KEY",
        "ASPECTS_STACK_SUPERSET_PASSWORD",
        "ASPECTS_VAR_SUPERSET_HOST",
        "ASPECTS_VAR_SUPERSET_PORT",
        "ASPECTS_VAR_ASPECTS_TEMPLATES",
    ]
    .into_iter()
    .map(|k| (k.to_owned(), stack_env(k)))
    .collect();
    env.push(("ASPECTS_VAR_ASPECTS_CONFIG_ROOT".to_owned(), s.path("files").display().to_string()));
    env
}

/// The stack's LMS database: the schema the real upstream migrations of fixtures/lms built.
pub fn lms_db_url() -> String {
    stack_env("ASPECTS_STACK_LMS_DB_URL")
}

pub async fn lms_admin() -> MySqlPool {
    let opts: MySqlConnectOptions = lms_db_url().parse().unwrap();
    MySqlPoolOptions::new().max_connections(2).connect_with(opts.disable_statement_logging()).await.unwrap()
}

/// Runs `code` in the Django shell of fixtures/lms (the LMS's real models, on the stack's LMS
/// database) with `env` set, and parses the last line it prints as JSON: how tests read rows
/// back the way the LMS would.
pub fn django(code: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/lms");
    let out = Command::new(stack_env("ASPECTS_STACK_LMS_PYTHON"))
        .arg(project.join("manage.py"))
        .args(["shell", "--no-imports", "-c", code])
        .current_dir(&project)
        .env("ASPECTS_STACK_LMS_DB_URL", lms_db_url())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "manage.py shell failed: {run:?}");
    let last = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

//! The `exec` kind end to end: the `aspects` binary running real commands and checks in a
//! sandbox, and a check that queries the stack's real MariaDB.

use std::path::Path;

use aspects_e2e::{Run, Sandbox, mysql_url, query_one, read_tree, stack_env};

/// A deployment with an exec provider running in the sandbox; `@@` is the sandbox prefix.
fn plan(s: &Sandbox, body: &str) -> String {
    format!("[deployment]\nname = \"{p}dep\"\n\n[providers.exec]\n\n{}", body.replace("@@", &s.prefix), p = s.prefix)
}

/// Needed until `marker` exists; the command makes it and logs each run.
const MARKER: &str = r#"
[exec.marker]
command = ["sh", "-c", "echo ran >> runs.log && touch marker"]
check = ["sh", "-c", "test -e marker || { echo 'marker is missing'; exit 1; }"]
"#;

fn sandbox(name: &str, body: &str) -> Sandbox {
    let s = Sandbox::new(name);
    s.write("aspects.toml", &plan(&s, body));
    s
}

fn runs(s: &Sandbox, log: &str) -> usize {
    std::fs::read_to_string(s.path(log)).unwrap_or_default().lines().count()
}

fn ok(s: &Sandbox, args: &[&str]) -> Run {
    let r = s.run(args);
    assert_eq!(r.code, 0, "{r:?}");
    r
}

fn no_changes(s: &Sandbox) {
    let r = ok(s, &["plan"]);
    assert!(r.stdout.contains("No changes"), "{r:?}");
}

#[test]
fn a_needed_step_runs_once_then_plan_is_empty_and_a_removed_marker_is_drift() {
    let s = sandbox("exec-marker", MARKER);
    let first = ok(&s, &["plan"]);
    insta::assert_snapshot!("exec_first_plan", s.scrub(&first.stdout));
    assert_eq!(runs(&s, "runs.log"), 0, "plan runs only the check, never the command");

    ok(&s, &["apply", "--auto-approve"]);
    assert_eq!(runs(&s, "runs.log"), 1);
    no_changes(&s);
    assert_eq!(s.run(&["drift"]).code, 0);
    ok(&s, &["apply", "--auto-approve"]);
    assert_eq!(runs(&s, "runs.log"), 1, "an up-to-date step does not run");

    std::fs::remove_file(s.path("marker")).unwrap();
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    assert!(drift.stdout.contains(r#""needed (check exited 1: marker is missing)" -> "up to date""#), "{drift:?}");
    // A saved plan: applying it checks again and finds the same step needed, for the same reason.
    ok(&s, &["plan", "--out", "saved.json"]);
    ok(&s, &["apply", "saved.json"]);
    assert_eq!(runs(&s, "runs.log"), 2);
    no_changes(&s);
}

#[test]
fn a_second_apply_waits_for_the_lock_of_a_running_one() {
    let s = sandbox("exec-lock", MARKER);
    let (mut first, go) = s.paused(&["apply", "--auto-approve"], 1);
    let second = s.run(&["apply", "--auto-approve"]);
    assert_eq!(second.code, 1, "{second:?}");
    assert!(second.stderr.contains(&format!("exec-{}dep.lock is locked by", s.prefix)), "{second:?}");
    std::fs::write(go, "").unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(runs(&s, "runs.log"), 1);
    no_changes(&s);
}

#[test]
fn a_command_past_its_timeout_is_killed_with_what_it_started() {
    let s = sandbox(
        "exec-timeout",
        r#"
[exec.hangs]
command = ["sh", "-c", "sleep 60 & echo $! > child.pid; wait"]
check = ["test", "-e", "never-made"]
timeout = 1
"#,
    );
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("exec.hangs.command: `sh` ran longer than its timeout (1 s) and was killed"), "{r:?}");
    let pid = std::fs::read_to_string(s.path("child.pid")).unwrap();
    // Killed, it is a zombie until init reaps it (here, not at once): dead either way.
    let alive = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
    };
    for _ in 0..50 {
        if !alive() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!alive(), "the command's own child outlived the timeout");
}

#[test]
fn a_command_that_leaves_its_check_failing_fails_the_apply() {
    let s = sandbox(
        "exec-no-converge",
        r#"
[exec.stuck]
command = ["true"]
check = ["test", "-e", "never-made"]
"#,
    );
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("aspects.toml:8:11: exec.stuck: the command succeeded but the check still says"),
        "{r:?}"
    );
    assert!(r.stderr.contains("fix the command or the check"), "{r:?}");
}

#[test]
fn a_failing_command_shows_its_stderr_tail_and_runs_again_next_time() {
    let s = sandbox(
        "exec-fails",
        r#"
[exec.flaky]
command = ["sh", "-c", "echo try >> runs.log; seq 1 40 >&2; echo 'upgrade failed: no database' >&2; exit 3"]
check = ["test", "-e", "marker"]
"#,
    );
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("exec.flaky.command: `sh` exited 3 after"), "{r:?}");
    assert!(r.stderr.contains("| upgrade failed: no database"), "{r:?}");
    assert!(r.stderr.contains("| 22\n") && !r.stderr.contains("| 21\n"), "the last 20 lines only: {r:?}");
    assert_eq!(s.run(&["apply", "--auto-approve"]).code, 1);
    assert_eq!(runs(&s, "runs.log"), 2);
}

#[test]
fn a_check_that_errors_fails_the_plan_at_its_location_with_its_stderr() {
    let s = sandbox(
        "exec-check-error",
        r#"
[exec.broken]
command = ["true"]
check = ["sh", "-c", "echo 'cannot reach the metadata database' >&2; exit 2"]
"#,
    );
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("aspects.toml:9:9: exec.broken.check: `sh` exited 2"), "{r:?}");
    assert!(r.stderr.contains("| cannot reach the metadata database"), "{r:?}");
    assert!(r.stderr.contains("hint: a check exits 0 when the step is done and 1 when it is needed"), "{r:?}");

    s.write("aspects.toml", &plan(&s, "[exec.missing]\ncommand = [\"true\"]\ncheck = [\"no-such-program-x\"]\n"));
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("exec.missing.check: `no-such-program-x` could not start"), "{r:?}");

    s.write(
        "aspects.toml",
        &plan(&s, "[exec.slow]\ncommand = [\"true\"]\ncheck = [\"sh\", \"-c\", \"sleep 30\"]\ntimeout = 1\n"),
    );
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("ran longer than its timeout (1 s) and was killed"), "{r:?}");
}

const TOKEN: &str = "Tok-5c2e9a7f1b3d4e6a8c0b";

/// The secret reaches the child through its environment, and only there.
const SECRET_STEP: &str = r#"
[secrets]
TOKEN = { env = "EXEC_TOKEN" }

[exec.with_secret]
working_dir = "work"
env = { TOKEN = "${secrets.TOKEN}", MODE = "plain" }
command = ["sh", "-c", "printf %s \"$TOKEN\" > got && env > env.txt && echo \"used $TOKEN\""]
check = ["sh", "-c", "test -e got || { echo \"no file for $TOKEN yet\"; exit 1; }"]

[exec.leaky_failure]
env = { TOKEN = "${secrets.TOKEN}" }
command = ["sh", "-c", "echo \"login failed for $TOKEN\" >&2; exit 1"]
check = ["sh", "-c", "echo \"needs $TOKEN\"; exit 1"]
"#;

#[test]
fn secrets_reach_the_step_only_through_its_environment_and_are_never_shown() {
    let mut s = sandbox("exec-secret", SECRET_STEP);
    std::fs::create_dir(s.path("work")).unwrap();
    s.set_env("EXEC_TOKEN", TOKEN);
    let mut all = Vec::new();
    for (args, code) in [
        (&["plan"][..], 0),
        (&["plan", "--json"], 0),
        (&["plan", "--out", "saved.json"], 0),
        (&["apply", "--auto-approve", "-vv"], 1),
        (&["drift", "--json"], 2),
    ] {
        let mut c = s.command(args);
        c.env("ASPECTS_LOG", "trace");
        let r: Run = c.output().unwrap().into();
        assert_eq!(r.code, code, "{args:?}: {r:?}");
        all.push(r);
    }
    let plan = &all[0];
    assert!(plan.stdout.contains("needed (check exited 1: no file for (sensitive) yet)"), "{plan:?}");
    let apply = &all[3];
    assert!(apply.stderr.contains("| login failed for (sensitive)"), "{apply:?}");

    assert_eq!(std::fs::read_to_string(s.path("work/got")).unwrap(), TOKEN);
    let env = std::fs::read_to_string(s.path("work/env.txt")).unwrap();
    assert!(env.contains("MODE=plain\n"), "{env}");
    assert!(!env.contains("EXEC_TOKEN"), "aspects' own environment is not passed on: {env}");
    std::fs::remove_dir_all(s.path("work")).unwrap();
    let files = read_tree(&s.dir);
    assert!(files.contains("apply_started"), "the journal was written and is scanned");
    for r in &all {
        assert!(!r.all().contains(TOKEN), "the secret in the output: {r:?}");
    }
    assert!(!files.contains(TOKEN), "the secret in the journal or the saved plan");
}

#[test]
fn a_secret_in_arguments_or_a_step_without_check_is_refused_at_load() {
    let s = sandbox(
        "exec-argv-secret",
        r#"
[secrets]
TOKEN = { env = "EXEC_TOKEN" }

[exec.argv]
command = ["curl", "-u", "admin:${secrets.TOKEN}", "http://localhost"]
check = ["false"]

[exec.unchecked]
command = ["superset", "init"]
"#,
    );
    let r = s.run(&["validate"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("`command` cannot hold a secret, but its value is built from secrets.TOKEN"), "{r:?}");
    assert!(r.stderr.contains("aspects.toml:11:11"), "{r:?}");
    assert!(r.stderr.contains("pass the secret in `env`"), "{r:?}");
    assert!(r.stderr.contains("a step needs a `check`"), "{r:?}");
}

#[test]
fn a_kill_after_each_command_converges_without_running_a_finished_step_again() {
    let body = r#"
[exec.first]
command = ["sh", "-c", "echo ran >> first.log && touch first"]
check = ["test", "-e", "first"]

[exec.second]
depends_on = ["exec.first"]
command = ["sh", "-c", "echo ran >> second.log && touch second"]
check = ["test", "-e", "second"]
"#;
    let s = sandbox("exec-kill", body);
    let writes = aspects_e2e::crash_at_every_write(&s, &["apply", "--auto-approve"], |k, _| {
        ok(&s, &["apply", "--auto-approve"]);
        no_changes(&s);
        assert_eq!((runs(&s, "first.log"), runs(&s, "second.log")), (1, 1), "after a kill at write {k}");
        // The next crash point starts with neither step done.
        for f in ["first", "second", "first.log", "second.log"] {
            std::fs::remove_file(s.path(f)).unwrap();
        }
    });
    assert!(writes >= 2, "each command is a write: {writes}");
    no_changes(&s);
    assert_eq!((runs(&s, "first.log"), runs(&s, "second.log")), (1, 1), "without a kill");
}

/// The steps of an operator's database, after the database itself: a table made by a client
/// command, checked by a query. The check sees the database only once it exists, and says
/// "needed" until then, so one apply creates both in dependency order.
#[test]
fn a_check_query_against_the_stack_mariadb_orders_after_the_database_it_needs() {
    let (host, port) = mysql_host_port();
    let s = Sandbox::new("exec-mariadb");
    let body = format!(
        r#"
[providers.exec]
env = {{ MYSQL_HOST = "{host}", MYSQL_TCP_PORT = "{port}" }}

[mysql_database.app]
name = "@@app"

[exec.app_schema]
env = {{ DB = "${{mysql_database.app.name}}" }}
command = ["sh", "-c", "mariadb -u root -e \"CREATE TABLE \\`$DB\\`.events (id INT)\""]
check = ["sh", "-c", "n=$(mariadb -u root -N -B -e \"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$DB' AND table_name = 'events'\") || exit 2; [ \"$n\" = 1 ] || {{ echo \"table $DB.events is missing\"; exit 1; }}"]
"#
    );
    s.write("aspects.toml", &s.plan(&body));
    let first = ok(&s, &["plan"]);
    assert!(first.stdout.contains("table @@app.events is missing".replace("@@", &s.prefix).as_str()), "{first:?}");
    ok(&s, &["apply", "--auto-approve"]);
    let count = format!(
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.tables WHERE table_schema = '{}app' AND table_name = 'events'",
        s.prefix
    );
    assert_eq!(query_one(&count).as_deref(), Some("1"));
    no_changes(&s);
    aspects_e2e::sql(&[&format!("DROP TABLE `{}app`.events", s.prefix)]);
    assert_eq!(s.run(&["drift"]).code, 2);
    ok(&s, &["apply", "--auto-approve"]);
    no_changes(&s);
}

/// Host and port of the stack's MariaDB, for the `mariadb` client (`MYSQL_HOST`, `MYSQL_TCP_PORT`).
fn mysql_host_port() -> (String, String) {
    let url = mysql_url();
    let addr = url.rsplit('@').next().unwrap().trim_end_matches('/');
    let (host, port) = addr.split_once(':').unwrap();
    (host.to_owned(), port.to_owned())
}

/// The real use: Superset's `superset db upgrade` and `superset init` as steps, with the stack's
/// Superset 6.1.0 CLI and configuration, on a metadata database the same plan creates. The first
/// check asks the server whether the database exists, then Superset whether its migrations are
/// at head; the second whether Superset's roles exist.
#[test]
fn superset_db_upgrade_and_init_run_once_on_a_metadata_database_the_plan_creates() {
    let python = stack_env("ASPECTS_STACK_SUPERSET_PYTHON");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = root.join("xtask/superset/superset_config.py");
    // The stack's secret key file, which its configuration reads; nothing is written there.
    let state = root.join("target/stack/superset");
    let (host, port) = mysql_host_port();
    let s = Sandbox::new("exec-superset");
    std::fs::create_dir(s.path("home")).unwrap();
    let body = format!(
        r#"
[providers.exec]
env = {{ MYSQL_HOST = "{host}", MYSQL_TCP_PORT = "{port}", PY = "{python}", SUPERSET_CONFIG_PATH = "{config}", SUPERSET_HOME = "{home}", ASPECTS_SUPERSET_STATE = "{state}" }}

[mysql_database.superset]
name = "@@superset"

[exec.superset_db_upgrade]
env = {{ DB = "${{mysql_database.superset.name}}", ASPECTS_SUPERSET_METADATA_URI = "mysql+mysqldb://root@{host}:{port}/${{mysql_database.superset.name}}?charset=utf8mb4" }}
command = ["sh", "-c", '"$PY" -c "from superset.cli.main import superset; superset()" db upgrade']
check = ["sh", "-c", '''
n=$(mariadb -u root -N -B -e "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '$DB'") || exit 2
[ "$n" = 1 ] || {{ echo "database $DB is missing"; exit 1; }}
out=$("$PY" -c "from superset.cli.main import superset; superset()" db current 2>&1) || {{ printf '%s\n' "$out" >&2; exit 2; }}
case "$out" in *"(head)"*) exit 0;; *) echo "migrations pending"; exit 1;; esac
''']

[exec.superset_init]
depends_on = ["exec.superset_db_upgrade"]
env = {{ DB = "${{mysql_database.superset.name}}", ASPECTS_SUPERSET_METADATA_URI = "mysql+mysqldb://root@{host}:{port}/${{mysql_database.superset.name}}?charset=utf8mb4" }}
command = ["sh", "-c", '"$PY" -c "from superset.cli.main import superset; superset()" init && echo ran >> init.log']
check = ["sh", "-c", '''
n=$(mariadb -u root -N -B -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$DB' AND table_name = 'ab_role'") || exit 2
[ "$n" = 1 ] || {{ echo "no roles table yet"; exit 1; }}
n=$(mariadb -u root -N -B -e "SELECT COUNT(*) FROM \`$DB\`.ab_role WHERE name IN ('Admin', 'Alpha', 'Gamma', 'sql_lab')") || exit 2
[ "$n" = 4 ] || {{ echo "Superset's roles are missing"; exit 1; }}
''']
"#,
        config = config.display(),
        state = state.display(),
        home = s.path("home").display(),
    );
    s.write("aspects.toml", &s.plan(&body));
    let first = ok(&s, &["plan"]);
    let missing = format!("needed (check exited 1: database {}superset is missing)", s.prefix);
    assert!(first.stdout.contains(&missing), "{first:?}");
    assert!(first.stdout.contains("needed (check exited 1: no roles table yet)"), "{first:?}");
    ok(&s, &["apply", "--auto-approve"]);
    let head = format!("SELECT version_num FROM `{}superset`.alembic_version", s.prefix);
    assert!(query_one(&head).is_some_and(|v| !v.is_empty()), "Superset's migrations ran");
    let tables = format!(
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.tables WHERE table_schema = '{}superset' AND table_name IN ('ab_user', 'dashboards', 'slices')",
        s.prefix
    );
    assert_eq!(query_one(&tables).as_deref(), Some("3"));
    let roles = format!("SELECT CAST(COUNT(*) AS CHAR) FROM `{}superset`.ab_role", s.prefix);
    assert!(query_one(&roles).is_some_and(|n| n.parse::<u32>().unwrap() >= 4), "superset init made its roles");
    assert_eq!(runs(&s, "init.log"), 1);
    no_changes(&s);
}

/// A step whose check compares what the command wrote with the secret it gets: `aspects rotate`
/// lists it as a client of the secret, its check says "needed" under the new value, and the
/// rotation runs it.
#[test]
fn a_rotated_secret_runs_again_the_step_whose_check_uses_it() {
    let s = sandbox(
        "exec-rotate",
        r#"
[secrets]
TOKEN = { generate = 24 }

[exec.writes_token]
env = { TOKEN = "${secrets.TOKEN}" }
command = ["sh", "-c", "printf %s \"$TOKEN\" > token && echo ran >> runs.log"]
check = ["sh", "-c", "test \"$(cat token 2>/dev/null)\" = \"$TOKEN\" || { echo 'token not written'; exit 1; }"]
"#,
    );
    ok(&s, &["apply", "--auto-approve"]);
    let before = std::fs::read_to_string(s.path("token")).unwrap();
    let rotate = ok(&s, &["rotate", "TOKEN", "--auto-approve"]);
    assert!(rotate.stdout.contains("exec.writes_token: client"), "{rotate:?}");
    let after = std::fs::read_to_string(s.path("token")).unwrap();
    assert_ne!(before, after);
    assert_eq!(runs(&s, "runs.log"), 2);
    no_changes(&s);
    assert!(!rotate.all().contains(&before) && !rotate.all().contains(&after), "a token in the output");
}

//! The reference plan's ClickHouse schema is Tutor's. The SQL inside tutor-contrib-aspects
//! 6.1.0's released Alembic migrations (from PyPI, unpacked by `cargo xtask stack up`; rendered
//! and extracted in revision order by tests/fidelity/alembic_sql.py) builds one set of databases,
//! as Tutor's init jobs would; `aspects apply` of plans/aspects.toml builds another; the two are
//! compared object by object in the server's own terms (system.tables, system.columns,
//! system.functions, system.dictionaries). Then an install Tutor built (its `alembic_version` at
//! head) is adopted with no change.
//!
//! Both sets live on the test server side by side, so every name is prefixed per side: the
//! databases through Tutor's config keys (the plan's vars of the same names), and the two SQL
//! functions, whose names are global and have no config key, by a textual rename on the Tutor
//! side and an overlay on the plan side. The prefixes are removed again before comparing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aspects_e2e::clickhouse::{cleanup, query, url};
use aspects_e2e::{Sandbox, local_overlay_env, mysql_url, stack_env};

/// The tables Alembic itself keeps (its revision), not part of the schema the plan declares.
const BOOKKEEPING: &[&str] = &["alembic_version"];
/// The kinds of plans/aspects.toml that make up the schema (users and grants are compared elsewhere).
const SCHEMA_KINDS: &[&str] = &["clickhouse_database", "clickhouse_table", "clickhouse_function"];
/// The Tutor config keys naming the four databases, with Tutor's defaults.
const DATABASES: &[(&str, &str)] = &[
    ("RALPH_DATABASE", "xapi"),
    ("ASPECTS_EVENT_SINK_DATABASE", "event_sink"),
    ("ASPECTS_VECTOR_DATABASE", "openedx"),
    ("DBT_PROFILE_TARGET_DATABASE", "reporting"),
];
const FUNCTIONS: &[&str] = &["get_org_from_course_url", "get_org_from_ccx_course_url"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Drops what the test made, also when it fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        cleanup(&self.0);
    }
}

/// Tutor's defaults for every config key the migrations use, databases prefixed. The admin
/// credentials only appear in dictionaries that later revisions drop again; the test server's
/// admin is `default` without a password.
fn tutor_config(side: &str) -> serde_json::Value {
    let mut config: serde_json::Map<String, serde_json::Value> =
        DATABASES.iter().map(|(k, v)| ((*k).to_owned(), format!("{side}{v}").into())).collect();
    for (k, v) in [
        ("ASPECTS_RAW_XAPI_TABLE", "xapi_events_all".into()),
        ("ASPECTS_VECTOR_RAW_TRACKING_LOGS_TABLE", "_tracking".into()),
        ("ASPECTS_PII_CACHE_LIFETIME", 900.into()),
        ("CLICKHOUSE_ADMIN_USER", "default".into()),
        ("CLICKHOUSE_ADMIN_PASSWORD", "".into()),
        ("CLICKHOUSE_CLUSTER_NAME", "".into()),
    ] {
        config.insert(k.to_owned(), v);
    }
    config.into()
}

/// (revision, statement) as the released migrations run them, in order.
fn migrations(side: &str) -> Vec<(String, String)> {
    let versions = Path::new(&stack_env("ASPECTS_STACK_TUTOR_ASPECTS"))
        .join("tutoraspects/templates/aspects/apps/aspects/migrations/alembic/versions");
    let mut child = Command::new("python3")
        .arg(root().join("tests/fidelity/alembic_sql.py"))
        .arg(&versions)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &tutor_config(side)).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "alembic_sql.py: {}", String::from_utf8_lossy(&out.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter().map(|s| (s["revision"].as_str().unwrap().to_owned(), s["sql"].as_str().unwrap().to_owned())).collect()
}

/// What Tutor does: init-clickhouse.sh's CREATE DATABASE IF NOT EXISTS, then every migration in
/// order, then Alembic's version table at head (clickhouse-sqlalchemy's `patch_alembic_version`:
/// ReplacingMergeTree(dt) ORDER BY tuple(), in the migrations' database, RALPH_DATABASE).
fn build_like_tutor(side: &str) -> usize {
    for (_, db) in DATABASES {
        run(&format!("CREATE DATABASE IF NOT EXISTS {side}{db}"), "init-clickhouse.sh");
    }
    let statements = migrations(side);
    for (revision, sql) in &statements {
        let mut sql = sql.trim().trim_end_matches(';').to_owned();
        for f in FUNCTIONS {
            sql = sql.replace(&format!("FUNCTION {f}"), &format!("FUNCTION {side}{f}"));
        }
        run(&sql, revision);
    }
    let head = &statements.last().unwrap().0;
    run(
        &format!(
            "CREATE TABLE {side}xapi.alembic_version (version_num String, dt DateTime DEFAULT now()) \
             ENGINE = ReplacingMergeTree(dt) ORDER BY tuple()"
        ),
        "alembic",
    );
    run(&format!("INSERT INTO {side}xapi.alembic_version (version_num) VALUES ('{head}')"), "alembic");
    statements.len()
}

fn run(sql: &str, revision: &str) {
    if let Err(e) = query(sql) {
        panic!("revision {revision}: {sql}\n{e}");
    }
}

/// Every object of one side, by kind and name, described in the server's canonical terms with the
/// side's prefix removed.
fn schema(side: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let names = DATABASES.iter().map(|(_, d)| format!("'{side}{d}'")).collect::<Vec<_>>().join(", ");
    let rows = |sql: String| -> Vec<Vec<String>> {
        let text = query(&format!("{sql} FORMAT JSONCompactEachRow")).unwrap();
        text.lines()
            .map(|l| {
                let row: Vec<serde_json::Value> = serde_json::from_str(l).unwrap();
                row.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned).replace(side, "")).collect()
            })
            .collect()
    };
    for r in rows(format!("SELECT name, engine FROM system.databases WHERE name IN ({names})")) {
        out.insert(format!("database {}", r[0]), format!("engine = {}", r[1]));
    }
    let columns = "(SELECT database, table, arrayStringConcat(groupArray(concat(name, ' ', type, \
                   if(default_kind = '', '', concat(' ', default_kind, ' ', default_expression)), \
                   if(compression_codec = '', '', concat(' ', compression_codec)))), '\\n    ') AS list \
                   FROM (SELECT * FROM system.columns ORDER BY position) GROUP BY database, table)";
    let tables = rows(format!(
        "SELECT t.database, t.name, t.engine, t.partition_key, t.sorting_key, t.primary_key, t.sampling_key, \
         c.list, formatQuery(t.create_table_query) FROM system.tables AS t LEFT JOIN {columns} AS c \
         ON c.database = t.database AND c.table = t.name WHERE t.database IN ({names})"
    ));
    for r in tables {
        if BOOKKEEPING.contains(&r[1].as_str()) {
            continue;
        }
        out.insert(
            format!("table {}.{}", r[0], r[1]),
            format!(
                "engine: {}\npartition key: {}\nsorting key: {}\nprimary key: {}\nsampling key: {}\ncolumns:\n    {}\n{}",
                r[2], r[3], r[4], r[5], r[6], r[7], r[8]
            ),
        );
    }
    let functions = FUNCTIONS.iter().map(|f| format!("'{side}{f}'")).collect::<Vec<_>>().join(", ");
    for r in rows(format!(
        "SELECT name, formatQuery(create_query) FROM system.functions WHERE origin = 'SQLUserDefined' \
         AND name IN ({functions})"
    )) {
        out.insert(format!("function {}", r[0]), r[1].clone());
    }
    for r in rows(format!(
        "SELECT database, name, arrayStringConcat(arrayMap((n, t) -> concat(n, ' ', t), attribute.names, \
         attribute.types), ', '), key.names, source, lifetime_min, lifetime_max, type \
         FROM system.dictionaries WHERE database IN ({names})"
    )) {
        out.insert(format!("dictionary {}.{}", r[0], r[1]), r[2..].join("\n"));
    }
    out
}

/// Object by object: what only one side has, and what differs, line by line.
fn diff(tutor: &BTreeMap<String, String>, plan: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, t) in tutor {
        match plan.get(key) {
            None => out += &format!("only in Tutor's migrations: {key}\n{t}\n\n"),
            Some(p) if p != t => {
                out += &format!("differs: {key}\n");
                let (tl, pl): (Vec<&str>, Vec<&str>) = (t.lines().collect(), p.lines().collect());
                for i in 0..tl.len().max(pl.len()) {
                    match (tl.get(i), pl.get(i)) {
                        (Some(a), Some(b)) if a == b => {}
                        (a, b) => out += &format!("  - tutor: {}\n  + plan:  {}\n", a.unwrap_or(&""), b.unwrap_or(&"")),
                    }
                }
                out += "\n";
            }
            Some(_) => {}
        }
    }
    for (key, p) in plan.iter().filter(|(k, _)| !tutor.contains_key(*k)) {
        out += &format!("only in plans/aspects.toml: {key}\n{p}\n\n");
    }
    out
}

/// The table headers of plans/aspects.toml.
fn declared() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("plans/aspects.toml")).unwrap();
    text.lines().filter_map(|l| Some(l.strip_prefix('[')?.strip_suffix(']')?.to_owned())).collect()
}

/// The addresses of the schema kinds plans/aspects.toml declares.
fn schema_targets() -> Vec<String> {
    let schema = |a: &String| SCHEMA_KINDS.iter().any(|k| a.strip_prefix(k).is_some_and(|r| r.starts_with('.')));
    declared().into_iter().filter(schema).collect()
}

/// `aspects -f plans/aspects.toml -f plans/local.toml -f overlay.toml ARGS --target ...` on the
/// schema resources, the databases and functions named for `side`, as that side's deployment;
/// `provider` adds lines to `[providers.clickhouse]`.
fn aspects(s: &Sandbox, side: &str, provider: &str, args: &[&str]) -> aspects_e2e::Run {
    let mut overlay = format!(
        "[deployment]\nname = \"{side}dep\"\n\n[providers.mysql]\nurl = \"{mysql}\"\n\n[providers.lms]\nurl = \"{lms}\"\n\n[providers.clickhouse]\n\
         url = \"{ch}\"\nmeta_database = \"{p}meta\"\nlock_lease_seconds = 30\n{provider}\n[vars]\n",
        p = s.prefix,
        mysql = mysql_url(),
        lms = stack_env("ASPECTS_STACK_LMS_DB_URL"),
        ch = url()
    );
    for (key, db) in DATABASES {
        overlay += &format!("{key} = \"{side}{db}\"\n");
    }
    // Out of --target, but checked for ownership all the same: names of this side's own, clear of
    // the demo's deployment on the same servers.
    for key in ["SUPERSET_DB_NAME", "SUPERSET_DB_USERNAME"] {
        overlay += &format!("{key} = \"{side}superset\"\n");
    }
    for f in FUNCTIONS {
        overlay += &format!("\n[clickhouse_function.{f}]\nname = \"{side}{f}\"\n");
    }
    // The LMS rows, the files and Superset's objects have fixed names the demo may own on this
    // stack; not this test's.
    let others = ["lms_", "file.", "ralph_auth.", "superset_"];
    for address in declared().iter().filter(|a| others.iter().any(|k| a.starts_with(k))) {
        overlay += &format!("\n[{address}]\nwhen = false\n");
    }
    s.write("overlay.toml", &overlay);
    let mut argv: Vec<String> = ["aspects.toml", "local.toml"]
        .iter()
        .flat_map(|f| ["-f".to_owned(), root().join("plans").join(f).display().to_string()])
        .chain(["-f".to_owned(), "overlay.toml".to_owned()])
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect();
    argv.extend(schema_targets().into_iter().flat_map(|t| ["--target".to_owned(), t]));
    // Every provider is reached whatever --target selects.
    let mut command = s.command(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    command.envs(local_overlay_env(s));
    command.output().unwrap().into()
}

#[test]
fn the_reference_plan_builds_the_schema_tutors_migrations_leave_at_head_and_adopts_it() {
    let s = Sandbox::new("fidelity");
    let _cleanup = Cleanup(s.prefix.clone());
    let (tutor_side, plan_side) = (format!("{}tutor_", s.prefix), format!("{}plan_", s.prefix));

    let statements = build_like_tutor(&tutor_side);
    let r = aspects(&s, &plan_side, "", &["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    let tutor = schema(&tutor_side);
    let plan = schema(&plan_side);
    assert!(tutor.len() > 15, "{statements} statements built only {tutor:#?}");
    let differences = diff(&tutor, &plan);
    assert!(differences.is_empty(), "plans/aspects.toml differs from Tutor's migrations at head:\n\n{differences}");
    // The schema at head, readable: a new upstream release shows up here as a reviewable change.
    let listing: String = tutor.iter().map(|(k, v)| format!("{k}\n{v}\n\n")).collect();
    insta::assert_snapshot!("tutor_schema_at_head", listing);

    // A Tutor-built install: every object adopted as it is, nothing created, changed or dropped.
    let r = aspects(&s, &tutor_side, "", &["plan", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let summary = &doc["verdict"]["summary"];
    let objects = tutor.len() as u64;
    assert_eq!(
        (summary["add"].as_u64(), summary["change"].as_u64(), summary["destroy"].as_u64(), summary["adopt"].as_u64()),
        (Some(0), Some(0), Some(0), Some(objects)),
        "{}",
        r.stdout
    );
    let r = aspects(&s, &tutor_side, "", &["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = aspects(&s, &tutor_side, "", &["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "adopted, then nothing to do: {r:?}");
    assert_eq!(schema(&tutor_side), tutor, "adoption changed nothing");
}

/// Cluster mode (Tutor's CLICKHOUSE_CLUSTER_NAME): the stack has no cluster to run the DDL on, but
/// planning canonicalises every desired CREATE, now with ON CLUSTER and Replicated* engines, with
/// the server's parser and cuts it apart; the whole schema layer passes (tests/clickhouse_cluster.rs
/// checks every other statement).
#[test]
fn in_cluster_mode_the_reference_schema_passes_the_servers_parser_at_plan_time() {
    let s = Sandbox::new("fidelity-cluster");
    let _cleanup = Cleanup(s.prefix.clone());
    let r = aspects(&s, &format!("{}c_", s.prefix), "cluster = \"aspects\"\n", &["plan", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["verdict"]["summary"]["add"].as_u64(), Some(schema_targets().len() as u64), "{}", r.stdout);
}

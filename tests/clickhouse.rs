//! The ClickHouse provider end to end: the `aspects` binary against the stack's ClickHouse (the
//! real engine behind the project's HTTP front), or a real server named by
//! ASPECTS_TEST_CLICKHOUSE_URL.

use aspects_e2e::Sandbox;
use std::collections::BTreeMap;
use std::time::Duration;

use aspects_core::{ProviderConfig, Value};
use aspects_e2e::clickhouse::{can_login, cleanup, one, plan, plan_leased, query, sql, url};
use aspects_engine::provider::Connector;

const LAYER: &str = r#"
[clickhouse_database.xapi]
name = "@@xapi"

[clickhouse_table.events]
database = "${clickhouse_database.xapi.name}"
name = "xapi_events_all"
columns = ["event_id UUID", "emission_time DateTime64(6)", "event String", "n UInt8 DEFAULT 1 CODEC(ZSTD(1))"]
engine = "ReplacingMergeTree"
partition_by = "toYYYYMM(emission_time)"
order_by = "(emission_time, event_id)"
ttl = "toDateTime(emission_time) + INTERVAL 1 YEAR"
settings = { index_granularity = 4096 }

[clickhouse_function.org]
name = "@@get_org"
lambda = "(course_url) -> nullIf(extract(course_url, 'course-v1:([a-zA-Z0-9]*)'), '')"

[clickhouse_sql.extra]
name = "extra"
statements = ["CREATE TABLE IF NOT EXISTS ${clickhouse_database.xapi.name}.extra (a UInt8) ENGINE = MergeTree ORDER BY a"]
"#;

const USER: &str = r#"
[secrets]
ch_pw = { env = "CH_PW" }

[clickhouse_user.app]
name = "@@app"
password = "${secrets.ch_pw}"
"#;

/// A sandbox whose ClickHouse objects go when it does.
struct Ch(Sandbox);

impl Drop for Ch {
    fn drop(&mut self) {
        cleanup(&self.0.prefix);
    }
}

impl std::ops::Deref for Ch {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

fn layer(name: &str, body: &str) -> Ch {
    let s = Ch(Sandbox::new(name));
    s.write("aspects.toml", &plan(&s, body));
    s
}

fn apply(s: &Sandbox, extra: &[&str]) {
    let r = s.run(&[&["apply", "--auto-approve"], extra].concat());
    assert_eq!(r.code, 0, "{r:?}");
}

fn assert_no_changes(s: &Sandbox) {
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "a plan after apply must be empty: {r:?}");
}

#[test]
fn every_kind_applies_then_plans_empty() {
    let s = layer("ch-kinds", LAYER);
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 0, "{r:?}");
    insta::assert_snapshot!("first_plan", s.scrub(&r.stdout));
    apply(&s, &[]);
    assert_no_changes(&s);
    assert_eq!(s.run(&["drift"]).code, 0);
    let p = &s.prefix;
    let engine =
        one(&format!("SELECT engine_full FROM system.tables WHERE database = '{p}xapi' AND name = 'xapi_events_all'"));
    assert!(engine.unwrap().contains("SETTINGS index_granularity = 4096"));
    assert_eq!(one(&format!("SELECT {p}get_org('course-v1:Org1+C+R')")).as_deref(), Some("Org1"));
    assert_eq!(
        one(&format!("SELECT count() FROM system.tables WHERE database = '{p}xapi' AND name = 'extra'")).as_deref(),
        Some("1")
    );
}

#[test]
fn drift_is_found_and_fixed_in_place() {
    let s = layer("ch-drift", LAYER);
    apply(&s, &[]);
    let p = &s.prefix;
    sql(&[
        &format!(
            "INSERT INTO {p}xapi.xapi_events_all (event_id, emission_time, event) VALUES (generateUUIDv4(), now64(6), 'kept')"
        ),
        &format!("ALTER TABLE {p}xapi.xapi_events_all MODIFY COLUMN event LowCardinality(String)"),
        &format!("ALTER TABLE {p}xapi.xapi_events_all ADD COLUMN by_hand UInt8"),
        &format!("ALTER TABLE {p}xapi.xapi_events_all REMOVE TTL"),
        &format!("DROP FUNCTION {p}get_org"),
    ]);
    let r = s.run(&["drift"]);
    assert_eq!(r.code, 2, "{r:?}");
    insta::assert_snapshot!("drift", s.scrub(&r.stdout));
    // The column added by hand is not in the plan: dropping it would lose data, so apply refuses.
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("column `by_hand` is not in the plan; dropping it would lose its data"), "{r:?}");
    sql(&[&format!("ALTER TABLE {p}xapi.xapi_events_all DROP COLUMN by_hand")]);
    apply(&s, &[]);
    assert_no_changes(&s);
    assert_eq!(one(&format!("SELECT event FROM {p}xapi.xapi_events_all")).as_deref(), Some("kept"));
    assert_eq!(one(&format!("SELECT {p}get_org('course-v1:A+B+C')")).as_deref(), Some("A"));
}

#[test]
fn a_data_bearing_table_is_never_dropped_without_allow_destroy() {
    let s = layer("ch-destroy", LAYER);
    apply(&s, &[]);
    let p = &s.prefix;
    sql(&[&format!(
        "INSERT INTO {p}xapi.xapi_events_all (event_id, emission_time, event) VALUES (generateUUIDv4(), now64(6), 'x')"
    )]);
    // A new sorting key means a new table: a replace, which drops the data.
    s.write("aspects.toml", &plan(&s, &LAYER.replace("(emission_time, event_id)", "(event_id, emission_time)")));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.all().contains("--allow-destroy"), "{r:?}");
    assert_eq!(one(&format!("SELECT count() FROM {p}xapi.xapi_events_all")).as_deref(), Some("1"));
    // Leaving the plan is a delete, refused the same way.
    let without =
        LAYER.split("[clickhouse_function.org]").next().unwrap().split("[clickhouse_table.events]").next().unwrap();
    s.write("aspects.toml", &plan(&s, without));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(one(&format!("SELECT count() FROM {p}xapi.xapi_events_all")).as_deref(), Some("1"));
    apply(&s, &["--allow-destroy"]);
    assert_no_changes(&s);
    assert_eq!(
        one(&format!("SELECT count() FROM system.tables WHERE database = '{p}xapi' AND name = 'xapi_events_all'"))
            .as_deref(),
        Some("0")
    );
}

#[test]
fn hostile_names_and_sql_are_refused_before_any_write() {
    let s = layer("ch-hostile", "[clickhouse_database.bad]\nname = \"@@a\\u0000b\"\n");
    let r = s.run(&["validate"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("aspects.toml:") && r.stderr.contains("control or invisible character"), "{r:?}");
    let injected = [
        ("order_by", "a SETTINGS index_granularity = 1"),
        ("order_by", "a) ENGINE = Memory --"),
        ("ttl", "d + INTERVAL 1 DAY; DROP DATABASE system"),
    ];
    for (attr, text) in injected {
        let body = format!(
            "[clickhouse_database.d]\nname = \"@@d\"\n\n[clickhouse_table.t]\ndatabase = \"@@d\"\nname = \"t\"\n\
             columns = [\"a UInt8\", \"d DateTime\"]\n{attr} = {text:?}\n{}",
            if attr == "order_by" { "" } else { "order_by = \"a\"\n" }
        );
        s.write("aspects.toml", &plan(&s, &body));
        let r = s.run(&["apply", "--auto-approve"]);
        assert_eq!(r.code, 1, "{text}: {r:?}");
        assert!(r.stderr.contains("clickhouse_table.t") && r.stderr.contains("nothing was written"), "{text}: {r:?}");
    }
    let lambda = "[clickhouse_function.f]\nname = \"@@f\"\nlambda = \"x -> x; DROP DATABASE system\"\n";
    s.write("aspects.toml", &plan(&s, lambda));
    assert_eq!(s.run(&["plan"]).code, 1);
    let p = &s.prefix;
    assert_eq!(
        one(&format!("SELECT count() FROM system.databases WHERE name LIKE '{p}%' AND name != '{p}meta'")).as_deref(),
        Some("0"),
        "nothing but the meta database (made when apply connects)"
    );
}

#[test]
fn the_plan_handle_cannot_write() {
    // What plan and drift send carries readonly=1: the server refuses a write on it.
    let url = aspects_e2e::clickhouse::url();
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let body = "CREATE DATABASE never_made";
    use std::io::{Read, Write};
    write!(stream, "POST /?readonly=1 HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("X-ClickHouse-Exception-Code: 164"), "{reply}");
    assert!(query("SELECT 1").is_ok());
}

#[test]
fn a_user_password_is_set_as_a_salted_hash_verified_by_login_and_drift_fixed() {
    let mut s = Ch(Sandbox::new("ch-user"));
    s.0.set_env("CH_PW", "first-Pw-1");
    s.write("aspects.toml", &plan(&s, USER));
    apply(&s, &[]);
    let app = format!("{}app", s.prefix);
    assert!(can_login(&app, "first-Pw-1"));
    assert!(!can_login(&app, "wrong"));
    assert_no_changes(&s);
    // Changed by hand: drift, and apply sets it back.
    let salt = "ABCD";
    let hash = aspects_e2e::clickhouse::sha256_hex(&format!("by-hand{salt}"));
    sql(&[&format!("ALTER USER {app} IDENTIFIED WITH sha256_hash BY '{hash}' SALT '{salt}'")]);
    let r = s.run(&["drift"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("~ password = (sensitive, changed)"), "{r:?}");
    apply(&s, &[]);
    assert!(can_login(&app, "first-Pw-1") && !can_login(&app, "by-hand"));
    // Rotated in the plan: the old password stops working.
    s.0.set_env("CH_PW", "second-Pw-2");
    apply(&s, &[]);
    assert!(can_login(&app, "second-Pw-2") && !can_login(&app, "first-Pw-1"));
    assert_no_changes(&s);
    // No password, and no hash of one, in any output or file.
    let mut seen = String::new();
    for args in [&["plan"][..], &["drift"], &["plan", "--json"]] {
        seen.push_str(&s.run(args).all());
    }
    seen.push_str(&aspects_e2e::read_tree(&s.dir));
    for secret in ["first-Pw-1", "second-Pw-2"] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }
    assert!(!seen.contains(&hash));
}

/// What the deployment records as its own, as sorted `kind.name` lines.
fn owned(s: &Sandbox) -> String {
    let p = &s.prefix;
    query(&format!(
        "SELECT arrayStringConcat(arraySort(groupArray(concat(kind, '.', a))), ' ') FROM (SELECT kind, \
         argMax(address, version) AS a, argMax(deleted, version) AS del, argMax(state, version) AS st, argMax(deployment, version) AS d \
         FROM {p}meta.owned GROUP BY kind, ident_key HAVING del = 0 AND d = '{p}dep' AND st != 'creating')"
    ))
    .unwrap_or_default()
    .trim()
    .to_owned()
}

/// A crash right after each write of an apply, in turn, then an apply without the hook: it
/// converges every time and ownership is exactly the plan's objects.
#[test]
fn a_crash_after_any_write_then_apply_converges() {
    let mut s = Ch(Sandbox::new("ch-crash"));
    s.write("aspects.toml", &plan_leased(&s, &format!("{LAYER}{USER}"), 2));
    s.0.set_env("CH_PW", "crash-Pw-1");
    let p = s.prefix.clone();
    let args = ["apply", "--auto-approve", "--allow-destroy", "--parallelism", "1"];
    let writes = aspects_e2e::crash_at_every_write(&s, &args, |k, _| {
        // The killed run's lease (2 s in these plans) must run out first.
        let r = s.run(&["apply", "--auto-approve", "--allow-destroy", "--lock-timeout", "30s"]);
        assert_eq!(r.code, 0, "k = {k}: the apply after the crash must converge: {r:?}");
        assert!(can_login(&format!("{p}app"), "crash-Pw-1"), "k = {k}");
        assert_no_changes(&s);
        assert_eq!(
            owned(&s),
            "clickhouse_database.xapi clickhouse_function.org clickhouse_sql.extra clickhouse_table.events \
             clickhouse_user.app",
            "k = {k}"
        );
        // The next crash point starts from nothing again.
        cleanup(&p);
    });
    assert!(writes >= 8, "the plan has only {writes} writes");
}

const RBAC: &str = r#"
[secrets]
app_pw = { generate = 24 }

[clickhouse_user.app]
name = "@@app"
password = "${secrets.app_pw}"

[clickhouse_role.reader]
name = "@@reader"

[clickhouse_role.writer]
name = "@@writer"

[clickhouse_grant.reader]
role = "${clickhouse_role.reader.name}"
on = "@@db.*"
privileges = ["SELECT", "dictGet"]

[clickhouse_grant.writer]
role = "${clickhouse_role.writer.name}"
on = "@@db.events"
privileges = ["INSERT", "UPDATE", "delete"]
grant_option = true

[clickhouse_grant.writer_roles]
role = "${clickhouse_role.writer.name}"
roles = ["${clickhouse_role.reader.name}"]

[clickhouse_grant.app_roles]
user = "${clickhouse_user.app.name}"
roles = ["${clickhouse_role.writer.name}"]
admin_option = true

[clickhouse_grant.app]
user = "${clickhouse_user.app.name}"
on = "@@db.*"
privileges = ["SELECT", "ALTER", "DROP TABLE"]

[clickhouse_grant.app_logs]
user = "${clickhouse_user.app.name}"
on = "system.query_log"
privileges = ["SELECT"]
"#;

/// A grantee's `system.grants` rows, one `access database.table [partial] [option]` per line.
fn grants_of(column: &str, name: &str) -> String {
    query(&format!(
        "SELECT arrayStringConcat(arraySort(groupArray(concat(access_type, ' ', ifNull(database, '*'), '.', \
         ifNull(table, '*'), if(is_partial_revoke, ' partial', ''), if(grant_option, ' option', '')))), '\\n') \
         FROM system.grants WHERE {column} = '{name}'"
    ))
    .unwrap()
    .trim()
    .replace("\\n", "\n")
}

fn roles_of(column: &str, name: &str) -> String {
    query(&format!(
        "SELECT arrayStringConcat(arraySort(groupArray(concat(granted_role_name, if(with_admin_option, ' admin', '')))), \
         ' ') FROM system.role_grants WHERE {column} = '{name}'"
    ))
    .unwrap()
    .trim()
    .to_owned()
}

#[test]
fn roles_and_grants_apply_then_plan_empty_as_server_rows() {
    let s = layer("ch-rbac", RBAC);
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 0, "{r:?}");
    insta::assert_snapshot!("rbac_first_plan", s.scrub(&r.stdout));
    apply(&s, &[]);
    assert_no_changes(&s);
    assert_eq!(s.run(&["drift"]).code, 0);
    let p = &s.prefix;
    // The server's own spelling: UPDATE is ALTER UPDATE, ALTER on a database is its three parts.
    insta::assert_snapshot!(
        "rbac_rows",
        format!(
            "app:\n{}\nreader:\n{}\nwriter:\n{}\nroles: app {} / writer {}",
            grants_of("user_name", &format!("{p}app")),
            grants_of("role_name", &format!("{p}reader")),
            grants_of("role_name", &format!("{p}writer")),
            roles_of("user_name", &format!("{p}app")),
            roles_of("role_name", &format!("{p}writer")),
        )
        .replace(p.as_str(), "@@")
    );
    assert_eq!(owned(&s).split(' ').filter(|a| a.starts_with("clickhouse_grant.")).count(), 6);
}

#[test]
fn grant_drift_is_found_by_drift_and_fixed_by_apply() {
    let s = layer("ch-rbac-drift", RBAC);
    apply(&s, &[]);
    let p = &s.prefix;
    let before = (grants_of("user_name", &format!("{p}app")), grants_of("role_name", &format!("{p}reader")));
    sql(&[
        &format!("CREATE ROLE {p}byhand"),
        // A dropped grant, an extra privilege on a planned object and one elsewhere, a partial
        // revoke under a planned grant, a role granted by hand and an admin option taken away.
        &format!("REVOKE dictGet ON {p}db.* FROM {p}reader"),
        &format!("GRANT INSERT ON {p}db.* TO {p}app"),
        &format!("GRANT SELECT ON {p}other.* TO {p}app"),
        &format!("REVOKE SELECT ON {p}db.secret FROM {p}app"),
        &format!("GRANT {p}byhand TO {p}app"),
        &format!("REVOKE ADMIN OPTION FOR {p}writer FROM {p}app"),
    ]);
    let r = s.run(&["drift"]);
    assert_eq!(r.code, 2, "{r:?}");
    insta::assert_snapshot!("rbac_drift", s.scrub(&r.stdout));
    apply(&s, &[]);
    assert_no_changes(&s);
    assert_eq!((grants_of("user_name", &format!("{p}app")), grants_of("role_name", &format!("{p}reader"))), before);
    assert_eq!(roles_of("user_name", &format!("{p}app")), format!("{p}writer admin"));
    // A privilege granted by hand on a wider object is revoked without taking the planned ones.
    sql(&[&format!("GRANT SELECT ON *.* TO {p}app")]);
    assert_eq!(s.run(&["drift"]).code, 2);
    apply(&s, &[]);
    assert_no_changes(&s);
    assert_eq!(grants_of("user_name", &format!("{p}app")), before.0);
}

#[test]
fn a_crash_after_any_rbac_write_then_apply_converges() {
    let s = Ch(Sandbox::new("ch-rbac-crash"));
    s.write("aspects.toml", &plan_leased(&s, RBAC, 2));
    let p = s.prefix.clone();
    let writes = aspects_e2e::crash_at_every_write(&s, &["apply", "--auto-approve", "--parallelism", "1"], |k, _| {
        let r = s.run(&["apply", "--auto-approve", "--lock-timeout", "30s"]);
        assert_eq!(r.code, 0, "k = {k}: the apply after the crash must converge: {r:?}");
        assert_no_changes(&s);
        assert_eq!(
            owned(&s),
            "clickhouse_grant.app clickhouse_grant.app_logs clickhouse_grant.app_roles clickhouse_grant.reader \
             clickhouse_grant.writer clickhouse_grant.writer_roles clickhouse_role.reader clickhouse_role.writer \
             clickhouse_user.app",
            "k = {k}"
        );
        // The next crash point starts from nothing again.
        cleanup(&p);
    });
    assert!(writes >= 10, "the plan has only {writes} writes");
}

#[test]
fn hostile_rbac_names_and_privileges_are_refused_before_any_write() {
    let s = layer("ch-rbac-hostile", "");
    let cases = [
        ("[clickhouse_role.r]\nname = \"@@r\\u202eadmin\"\n", "control or invisible character"),
        (
            "[clickhouse_grant.g]\nuser = \"@@u\"\non = \"db.*\"\nprivileges = [\"SELECT ON *.* TO evil --\"]\n",
            "is not a privilege name",
        ),
        ("[clickhouse_grant.g]\nuser = \"@@u\"\non = \"db.t.x; --\"\nprivileges = [\"SELECT\"]\n", "parts"),
        ("[clickhouse_grant.g]\nuser = \"@@u\"\non = \"*.secret\"\nprivileges = [\"SELECT\"]\n", "every database"),
        ("[clickhouse_grant.g]\nuser = \"@@u\"\nrole = \"@@r\"\nroles = [\"x\"]\n", "names both a user and a role"),
        ("[clickhouse_grant.g]\nuser = \"@@u\"\nroles = [\"a\\u0000b\"]\n", "control or invisible character"),
    ];
    for (body, why) in cases {
        s.write("aspects.toml", &plan(&s, body));
        let r = s.run(&["validate"]);
        assert_eq!(r.code, 1, "{body}: {r:?}");
        assert!(r.stderr.contains("aspects.toml:") && r.stderr.contains(why), "{body}: {r:?}");
    }
    // A name only the server knows is wrong: refused at plan time, by its parser.
    let body = "[secrets]\npw = { generate = 24 }\n\n[clickhouse_user.u]\nname = \"@@u\"\npassword = \"${secrets.pw}\"\n\n[clickhouse_grant.g]\nuser = \"@@u\"\n\
                on = \"db.*\"\nprivileges = [\"SELECT\", \"BOGUS PRIVILEGE\"]\n";
    s.write("aspects.toml", &plan(&s, body));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("clickhouse_grant.g") && r.stderr.contains("nothing was written"), "{r:?}");
    let p = &s.prefix;
    assert_eq!(one(&format!("SELECT count() FROM system.users WHERE name LIKE '{p}%'")).as_deref(), Some("0"));
}

#[test]
fn rotating_a_service_password_keeps_the_old_one_until_every_client_moved() {
    let s = layer("ch-rotate", RBAC);
    apply(&s, &[]);
    let secret = |s: &Sandbox| {
        let store = aspects_config::SecretStore::open(&s.secrets_path()).unwrap();
        store.get("app_pw").unwrap().expose().to_owned()
    };
    let app = format!("{}app", s.prefix);
    let old = secret(&s);
    assert!(can_login(&app, &old));
    let r = s.run(&["rotate", "app_pw", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("keeps accepting the old value until every client moved"), "{r:?}");
    assert!(r.stdout.contains("both accepted") && r.stdout.contains("no downtime"), "{r:?}");
    let new = secret(&s);
    assert_ne!(old, new);
    assert!(can_login(&app, &new), "the new password is accepted");
    let refused = aspects_e2e::clickhouse::login_code(&app, &old);
    assert_eq!(refused, Some(516), "the old password is refused afterwards");
    let (plan, drift) = (s.run(&["plan", "--detailed-exitcode"]), s.run(&["drift"]));
    assert_eq!((plan.code, drift.code), (0, 0), "{plan:?} {drift:?}");
    let mut seen = format!("{}{}{}", r.all(), plan.all(), drift.all());
    seen.push_str(&aspects_e2e::read_tree(&s.dir).replace(&s.secrets_file(), ""));
    for v in [&old, &new] {
        assert!(!seen.contains(v.as_str()), "a password leaked");
    }
}

#[test]
fn users_sql_cannot_change_are_refused_at_plan_naming_what_to_do() {
    // The real column values: `default` comes from users.xml, a user made by SQL does not.
    let s = layer("ch-xml-user", "");
    let p = &s.prefix;
    sql(&[&format!("CREATE USER {p}byhand")]);
    assert_eq!(one("SELECT storage FROM system.users WHERE name = 'default'").as_deref(), Some("users_xml"));
    let made = one(&format!("SELECT storage FROM system.users WHERE name = '{p}byhand'")).unwrap();
    assert!(made == "local_directory" || made == "replicated", "{made}");
    let user = |name: &str| {
        format!(
            "[secrets]\npw = {{ generate = 24 }}\n\n[clickhouse_user.u]\nname = \"{name}\"\npassword = \"${{secrets.pw}}\"\n"
        )
    };
    // A user made by SQL is planned (its password differs: an update).
    s.write("aspects.toml", &plan(&s, &user("@@byhand")));
    assert_eq!(s.run(&["plan", "--detailed-exitcode"]).code, 2);
    // One from users.xml is refused at the resource, before any write, saying what to do.
    s.write("aspects.toml", &plan(&s, &user("default")));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    // From the resource on: the server's URL before it differs between stacks.
    let at = r.stderr.find("clickhouse_user.u (").expect("the refusal names the resource");
    insta::assert_snapshot!("users_xml_user_refused", s.scrub(&r.stderr[at..]));
    let grant = "[clickhouse_grant.g]\nuser = \"default\"\non = \"system.*\"\nprivileges = [\"SELECT\"]\n";
    s.write("aspects.toml", &plan(&s, grant));
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("clickhouse_grant.g (") && r.stderr.contains("user `default` is defined by"), "{r:?}");
}

#[test]
fn a_held_lock_keeps_its_lease_while_the_run_is_idle_and_frees_at_release() {
    let s = layer("ch-heartbeat", "");
    let attrs = BTreeMap::from([
        ("url".to_owned(), Value::from(url().as_str())),
        ("meta_database".to_owned(), Value::from(format!("{}meta", s.prefix).as_str())),
        ("lock_lease_seconds".to_owned(), Value::Int(2)),
    ]);
    let config = ProviderConfig { id: "clickhouse".into(), system: "clickhouse".into(), attrs, origin: "test".into() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let connector = aspects_clickhouse::ClickHouse;
        let first = connector.connect_write(&config, "a").await.unwrap();
        let second = connector.connect_write(&config, "b").await.unwrap();
        let held = first.lock("first", Duration::ZERO, &|_| {}).await.unwrap();
        // Nothing of the holder runs but its heartbeat, as while an operator reads the plan: a
        // contender that waits two and a half leases is refused, and the holder may go on.
        let refused = second.lock("second", Duration::from_secs(5), &|_| {}).await.err().expect("still held");
        assert!(refused.to_string().contains("is locked by first"), "{refused}");
        held.check().await.unwrap();
        // Released: the next run takes it at once.
        held.release().await;
        second.lock("second", Duration::ZERO, &|_| {}).await.unwrap().release().await;
    });
}

#[test]
fn a_run_stalled_past_its_lease_stops_before_its_next_write() {
    // The pause hook blocks the whole run, its heartbeat too: a suspended or starved process.
    let s = Ch(Sandbox::new("ch-stalled"));
    s.write("aspects.toml", &plan_leased(&s, LAYER, 2));
    let (first, go) = s.paused(&["apply", "--auto-approve", "--parallelism", "1"], 3);
    // The next run takes over once the lease ran out, and converges.
    let second = s.run(&["apply", "--auto-approve", "--lock-timeout", "60s"]);
    assert_eq!(second.code, 0, "{second:?}");
    std::fs::write(&go, "").unwrap();
    let first: aspects_e2e::Run = first.wait_with_output().unwrap().into();
    assert_eq!(first.code, 1, "{first:?}");
    assert!(first.stderr.contains("was taken over"), "{first:?}");
    assert_no_changes(&s);
}

/// A user's `system.grants` rows with their columns, `access(column)`, sorted, one per line.
fn column_grants_of(user: &str) -> String {
    query(&format!(
        "SELECT arrayStringConcat(arraySort(groupArray(concat(access_type, if(column IS NULL, '', \
         concat('(', column, ')')), if(grant_option, ' option', '')))), '\\n') FROM system.grants WHERE user_name = '{user}'"
    ))
    .unwrap()
    .trim()
    .replace("\\n", "\n")
}

#[test]
fn column_grants_apply_then_plan_empty_and_drift_on_a_column_is_restored() {
    let body = r#"
[secrets]
pw = { generate = 24 }

[clickhouse_user.app]
name = "@@app"
password = "${secrets.pw}"

[clickhouse_grant.table]
user = "${clickhouse_user.app.name}"
on = "@@db.events"
privileges = ["INSERT"]

[clickhouse_grant.columns]
user = "${clickhouse_user.app.name}"
on = "@@db.events"
columns = ["b", "a"]
privileges = ["SELECT", "UPDATE"]
grant_option = true
"#;
    let s = layer("ch-columns", body);
    apply(&s, &[]);
    assert_no_changes(&s);
    let app = format!("{}app", s.prefix);
    let before = column_grants_of(&app);
    assert_eq!(
        before, "ALTER UPDATE(a) option\nALTER UPDATE(b) option\nINSERT\nSELECT(a) option\nSELECT(b) option",
        "one row per column, as the server keeps them"
    );
    // A column's privilege revoked by hand, another column granted by hand: drift, and restored.
    let p = &s.prefix;
    sql(&[
        &format!("REVOKE SELECT(b) ON {p}db.events FROM {app}"),
        &format!("GRANT SELECT(c) ON {p}db.events TO {app}"),
    ]);
    let r = s.run(&["drift"]);
    assert_eq!(r.code, 2, "{r:?}");
    insta::assert_snapshot!("column_grant_drift", s.scrub(&r.stdout));
    apply(&s, &[]);
    assert_no_changes(&s);
    assert_eq!(column_grants_of(&app), before);
    // Columns only of one table, and only privileges a column can carry.
    s.write("aspects.toml", &plan(&s, &body.replace("@@db.events\"\ncolumns", "@@db.*\"\ncolumns")));
    let r = s.run(&["validate"]);
    assert!(r.code == 1 && r.stderr.contains("sets `columns` on a grant that is not on one table"), "{r:?}");
    s.write("aspects.toml", &plan(&s, &body.replace("[\"SELECT\", \"UPDATE\"]", "[\"SELECT\", \"DROP TABLE\"]")));
    let r = s.run(&["plan"]);
    assert!(r.code == 1 && r.stderr.contains("DROP TABLE cannot be granted on columns"), "{r:?}");
}

#[test]
fn a_grant_removed_from_the_plan_is_revoked_and_the_others_stay() {
    let s = layer("ch-rbac-leave", RBAC);
    apply(&s, &[]);
    let p = &s.prefix;
    // Revoked from what the plan read (one read of the access tables for every revoke).
    let start = RBAC.find("[clickhouse_grant.app]\n").unwrap();
    let end = start + RBAC[start..].find("\n\n").unwrap() + 2;
    s.write("aspects.toml", &plan(&s, &format!("{}{}", &RBAC[..start], &RBAC[end..])));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("clickhouse_grant.app: Destruction complete"), "{r:?}");
    assert_no_changes(&s);
    assert_eq!(grants_of("user_name", &format!("{p}app")), "SELECT system.query_log");
    assert_eq!(roles_of("user_name", &format!("{p}app")), format!("{p}writer admin"));
}

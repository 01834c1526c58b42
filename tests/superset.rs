//! The Superset provider end to end: the `aspects` binary against the stack's real Superset 6.1.0
//! (and its ClickHouse, which Superset connects to when a database is created or changed).
//! Every test skips outside CI when the stack has no Superset.

use aspects_config::SecretStore;
use aspects_e2e::superset::{ADMIN_PASSWORD_ENV, Api, Ss, apply, assert_no_changes, cleanup, plan, run, stack, uuid};
use aspects_e2e::{Sandbox, assert_no_secret};
use reqwest::Method;
use serde_json::json;

const SECRETS: &str = "lms = { generate = 24 }\nreport = { generate = 24 }\n";

/// The role and the user every layer here declares.
macro_rules! role_and_user {
    () => {
        r#"
[superset_role.instructor]
name = "@@Instructor"
permissions = ["can_read on Dashboard", "can_read on Chart"]

[superset_user.lms]
username = "@@lms"
first_name = "LMS"
last_name = "User"
email = "@@lms@example.com"
roles = ["${superset_role.instructor.name}", "Gamma"]
password = "${secrets.lms}"
"#
    };
}

const LAYER: &str = concat!(
    role_and_user!(),
    r#"
[clickhouse_database.xapi]
name = "@@xapi"

[clickhouse_user.report]
name = "@@report"
password = "${secrets.report}"

[superset_database.clickhouse]
uuid = "@@UUID"
database_name = "@@OpenedX Clickhouse"
sqlalchemy_uri = "clickhousedb+connect://${clickhouse_user.report.name}:${secrets.report}@@@CH/${clickhouse_database.xapi.name}"
"#
);

fn layer(name: &str, body: &str) -> Option<Ss> {
    let (_, _, admin) = stack()?;
    let mut s = Sandbox::new(name);
    s.set_env(ADMIN_PASSWORD_ENV, &admin);
    let ch = aspects_e2e::clickhouse::url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    // `@@@CH`: the `@` of the URI, then the server.
    let body = body.replace("@@@CH", &format!("@{ch}")).replace("@@UUID", &uuid(&s));
    s.write("aspects.toml", &plan(&s, SECRETS, &body));
    Some(Ss(s))
}

fn secret(s: &Sandbox, name: &str) -> String {
    SecretStore::open(&s.secrets_path()).unwrap().get(name).unwrap().expose().to_owned()
}

fn role_permissions(api: &Api, role: &str) -> Vec<String> {
    let id = api.id("/api/v1/security/roles/", "name", role);
    let body = api.get(&format!("/api/v1/security/roles/{id}/permissions/"));
    let mut out: Vec<String> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} on {}", p["permission_name"].as_str().unwrap(), p["view_menu_name"].as_str().unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn every_kind_applies_then_plans_empty_and_destroy_removes_them() {
    let Some(s) = layer("ss-kinds", LAYER) else { return };
    let first = s.run(&["plan"]);
    assert_eq!(first.code, 0, "{first:?}");
    let shown =
        s.scrub(&first.stdout).replace(&uuid(&s), "[UUID]").replace(&aspects_e2e::clickhouse::url()[7..], "[CH]");
    insta::assert_snapshot!("first_plan", shown);
    let applied = apply(&s);
    let again = assert_no_changes(&s);
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 0, "{drift:?}");

    let api = Api::new();
    let p = &s.prefix;
    assert_eq!(role_permissions(&api, &format!("{p}Instructor")), ["can_read on Chart", "can_read on Dashboard"]);
    let (lms, report) = (secret(&s, "lms"), secret(&s, "report"));
    assert!(api.can_login(&format!("{p}lms"), &lms));
    let databases = api.list("/api/v1/database/", "database_name", p);
    assert_eq!(databases.len(), 1, "{databases:?}");
    assert_eq!(databases[0]["uuid"], uuid(&s));
    // Ownership is recorded in Superset, in this deployment's CSS template.
    let records = api.list("/api/v1/css_template/", "template_name", &format!("aspects records: {p}dep"));
    assert_eq!(records.len(), 1, "{records:?}");
    for id in [format!("{p}Instructor"), format!("{p}lms"), uuid(&s)] {
        assert!(records[0]["css"].as_str().unwrap().contains(&format!("\"id\":\"{id}\"")), "{records:?}");
    }

    let destroy = run(&s, &["destroy", "--auto-approve", "--allow-destroy"]);
    assert_eq!(destroy.code, 0, "{destroy:?}");
    assert!(api.list("/api/v1/security/roles/", "name", p).is_empty());
    assert!(api.list("/api/v1/security/users/", "username", p).is_empty());
    assert!(api.list("/api/v1/database/", "database_name", p).is_empty());
    let admin = stack().unwrap().2;
    assert_no_secret(&s, &[&lms, &report, &admin], &[&first, &applied, &again, &drift, &destroy]);
}

#[test]
fn a_permission_added_by_hand_is_drift_and_apply_removes_it() {
    let Some(s) = layer("ss-role-drift", LAYER) else { return };
    apply(&s);
    let api = Api::new();
    let role = format!("{}Instructor", s.prefix);
    let id = api.id("/api/v1/security/roles/", "name", &role);
    let current: Vec<i64> = api.get(&format!("/api/v1/security/roles/{id}/permissions/"))["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    // `can_read on SavedQuery`, by hand, as `fab import-roles` or an admin would add it.
    let extra = api.get("/api/v1/security/permissions-resources/?q=(page:0,page_size:100)")["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["permission"]["name"] == "can_read" && p["view_menu"]["name"] == "SavedQuery")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let ids: Vec<i64> = current.iter().copied().chain([extra]).collect();
    let (status, body) = api.call(
        Method::POST,
        &format!("/api/v1/security/roles/{id}/permissions"),
        Some(json!({"permission_view_menu_ids": ids})),
    );
    assert!(status.is_success(), "{body}");

    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    assert!(drift.stdout.contains("superset_role.instructor"), "{drift:?}");
    assert!(drift.stdout.contains("\"can_read on SavedQuery\""), "{drift:?}");
    apply(&s);
    assert_eq!(role_permissions(&api, &role), ["can_read on Chart", "can_read on Dashboard"]);
    assert_no_changes(&s);
}

#[test]
fn a_user_changed_by_hand_is_reverted_and_its_password_reset() {
    let Some(s) = layer("ss-user-drift", LAYER) else { return };
    apply(&s);
    let api = Api::new();
    let user = format!("{}lms", s.prefix);
    let id = api.id("/api/v1/security/users/", "username", &user);
    let body = json!({"first_name": "Renamed", "password": "set-by-hand-1"});
    let (status, answer) = api.call(Method::PUT, &format!("/api/v1/security/users/{id}"), Some(body));
    assert!(status.is_success(), "{answer}");

    let plan = s.run(&["plan"]);
    assert!(plan.stdout.contains("~ first_name = \"Renamed\" -> \"LMS\""), "{plan:?}");
    assert!(plan.stdout.contains("password   = (sensitive, changed)"), "{plan:?}");
    apply(&s);
    let user_now = api.get(&format!("/api/v1/security/users/{id}"));
    assert_eq!(user_now["result"]["first_name"], "LMS");
    assert!(api.can_login(&user, &secret(&s, "lms")), "the password is the plan's again");
    assert!(!api.can_login(&user, "set-by-hand-1"));
    assert_no_changes(&s);
}

#[test]
fn rotating_the_lms_password_rejects_the_old_one() {
    let Some(s) = layer("ss-rotate-lms", LAYER) else { return };
    apply(&s);
    let api = Api::new();
    let user = format!("{}lms", s.prefix);
    let old = secret(&s, "lms");
    let r = run(&s, &["rotate", "lms", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    let new = secret(&s, "lms");
    assert_ne!(old, new);
    assert!(api.can_login(&user, &new), "the new password is accepted");
    assert!(!api.can_login(&user, &old), "the old password is rejected");
    let after = assert_no_changes(&s);
    assert_no_secret(&s, &[&old, &new], &[&r, &after]);
}

#[test]
fn rotating_the_report_password_updates_the_database_connection() {
    let Some(s) = layer("ss-rotate-report", LAYER) else { return };
    apply(&s);
    let api = Api::new();
    let old = secret(&s, "report");
    let id = api.id("/api/v1/database/", "database_name", &format!("{}OpenedX Clickhouse", s.prefix));
    let marker = |api: &Api| api.get(&format!("/api/v1/database/{id}/connection"))["result"]["extra"].clone();
    let before = marker(&api);

    let r = run(&s, &["rotate", "report", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    let new = secret(&s, "report");
    assert_ne!(old, new);
    let first = r.stdout.find("1. clickhouse_user.report: credential").expect(&r.stdout);
    let then = r.stdout.find("2. superset_database.clickhouse: client").expect(&r.stdout);
    assert!(first < then, "the ClickHouse user moves before the connection that presents its password: {r:?}");
    assert_ne!(marker(&api), before, "the connection was rewritten");
    assert!(aspects_e2e::clickhouse::can_login(&format!("{}report", s.prefix), &new));
    // Superset's own connection test with the stored (masked) password passes.
    let connection = api.get(&format!("/api/v1/database/{id}/connection"))["result"].clone();
    let test = json!({"database_name": connection["database_name"], "sqlalchemy_uri": connection["sqlalchemy_uri"]});
    let (status, body) = api.call(Method::POST, "/api/v1/database/test_connection/", Some(test));
    assert!(status.is_success(), "Superset connects with the new password: {status} {body}");
    let after = assert_no_changes(&s);
    assert_no_secret(&s, &[&old, &new], &[&r, &after]);
}

#[test]
fn a_uri_changed_by_hand_is_shown_masked_and_reverted() {
    let Some(s) = layer("ss-uri-drift", LAYER) else { return };
    apply(&s);
    let api = Api::new();
    let id = api.id("/api/v1/database/", "database_name", &format!("{}OpenedX Clickhouse", s.prefix));
    let connection = api.get(&format!("/api/v1/database/{id}/connection"))["result"].clone();
    let uri = connection["sqlalchemy_uri"].as_str().unwrap();
    let uri = format!("{}/default", uri.rsplit_once('/').unwrap().0);
    let (status, body) = api.call(Method::PUT, &format!("/api/v1/database/{id}"), Some(json!({"sqlalchemy_uri": uri})));
    assert!(status.is_success(), "{body}");

    let plan = s.run(&["plan"]);
    let line = plan.stdout.lines().find(|l| l.contains("sqlalchemy_uri")).expect(&plan.stdout);
    assert!(line.contains(":(sensitive)@") && line.contains("/default\" -> \"") && line.ends_with("_xapi\""), "{line}");
    apply(&s);
    assert_no_changes(&s);
    assert_no_secret(&s, &[&secret(&s, "report")], &[&plan]);
}

/// The Superset objects alone, the connection to a ClickHouse user made beforehand: a killed
/// run leaves only Superset's lock behind (a short lease).
const SUPERSET_ONLY: &str = concat!(
    role_and_user!(),
    r#"
[superset_database.clickhouse]
uuid = "@@UUID"
database_name = "@@OpenedX Clickhouse"
sqlalchemy_uri = "clickhousedb+connect://@@report:${secrets.report}@@@CH/default"
"#
);

/// A crash right after each write of an apply, in turn, then an apply without the hook: it
/// converges every time and the records name exactly the plan's objects.
#[test]
fn a_crash_after_any_write_then_apply_converges() {
    let Some(mut s) = layer("ss-crash", SUPERSET_ONLY) else { return };
    s.0.set_env("REPORT_PW", "crash-Report-1");
    let secrets = "lms = { generate = 24 }\nreport = { env = \"REPORT_PW\" }\n";
    let body = std::fs::read_to_string(s.path("aspects.toml")).unwrap();
    let body = &body[body.find("[superset_role").unwrap()..];
    s.write("aspects.toml", &plan(&s, secrets, body));
    // The ClickHouse user the connection logs in as, from a plan of its own.
    let ch = "[secrets]\nreport = { env = \"REPORT_PW\" }\n\n[clickhouse_user.report]\nname = \"@@report\"\npassword = \"${secrets.report}\"\n";
    s.write("clickhouse.toml", &aspects_e2e::clickhouse::plan(&s, ch));
    let r = s.run(&["-f", "clickhouse.toml", "apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");

    let api = Api::new();
    let p = s.prefix.clone();
    let args = ["apply", "--auto-approve", "--parallelism", "1", "--lock-timeout", "120s"];
    let writes = aspects_e2e::crash_at_every_write(&s, &args, |k, _| {
        // The killed run's lease runs out while the next run waits.
        apply(&s);
        assert_no_changes(&s);
        assert!(api.can_login(&format!("{p}lms"), &secret(&s, "lms")), "k = {k}");
        let records = api.list("/api/v1/css_template/", "template_name", &format!("aspects records: {p}dep"));
        let css = records[0]["css"].as_str().unwrap();
        let owned = css.matches("\"state\":\"created\"").count() + css.matches("\"state\":\"adopted\"").count();
        assert_eq!(owned, 3, "k = {k}: {css}");
        // The next crash point starts from nothing again.
        cleanup(&p);
    });
    assert!(writes > 7, "the plan has only {writes} writes");
}

#[test]
fn hostile_input_is_refused_with_its_place() {
    let Some(mut s) = layer("ss-hostile", "") else { return };
    let password = "hostile-Pw-77";
    s.0.set_env("HOSTILE_PW", password);
    let write = |body: &str| s.write("aspects.toml", &plan(&s, "lms = { env = \"HOSTILE_PW\" }\n", body));

    write("[superset_role.r]\nname = \"@@r\"\npermissions = [\"can_read\"]\n");
    let r = s.run(&["validate"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("aspects.toml:") && r.stderr.contains("is not `PERMISSION on VIEW`"), "{r:?}");

    write("[superset_role.r]\nname = \"@@r\"\npermissions = [\"can_read on No Such View\"]\n");
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("has no permission \"can_read on No Such View\""), "{r:?}");
    assert!(r.stderr.contains("aspects.toml:"), "placed in the plan file: {r:?}");

    write(
        "[superset_database.d]\nuuid = \"not-a-uuid\"\ndatabase_name = \"@@d\"\nsqlalchemy_uri = \"x://${secrets.lms}@h/d\"\n",
    );
    let r = s.run(&["validate"]);
    assert!(r.stderr.contains("is not a UUID"), "{r:?}");

    write(
        "[superset_database.d]\nuuid = \"21174b6c-4d40-4958-8161-d6c3cf5e77b6\"\ndatabase_name = \"@@d\"\nsqlalchemy_uri = \"no uri ${secrets.lms}\"\n",
    );
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("aspects.toml:") && r.stderr.contains("SQLAlchemy URI"), "{r:?}");
    assert!(!r.all().contains(password), "{r:?}");

    write(
        "[superset_user.u]\nusername = \"@@u\\u202e\"\nfirst_name = \"a\"\nlast_name = \"b\"\nemail = \"a@b\"\nroles = []\npassword = \"${secrets.lms}\"\n",
    );
    let r = s.run(&["validate"]);
    assert!(r.stderr.contains("invisible character") && r.stderr.contains("at least one role"), "{r:?}");
}

/// A plan handle logs in while the plan renders, so a refused login surfaces in a read: it is
/// still placed at the provider block, with the hint, like apply's at connect time.
#[test]
fn a_refused_provider_login_names_the_provider_block_at_plan_and_apply() {
    let Some(mut s) = layer("ss-login", "[superset_role.r]\nname = \"@@r\"\n") else { return };
    let wrong = "wrong-Admin-Pw-91";
    s.0.set_env(ADMIN_PASSWORD_ENV, wrong);
    for args in [&["plan"][..], &["drift"], &["apply", "--auto-approve"]] {
        let r = s.run(args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        for expected in
            ["[providers.superset] at ", "aspects.toml:", "refused the login of the provider user", "check `username`"]
        {
            assert!(r.stderr.contains(expected), "{args:?}: expected {expected:?} in {}", r.stderr);
        }
        assert!(!r.all().contains(wrong), "{args:?}: {r:?}");
    }
}

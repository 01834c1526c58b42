//! The MySQL provider end to end: the `aspects` binary against the real MariaDB.
use aspects_e2e::{Sandbox, can_login, many, query_one, sql};

const APP: &str = r#"
[secrets]
app_pw = { env = "APP_PW" }

[mysql_database.app]
name = "@@app"
charset = "utf8mb4"

[mysql_user.app]
user = "@@app"
password = "${secrets.app_pw}"

[mysql_grant.app]
user = "${mysql_user.app.user}"
on = "${mysql_database.app.name}.*"
privileges = ["SELECT", "INSERT"]
"#;

fn app(name: &str) -> Sandbox {
    let mut s = Sandbox::new(name);
    s.write("aspects.toml", &s.plan(APP));
    s.set_env("APP_PW", "first-Pw-1");
    s
}

fn apply(s: &Sandbox) {
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
}

fn assert_no_changes(s: &Sandbox) {
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "plan after apply must be empty: {r:?}");
    assert!(r.stdout.starts_with("No changes."), "{r:?}");
}

#[test]
fn from_empty_apply_then_plan_is_empty_for_every_kind() {
    let s = app("lifecycle");
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "{r:?}");
    insta::assert_snapshot!("first_plan", s.scrub(&r.stdout));

    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Apply complete! 3 done, 0 failed, 0 skipped."), "{r:?}");
    assert!(r.stderr.contains("mysql_grant.app: Creation complete"), "{r:?}");

    assert_no_changes(&s);
    assert_eq!(s.run(&["drift"]).code, 0);
    assert!(can_login(&format!("{}app", s.prefix), "first-Pw-1"));
    let charset = query_one(&format!(
        "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{}app'",
        s.prefix
    ));
    assert_eq!(charset.as_deref(), Some("utf8mb4"));
}

#[test]
fn drift_is_reported_with_exit_2_and_fixed_by_apply() {
    let s = app("drift");
    apply(&s);
    let p = &s.prefix;
    sql(&[
        &format!("ALTER USER '{p}app'@'%' IDENTIFIED BY 'changed-by-hand'"),
        &format!("GRANT DELETE ON `{p}app`.* TO '{p}app'@'%'"),
        &format!("GRANT SELECT ON `{p}elsewhere`.* TO '{p}app'@'%'"),
        // Another pattern for the same database (`\_` is a literal underscore): another object.
        &format!("GRANT UPDATE ON `{}app`.* TO '{p}app'@'%'", p.replace('_', "\\_")),
        &format!("ALTER DATABASE `{p}app` CHARACTER SET latin1"),
    ]);
    let r = s.run(&["drift"]);
    assert_eq!(r.code, 2, "{r:?}");
    insta::assert_snapshot!("drift", s.scrub(&r.stdout));

    apply(&s);
    assert_eq!(s.run(&["drift"]).code, 0);
    assert!(can_login(&format!("{p}app"), "first-Pw-1"));
    assert!(!can_login(&format!("{p}app"), "changed-by-hand"));
    let extra = query_one(&format!(
        "SELECT GROUP_CONCAT(PRIVILEGE_TYPE ORDER BY PRIVILEGE_TYPE) FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = '''{p}app''@''%'''"
    ));
    assert_eq!(
        extra.as_deref(),
        Some("INSERT,SELECT"),
        "the extra DELETE and the grant on another database are revoked"
    );
}

#[test]
fn roles_column_routine_and_proxy_privileges_are_drift_and_revoked() {
    let s = app("extras");
    apply(&s);
    let p = &s.prefix;
    let me = query_one("SELECT CURRENT_USER()").unwrap();
    let (admin, admin_host) = me.rsplit_once('@').unwrap();
    sql(&[
        &format!("CREATE TABLE `{p}app`.t (a INT)"),
        &format!("CREATE PROCEDURE `{p}app`.p() SELECT 1"),
        &format!("CREATE ROLE '{p}role'"),
        &format!("GRANT ALL ON *.* TO '{p}role'"),
        &format!("CREATE USER '{p}other'@'%'"),
        // The admin may grant and revoke PROXY (root@localhost has this row from the installer).
        &format!(
            "INSERT IGNORE INTO mysql.proxies_priv (Host, User, Proxied_host, Proxied_user, With_grant, Grantor) \
             VALUES ('{admin_host}', '{admin}', '', '', 1, '')"
        ),
        "FLUSH PRIVILEGES",
    ]);
    let drifts = [
        (
            vec![format!("GRANT '{p}role' TO '{p}app'@'%'"), format!("SET DEFAULT ROLE '{p}role' FOR '{p}app'@'%'")],
            "- mysql_grant[\"'@@app'@'%' default role `@@role`\"]",
        ),
        (vec![format!("GRANT SELECT(a) ON `{p}app`.t TO '{p}app'@'%'")], "\"SELECT(`a`)\""),
        (vec![format!("GRANT EXECUTE ON PROCEDURE `{p}app`.p TO '{p}app'@'%'")], "procedure `@@app`.`p`"),
        (vec![format!("GRANT PROXY ON '{p}other'@'%' TO '{p}app'@'%'")], "proxy '@@other'@'%'"),
    ];
    for (statements, shown) in drifts {
        sql(&statements.iter().map(String::as_str).collect::<Vec<_>>());
        let r = s.run(&["drift"]);
        assert_eq!(r.code, 2, "{statements:?}: {r:?}");
        let out = s.scrub(&r.stdout);
        assert!(out.contains(shown) && out.contains("privileges beyond the plan"), "{shown}: {out}");
        apply(&s);
        assert_no_changes(&s);
    }
    let left = query_one(&format!(
        "SELECT CONCAT((SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = '{p}app'), \
         (SELECT COUNT(*) FROM mysql.user WHERE User = '{p}app' AND default_role <> ''), \
         (SELECT COUNT(*) FROM mysql.columns_priv WHERE User = '{p}app'), \
         (SELECT COUNT(*) FROM mysql.procs_priv WHERE User = '{p}app'), \
         (SELECT COUNT(*) FROM mysql.proxies_priv WHERE User = '{p}app'))"
    ));
    assert_eq!(left.as_deref(), Some("00000"), "roles, default role, column, routine, proxy rows left");
}

#[test]
fn what_the_server_would_refuse_is_refused_by_plan_with_locations_before_any_write() {
    let s = Sandbox::new("refused");
    let me = query_one("SELECT CURRENT_USER()").unwrap();
    let (admin, admin_host) = me.rsplit_once('@').unwrap();
    let body = format!(
        r#"
[secrets]
pw = {{ generate = 24 }}

[mysql_database.charset]
name = "@@a"
charset = "utf9"

[mysql_database.mismatch]
name = "@@b"
charset = "utf8mb4"
collation = "latin1_swedish_ci"

[mysql_database.unknown]
name = "@@c"
collation = "utf8mb4_klingon_ci"

[mysql_grant.file]
user = "@@app"
on = "@@a.*"
privileges = ["SELECT", "FILE"]

[mysql_grant.dynamic]
user = "@@app"
on = "*.*"
privileges = ["BACKUP_ADMIN"]

[mysql_user.sha2]
user = "@@sha2"
password = "${{secrets.pw}}"
plugin = "caching_sha2_password"

[mysql_user.admin]
user = "{admin}"
host = "{admin_host}"
password = "${{secrets.pw}}"
"#
    );
    s.write("aspects.toml", &s.plan(&body));
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    // From the error on: the warnings before it (wildcards in the sandbox's `_` names) vary in width.
    let from_error = |out: &str| {
        let out = s.scrub(out).replace(&me.replace('@', "'@'"), "ADMIN");
        out[out.find("error:").unwrap()..].to_owned()
    };
    let refused = from_error(&r.stderr);
    insta::assert_snapshot!("refused_at_plan", refused);
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(from_error(&r.stderr), refused);
    assert_eq!(
        query_one(&format!(
            "SELECT CAST(COUNT(*) AS CHAR) FROM aspects_meta.owned WHERE deployment = '{}dep'",
            s.prefix
        ))
        .as_deref(),
        Some("0")
    );
    assert!(
        query_one(&format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{}%'",
            s.prefix
        ))
        .is_none()
    );
}

#[test]
fn an_emoji_database_name_is_refused_up_front_and_later_plans_keep_working() {
    let s = app("emoji");
    apply(&s);
    let good = std::fs::read_to_string(s.path("aspects.toml")).unwrap();
    s.write(
        "aspects.toml",
        &format!("{good}\n[mysql_database.party]\nname = \"@@party_🎉\"\n").replace("@@", &s.prefix),
    );
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("aspects.toml:") && r.stderr.contains("cannot store in a name"), "{r:?}");
    s.write("aspects.toml", &good);
    assert_no_changes(&s);
    assert_eq!(s.run(&["drift"]).code, 0);
}

#[test]
fn changing_a_password_secret_rotates_it() {
    let mut s = app("rotate");
    apply(&s);
    let user = format!("{}app", s.prefix);
    assert!(can_login(&user, "first-Pw-1"));
    s.set_env("APP_PW", "second-Pw-2");
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("~ password = (sensitive, changed)"), "{r:?}");
    apply(&s);
    assert!(can_login(&user, "second-Pw-2"), "the new password works");
    assert!(!can_login(&user, "first-Pw-1"), "the old password no longer does");
    assert_no_changes(&s);
}

fn reset_objects(s: &Sandbox) {
    let p = s.prefix.replace('_', "\\\\_");
    let dbs = query_one(&format!(
        "SELECT GROUP_CONCAT(CONCAT('`', SCHEMA_NAME, '`')) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{p}%'"
    ));
    for db in dbs.iter().flat_map(|d| d.split(',')) {
        sql(&[&format!("DROP DATABASE {db}")]);
    }
    let users = query_one(&format!(
        "SELECT GROUP_CONCAT(CONCAT('''', User, '''@''', Host, '''')) FROM mysql.user WHERE User LIKE '{p}%'"
    ));
    if let Some(u) = users {
        sql(&[&format!("DROP USER {u}")]);
    }
}

/// A database, a user and the user's grant on it, all named `@@{name}`.
fn trio(name: &str, charset: &str, privileges: &str) -> String {
    format!(
        "\n[mysql_database.{name}]\nname = \"@@{name}\"\ncharset = \"{charset}\"\n\n\
         [mysql_user.{name}]\nuser = \"@@{name}\"\npassword = \"${{secrets.pw}}\"\n\n\
         [mysql_grant.{name}]\nuser = \"${{mysql_user.{name}.user}}\"\non = \"${{mysql_database.{name}.name}}.*\"\n\
         privileges = [{privileges}]\n"
    )
}

/// Before: what an earlier apply of the deployment left. After: every kind of change from there
/// (create, update, adopt, delete) for databases, users and grants.
fn crash_plans() -> (String, String) {
    let secrets = "[secrets]\npw = { env = \"PW\" }\n";
    let before = format!("{secrets}{}{}", trio("upd", "latin1", "\"SELECT\""), trio("del", "utf8mb4", "\"ALL\""));
    let adopt = "\n[mysql_database.adopt]\nname = \"@@adopt\"\n\n\
                 [mysql_user.adopt]\nuser = \"@@adopt\"\npassword = \"${secrets.pw}\"\n";
    let after = format!(
        "{secrets}{}{}{adopt}",
        trio("upd", "utf8mb4", "\"SELECT\", \"INSERT\""),
        trio("new", "utf8mb4", "\"ALL\"")
    );
    (before, after)
}

/// Resets the sandbox to the state the crash plan starts from. The sandbox's own `PW` is the
/// crash plan's password; the plan before it is applied with the one it had.
fn crash_baseline(s: &Sandbox, first: bool) {
    reset_objects(s);
    if !first {
        sql(&[&format!("DELETE FROM aspects_meta.owned WHERE deployment = '{}dep'", s.prefix)]);
    }
    let (before, after) = crash_plans();
    s.write("aspects.toml", &s.plan(&before));
    let r: aspects_e2e::Run = s.command(&["apply", "--auto-approve"]).env("PW", "before-Pw-1").output().unwrap().into();
    assert_eq!(r.code, 0, "{r:?}");
    // Objects that exist but nobody owns yet: the new plan adopts them.
    let p = &s.prefix;
    sql(&[&format!("CREATE DATABASE `{p}adopt`"), &format!("CREATE USER '{p}adopt'@'%' IDENTIFIED BY 'hand-Pw-0'")]);
    s.write("aspects.toml", &s.plan(&after));
}

/// What the deployment records as its own, as `kind.name` lines.
fn owned(s: &Sandbox) -> String {
    query_one(&format!(
        "SELECT GROUP_CONCAT(CONCAT(kind, '.', address) ORDER BY kind, address SEPARATOR ' ') \
         FROM aspects_meta.owned WHERE deployment = '{}dep'",
        s.prefix
    ))
    .unwrap_or_default()
}

/// A crash right after each write of an apply, in turn (the test hook aborts the process as
/// `kill -9` would), then an apply without the hook: it converges every time, and ownership is
/// exactly the plan's objects. One change at a time, so write k is the same statement each run.
#[test]
fn a_crash_after_any_write_then_apply_converges() {
    let mut s = Sandbox::new("crash");
    s.set_env("PW", "after-Pw-2");
    let expected = "mysql_database.adopt mysql_database.new mysql_database.upd mysql_grant.new mysql_grant.upd \
                    mysql_user.adopt mysql_user.new mysql_user.upd";
    let p = s.prefix.clone();
    let exists = |sql: String| query_one(&sql).is_some();
    crash_baseline(&s, true);
    let args = ["apply", "--auto-approve", "--allow-destroy", "--parallelism", "1"];
    let writes = aspects_e2e::crash_at_every_write(&s, &args, |k, _| {
        let r = s.run(&["apply", "--auto-approve", "--allow-destroy"]);
        assert_eq!(r.code, 0, "k = {k}: the apply after the crash must converge: {r:?}");
        let r = s.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(r.code, 0, "k = {k}: plan after the crash and apply must be empty: {r:?}");
        assert_eq!(owned(&s), expected, "k = {k}");
        assert!(!exists(format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{p}del'")));
        assert!(!exists(format!("SELECT User FROM mysql.user WHERE User = '{p}del'")), "k = {k}");
        assert!(can_login(&format!("{p}adopt"), "after-Pw-2"), "k = {k}");
        assert!(can_login(&format!("{p}upd"), "after-Pw-2"), "k = {k}");
        crash_baseline(&s, false);
    });
    assert!(writes >= 10, "the plan has only {writes} writes");
}

#[test]
fn a_held_lock_refuses_a_second_apply_naming_the_holder() {
    let s = Sandbox::new("lock");
    s.write("aspects.toml", &s.plan(&many(25)));
    // Held mid-apply (the pause test hook), so it surely holds the lock while the second runs.
    let (first, go) = s.paused(&["apply", "--auto-approve", "--parallelism", "1"], 5);
    let second = s.run(&["apply", "--auto-approve", "--lock-timeout", "0s"]);
    std::fs::write(&go, "").unwrap();
    let first_id = first.id();
    assert!(first.wait_with_output().unwrap().status.success());
    assert_eq!(second.code, 1, "{second:?}");
    assert!(second.stderr.contains("locked by"), "{second:?}");
    assert!(second.stderr.contains(&format!("pid {first_id}")), "the holder is named: {second:?}");
    assert!(second.stderr.contains("hint:"), "{second:?}");
}

#[test]
fn concurrent_applies_never_interleave() {
    let s = Sandbox::new("concurrent");
    s.write("aspects.toml", &s.plan(&many(10)));
    let a = s.spawn(&["apply", "--auto-approve", "--lock-timeout", "60s"]);
    let b = s.spawn(&["apply", "--auto-approve", "--lock-timeout", "60s"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{a:?}\n{b:?}");
    // Exactly one of them did the work; the other waited, re-planned and found nothing to do.
    let outs = [String::from_utf8_lossy(&a.stdout).into_owned(), String::from_utf8_lossy(&b.stdout).into_owned()];
    assert_eq!(outs.iter().filter(|o| o.contains("Apply complete! 30 done")).count(), 1, "{outs:?}");
    assert_eq!(outs.iter().filter(|o| o.starts_with("No changes.")).count(), 1, "{outs:?}");
    let journal = std::fs::read_to_string(s.path("aspects.journal.jsonl")).unwrap();
    assert_eq!(journal.matches("apply_started").count(), 1, "{journal}");
    assert_no_changes(&s);
}

#[test]
fn names_with_quotes_backticks_and_backslashes_are_safe() {
    let mut s = Sandbox::new("quotes");
    let body = r#"
[secrets]
pw = { env = "QPW" }

[mysql_database.weird]
name = "@@we`ird'db\\x"

[mysql_user.weird]
user = "@@o'b`r\\n"
host = "%"
password = "${secrets.pw}"

[mysql_grant.weird]
user = "${mysql_user.weird.user}"
on = "`@@we``ird'db\\x`.*"
privileges = ["SELECT"]
"#;
    s.write("aspects.toml", &s.plan(body));
    s.set_env("QPW", "pw'with\"quotes`and\\slash");
    apply(&s);
    assert_no_changes(&s);
    let p = &s.prefix;
    assert_eq!(
        query_one(&format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{p}we`ird''db\\\\x'"
        ))
        .as_deref(),
        Some(format!("{p}we`ird'db\\x").as_str())
    );
    assert!(can_login(&format!("{p}o'b`r\\n"), "pw'with\"quotes`and\\slash"));
}

#[test]
fn saved_plans_apply_exactly_and_refuse_when_live_state_moved() {
    let s = app("saved");
    let r = s.run(&["plan", "--out", "p.json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = s.run(&["apply", "p.json"]);
    assert_eq!(r.code, 0, "a saved plan applies without a prompt: {r:?}");
    assert!(r.stdout.contains("3 done"), "{r:?}");

    // Plan again (nothing to do), then someone changes the database behind our back.
    assert_eq!(s.run(&["plan", "--out", "q.json"]).code, 0);
    sql(&[&format!("ALTER DATABASE `{}app` CHARACTER SET latin1", s.prefix)]);
    let r = s.run(&["apply", "q.json"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("is stale") && r.stderr.contains("mysql_database.app"), "{r:?}");
    assert!(!r.stderr.contains("mysql_user.app"), "only what moved is named: {r:?}");

    // A secret that changed since the plan was saved makes it stale too.
    let mut s = s;
    assert_eq!(s.run(&["plan", "--out", "r.json"]).code, 0);
    s.set_env("APP_PW", "another-one");
    let r = s.run(&["apply", "r.json"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("secret value changed for app_pw"), "{r:?}");
}

#[test]
fn removed_resources_are_destroyed_only_if_owned_and_data_needs_allow_destroy() {
    let s = app("destroy");
    apply(&s);
    let p = s.prefix.clone();
    sql(&[&format!("CREATE DATABASE `{p}foreign`"), &format!("CREATE USER '{p}foreign'@'%'")]);
    // Keep only the user: the grant (privileges) and the database leave the plan.
    s.write("aspects.toml", &s.plan("[secrets]\napp_pw = { env = \"APP_PW\" }\n\n[mysql_user.app]\nuser = \"@@app\"\npassword = \"${secrets.app_pw}\"\n"));
    let r = s.run(&["plan"]);
    insta::assert_snapshot!("destroy_plan", s.scrub(&r.stdout));
    assert!(!r.stdout.contains("foreign"), "objects the deployment does not own never appear: {r:?}");

    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("destroys data-bearing mysql_database.app") && r.stderr.contains("--allow-destroy"),
        "{r:?}"
    );
    assert!(
        query_one(&format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{p}app'"))
            .is_some(),
        "nothing was changed"
    );

    let r = s.run(&["apply", "--auto-approve", "--allow-destroy"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        query_one(&format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{p}app'"))
            .is_none()
    );
    assert!(
        query_one(&format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{p}foreign'"))
            .is_some()
    );
    assert_no_changes(&s);
}

#[test]
fn an_existing_unowned_object_is_adopted_not_recreated() {
    let s = app("adopt");
    let p = &s.prefix;
    sql(&[&format!("CREATE DATABASE `{p}app` CHARACTER SET utf8mb4")]);
    let r = s.run(&["plan"]);
    assert!(r.stdout.contains("mysql_database.app will be adopted"), "{r:?}");
    // It shows what it takes over (identity and current attributes), not `{ }`.
    let block: String =
        r.stdout.lines().skip_while(|l| !l.contains("= mysql_database.app {")).take(5).collect::<Vec<_>>().join("\n");
    insta::assert_snapshot!("adopt_block", s.scrub(&block));
    apply(&s);
    assert_no_changes(&s);
}

#[test]
fn renaming_a_database_is_refused_with_a_hint_to_restore_the_old_name() {
    let s = app("rename-db");
    apply(&s);
    s.write("aspects.toml", &s.plan(&APP.replace("name = \"@@app\"", "name = \"@@renamed\"")));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("destroys data-bearing mysql_database.app (replaced: its identity changed)"), "{r:?}");
    assert!(r.stderr.contains("put the old name back in the plan file"), "{r:?}");
    assert!(!r.stderr.contains("put them back"), "the resource is still in the plan: {r:?}");
}

#[test]
fn a_failure_skips_dependents_and_the_next_apply_converges() {
    let s = Sandbox::new("failure");
    // The grant names a table that does not exist: MariaDB refuses it; the independent
    // database still gets created; the next apply (with the table there) converges.
    let body = r#"
[secrets]
pw = { generate = 24 }

[mysql_database.ok]
name = "@@ok"

[mysql_user.u]
user = "@@u"
password = "${secrets.pw}"

[mysql_grant.bad]
user = "${mysql_user.u.user}"
on = "${mysql_database.ok.name}.missing_table"
privileges = ["SELECT"]
"#;
    s.write("aspects.toml", &s.plan(body));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("mysql_grant.bad: Error:"), "{r:?}");
    assert!(r.stdout.contains("2 done, 1 failed"), "{r:?}");
    sql(&[&format!("CREATE TABLE `{}ok`.missing_table (id INT)", s.prefix)]);
    apply(&s);
    assert_no_changes(&s);
}

#[test]
fn an_identity_moved_onto_an_existing_object_adopts_it_and_destroys_the_old_one() {
    let s = app("moved");
    apply(&s);
    let p = s.prefix.clone();
    // The user moves from '%' to 'localhost', where an account of that name already exists.
    sql(&[&format!("CREATE USER '{p}app'@'localhost' IDENTIFIED BY 'first-Pw-1'")]);
    let moved = APP
        .replace("user = \"@@app\"\n", "user = \"@@app\"\nhost = \"localhost\"\n")
        .replace("on = \"${", "host = \"${mysql_user.app.host}\"\non = \"${");
    s.write("aspects.toml", &s.plan(&moved));
    let r = s.run(&["plan"]);
    assert!(r.stdout.contains("mysql_user.app will be adopted"), "{r:?}");
    assert!(r.stdout.contains(r#"mysql_user["app (previous identity)"] will be destroyed"#), "{r:?}");
    apply(&s);
    assert_no_changes(&s);
    let hosts = query_one(&format!("SELECT GROUP_CONCAT(Host) FROM mysql.user WHERE User = '{p}app'"));
    assert_eq!(hosts.as_deref(), Some("localhost"), "the old '%' account is gone");
}

#[test]
fn a_second_deployment_cannot_take_over_an_owned_object() {
    let first = app("owner-a");
    apply(&first);
    let second = Sandbox::new("owner-b");
    // Same objects (first's names), another deployment.
    let body = APP.replace("@@", &first.prefix);
    second.write("aspects.toml", &second.plan(&body));
    let mut second = second;
    second.set_env("APP_PW", "first-Pw-1");
    let r = second.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("another deployment owns mysql_database.app"), "{r:?}");
    assert!(!r.stderr.contains("more (run with -v"), "three objects are all named: {r:?}");
    assert!(r.stderr.contains(&format!("`{}dep`", first.prefix)), "the owner is named: {r:?}");
    assert_no_changes(&first);
}

#[test]
fn removing_every_resource_destroys_everything_the_deployment_owns() {
    let s = app("empty");
    apply(&s);
    s.write("aspects.toml", &s.plan(""));
    let r = s.run(&["plan"]);
    assert!(r.stdout.starts_with("Plan: 0 to add, 0 to change, 3 to destroy."), "{r:?}");
    let r = s.run(&["apply", "--auto-approve", "--allow-destroy"]);
    assert_eq!(r.code, 0, "{r:?}");
    let p = &s.prefix;
    assert!(
        query_one(&format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{p}app'"))
            .is_none()
    );
    assert!(query_one(&format!("SELECT User FROM mysql.user WHERE User = '{p}app'")).is_none());
    assert_no_changes(&s);
}

#[test]
fn a_saved_plan_keeps_the_vars_it_was_made_with() {
    let mut s = Sandbox::new("saved-vars");
    s.write("aspects.toml", &s.plan("[vars]\ndb = \"@@fromfile\"\n\n[mysql_database.app]\nname = \"${vars.db}\"\n"));
    let flag = format!("db={}fromflag", s.prefix);
    assert_eq!(s.run(&["--var", &flag, "plan", "--out", "p.json"]).code, 0);
    // Neither a missing --var nor a different environment changes what the saved plan applies.
    s.set_env("ASPECTS_VAR_db", &format!("{}fromenv", s.prefix));
    let r = s.run(&["apply", "p.json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        query_one(&format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{}fromflag'",
            s.prefix
        ))
        .is_some()
    );
    let r = s.run(&["--var", &flag, "apply", "p.json"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("a saved plan carries the vars it was made with"), "{r:?}");
}

#[test]
fn refusing_thousands_of_objects_names_a_few_and_counts_the_rest() {
    // 2,000 grants to accounts nobody declares: plan refuses them all at once, in a short
    // message; -v logs every one.
    let s = Sandbox::new("many-refused");
    let body: String = (0..2000)
        .map(|i| {
            format!("[mysql_grant.g{i}]\nuser = \"@@nobody{i}\"\ndatabase = \"@@d\"\nprivileges = [\"SELECT\"]\n\n")
        })
        .collect();
    s.write("aspects.toml", &s.plan(&body));
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("grants to accounts that will not exist: 2000 objects: mysql_grant.g0 at "), "{r:?}");
    assert!(r.stderr.contains("and 1995 more (run with -v to list them all)"), "{r:?}");
    assert!(r.stderr.len() < 2_000, "{} bytes:\n{}", r.stderr.len(), r.stderr);
    let v = s.run(&["-v", "plan"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert_eq!(v.stderr.matches("grant to an account that will not exist: ").count(), 2000, "{v:?}");
}

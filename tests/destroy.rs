//! `aspects destroy`: everything the deployment created goes, in reverse dependency order; what
//! it adopted is released (kept, no longer owned) unless --destroy-adopted; the same gate,
//! prompt, lock and journal as apply.

use aspects_e2e::{Sandbox, query_one, sql};

const PLAN: &str = r#"
[secrets]
app_pw = { env = "APP_PW" }

[mysql_database.app]
name = "@@app"

[mysql_user.app]
user = "@@app"
password = "${secrets.app_pw}"

[mysql_grant.app]
user = "${mysql_user.app.user}"
on = "${mysql_database.app.name}.*"
privileges = ["SELECT"]

[mysql_database.kept]
name = "@@kept"
"#;

/// A deployment that created app's database, user and grant, and adopted `kept` (made by hand,
/// with data in it).
fn deployed(name: &str) -> Sandbox {
    let mut s = Sandbox::new(name);
    s.write("aspects.toml", &s.plan(PLAN));
    s.set_env("APP_PW", "app-Pw-1");
    let p = s.prefix.clone();
    sql(&[&format!("CREATE DATABASE `{p}kept` CHARACTER SET utf8mb4"), &format!("CREATE TABLE `{p}kept`.t (a INT)")]);
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("3 to add, 0 to change, 0 to destroy, 1 to adopt"), "{r:?}");
    s
}

fn database_exists(name: &str) -> bool {
    query_one(&format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'")).is_some()
}

fn user_exists(name: &str) -> bool {
    query_one(&format!("SELECT User FROM mysql.user WHERE User = '{name}'")).is_some()
}

/// The deployment's records as `kind.address:state`.
fn records(s: &Sandbox) -> String {
    query_one(&format!(
        "SELECT GROUP_CONCAT(CONCAT(kind, '.', address, ':', state) ORDER BY kind, address SEPARATOR ' ') \
         FROM aspects_meta.owned WHERE deployment = '{}dep'",
        s.prefix
    ))
    .unwrap_or_default()
}

#[test]
fn destroy_removes_what_was_created_releases_what_was_adopted_and_plan_starts_over() {
    let s = deployed("destroy");
    let p = s.prefix.clone();
    assert_eq!(
        records(&s),
        "mysql_database.app:created mysql_database.kept:adopted mysql_grant.app:created mysql_user.app:created"
    );

    // Without --allow-destroy a database is refused before any change; no prompt either.
    let r = s.run(&["destroy"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("data-bearing mysql_database.app") && r.stderr.contains("--allow-destroy"), "{r:?}");
    insta::assert_snapshot!("destroy_plan", s.scrub(&r.stdout));
    // Without a terminal it needs --auto-approve, and changes nothing either way.
    let r = s.run(&["destroy", "--allow-destroy"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--auto-approve"), "{r:?}");
    assert!(database_exists(&format!("{p}app")) && user_exists(&format!("{p}app")));
    assert_eq!(records(&s).split(' ').count(), 4);

    let r = s.run(&["destroy", "--auto-approve", "--allow-destroy"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Apply complete! 4 done, 0 failed, 0 skipped."), "{r:?}");
    assert!(r.stderr.contains("mysql_database.kept: Release complete"), "{r:?}");
    // Reverse dependency order: the grant, then the user, then the database.
    let order: Vec<&str> = r.stderr.lines().filter(|l| l.contains("Destruction complete")).collect();
    assert!(order[0].starts_with("mysql_grant.app") && order[2].starts_with("mysql_database.app"), "{order:?}");
    assert!(!database_exists(&format!("{p}app")) && !user_exists(&format!("{p}app")));
    assert!(database_exists(&format!("{p}kept")), "the adopted database is kept");
    assert_eq!(
        query_one(&format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{p}kept'"))
            .as_deref(),
        Some("t")
    );
    assert_eq!(records(&s), "", "no record is left");
    let journal = std::fs::read_to_string(s.path("aspects.journal.jsonl")).unwrap();
    assert!(journal.contains(r#""command":"destroy""#), "{journal}");

    // Nothing is owned any more: a second destroy has nothing to do; a plan starts over.
    let r = s.run(&["destroy", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("Nothing to destroy: deployment `{p}dep` owns nothing")), "{r:?}");
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("Plan: 3 to add, 0 to change, 0 to destroy, 1 to adopt."), "{r:?}");
}

#[test]
fn destroy_adopted_drops_adopted_objects_too() {
    let s = deployed("destroy-adopted");
    let r = s.run(&["destroy", "--auto-approve", "--allow-destroy", "--destroy-adopted"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("4 to destroy"), "{r:?}");
    assert!(!database_exists(&format!("{}kept", s.prefix)));
    assert_eq!(records(&s), "");
}

#[test]
fn destroy_target_takes_what_depends_on_it_and_nothing_else() {
    let s = deployed("destroy-target");
    let p = s.prefix.clone();
    let r = s.run(&["destroy", "--auto-approve", "--target", "mysql_user.app"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Plan: 0 to add, 0 to change, 2 to destroy."), "{r:?}");
    assert!(!user_exists(&format!("{p}app")));
    assert!(database_exists(&format!("{p}app")) && database_exists(&format!("{p}kept")));
    assert_eq!(records(&s), "mysql_database.app:created mysql_database.kept:adopted");
}

#[test]
fn a_record_whose_object_is_gone_is_no_destroy_and_needs_no_flag() {
    let s = Sandbox::new("gone");
    s.write("aspects.toml", &s.plan("[mysql_database.app]\nname = \"@@old\"\n"));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    sql(&[&format!("DROP DATABASE `{}old`", s.prefix)]);
    // The entry now names another database: the old record's object is gone, so nothing is
    // destroyed and nothing asks for --allow-destroy.
    s.write("aspects.toml", &s.plan("[mysql_database.app]\nname = \"@@new\"\n"));
    let r = s.run(&["plan"]);
    assert!(r.stdout.starts_with("Plan: 1 to add, 0 to change, 0 to destroy."), "{r:?}");
    assert!(!r.stdout.contains("holds data"), "{r:?}");
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(records(&s), "mysql_database.app:created", "the stale record was pruned silently");
}

#[test]
fn a_failed_create_leaves_nothing_that_a_later_hand_made_object_could_be_taken_for() {
    let s = Sandbox::new("failed-create");
    let p = s.prefix.clone();
    sql(&[&format!("CREATE DATABASE `{p}data`"), &format!("CREATE USER '{p}person'@'%'")]);
    // The table does not exist yet: the grant fails at apply.
    s.write(
        "aspects.toml",
        &s.plan("[mysql_grant.g]\nuser = \"@@person\"\non = \"@@data.later\"\nprivileges = [\"SELECT\"]\n"),
    );
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(records(&s), "", "a failed create records nothing");

    // A person makes that very grant by hand; the resource leaves the plan.
    sql(&[
        &format!("CREATE TABLE `{p}data`.later (a INT)"),
        &format!("GRANT SELECT ON `{p}data`.later TO '{p}person'@'%'"),
    ]);
    s.write("aspects.toml", &s.plan(""));
    let r = s.run(&["plan", "--target", "mysql_grant.g"]);
    assert_eq!(r.code, 1, "not ours, so not even a target: {r:?}");
    assert!(r.stderr.contains("unknown --target mysql_grant.g"), "{r:?}");
    let r = s.run(&["apply", "--auto-approve", "--allow-destroy"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("No changes."), "{r:?}");
    let held = query_one(&format!("SELECT Table_priv FROM mysql.tables_priv WHERE User = '{p}person'"));
    assert_eq!(held.as_deref(), Some("Select"), "the hand-made grant is untouched");
}

#[test]
fn renaming_an_adopted_account_releases_the_old_one_instead_of_dropping_it() {
    let mut s = Sandbox::new("adopted-move");
    let p = s.prefix.clone();
    sql(&[&format!("CREATE USER '{p}hand'@'%' IDENTIFIED BY 'hand-Pw-1'")]);
    s.set_env("HAND_PW", "hand-Pw-1");
    let body = |user: &str| {
        format!(
            "[secrets]\npw = {{ env = \"HAND_PW\" }}\n\n[mysql_user.u]\nuser = \"{user}\"\npassword = \"${{secrets.pw}}\"\n"
        )
    };
    s.write("aspects.toml", &s.plan(&body("@@hand")));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(records(&s), "mysql_user.u:adopted");

    s.write("aspects.toml", &s.plan(&body("@@hand2")));
    // The plan says what apply does: the new account is created, the adopted one released.
    let plan = s.run(&["plan"]);
    assert!(plan.stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy, 1 to release."), "{plan:?}");
    assert!(plan.stdout.contains(r#"mysql_user["u (previous identity)"] will be released"#), "{plan:?}");
    assert!(!plan.stdout.contains("-/+"), "{plan:?}");
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(user_exists(&format!("{p}hand2")), "the new account is made");
    assert!(user_exists(&format!("{p}hand")), "the account that existed before is kept: {r:?}");
    assert_eq!(records(&s), "mysql_user.u:created", "and no longer owned");
    assert_eq!(s.run(&["plan", "--detailed-exitcode"]).code, 0);
}

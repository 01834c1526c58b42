//! `mysql_grant`: exact convergence (extra privileges revoked, missing ones granted), ALL
//! normalisation at every level, grant option, orphaned and extra privileges.

mod common;

use aspects_core::{Action, Value};
use common::*;

/// A database, a user and a grant on it.
fn stack(env: &Env, privileges: &[&str]) -> Vec<aspects_core::Resource> {
    let (db, u) = (env.name("db"), env.name("app"));
    vec![database("db", &db), user("app", &u, "%", "pw"), grant("app", &u, "%", &format!("{db}.*"), privileges)]
}

const HELD: &str =
    "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND TABLE_SCHEMA = ? ORDER BY 1";

async fn db_privileges(env: &Env) -> Vec<String> {
    let grantee = format!("'{}'@'%'", env.name("app"));
    env.strings(HELD, &[&grantee, &env.name("db")]).await
}

#[tokio::test]
async fn grant_converges_exactly_and_extra_privileges_are_revoked() {
    let env = Env::new();
    let w = env.writer().await;
    let desired = stack(&env, &["select", " insert "]);
    let steps = apply(&w, &desired).await;
    assert_eq!(step(&steps, "mysql_grant.app").change.action, Action::Create);
    assert_eq!(db_privileges(&env).await, ["INSERT", "SELECT"]);
    assert_converged(&w, &desired).await;

    // Someone adds DELETE by hand: the grant's own diff shows it and apply revokes it.
    env.exec(&format!("GRANT DELETE ON `{}`.* TO '{}'@'%'", env.name("db"), env.name("app"))).await;
    let steps = plan(&env.reader().await, &desired).await;
    let change = &step(&steps, "mysql_grant.app").change;
    assert_eq!(change.action, Action::Update);
    assert_eq!(strs(change.attrs[0].before.as_ref().unwrap()), ["DELETE", "INSERT", "SELECT"]);
    assert_eq!(strs(change.attrs[0].after.as_ref().unwrap()), ["INSERT", "SELECT"]);
    apply_steps(&*w, &steps).await;
    assert_eq!(db_privileges(&env).await, ["INSERT", "SELECT"]);

    // Grant and revoke in one apply.
    let desired = stack(&env, &["SELECT", "UPDATE"]);
    apply(&w, &desired).await;
    assert_eq!(db_privileges(&env).await, ["SELECT", "UPDATE"]);
    assert_converged(&w, &desired).await;

    // Grant option is a privilege of its own.
    let desired = stack(&env, &["SELECT", "UPDATE", "GRANT OPTION"]);
    apply(&w, &desired).await;
    assert_converged(&w, &desired).await;
    let desired = stack(&env, &["SELECT"]);
    apply(&w, &desired).await;
    assert_converged(&w, &desired).await;
    let grantable = env
        .strings(
            "SELECT DISTINCT IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
            &[&format!("'{}'@'%'", env.name("app"))],
        )
        .await;
    assert_eq!(grantable, ["NO"]);
}

#[tokio::test]
async fn all_privileges_normalises_at_every_level() {
    let env = Env::new();
    let w = env.writer().await;
    let (db, u) = (env.name("all"), env.name("all_u"));
    env.exec(&format!("CREATE DATABASE `{db}`")).await;
    env.exec(&format!("CREATE TABLE `{db}`.t (a INT)")).await;
    let desired = vec![
        user("u", &u, "%", "pw"),
        grant("global", &u, "%", "*.*", &["all privileges"]),
        grant("db", &u, "%", &format!("{db}.*"), &["All"]),
        grant("table", &u, "%", &format!("`{db}`.`t`"), &["ALL PRIVILEGES", "grant option"]),
    ];
    let steps = apply(&w, &desired).await;
    let normalised = step(&steps, "mysql_grant.table").desired.as_ref().unwrap();
    assert_eq!(strs(normalised.get("privileges").unwrap()), ["ALL", "GRANT OPTION"]);
    assert_eq!(normalised.get("on"), Some(&Value::from(format!("{db}.t"))));
    assert_converged(&w, &desired).await;

    // What the server reports after its own GRANT ALL reads as ALL too.
    let v = env.name("all_v");
    env.exec(&format!("CREATE USER '{v}'@'%' IDENTIFIED BY 'pw'")).await;
    env.exec(&format!("GRANT ALL ON *.* TO '{v}'@'%'")).await;
    env.exec(&format!("GRANT ALL ON `{db}`.* TO '{v}'@'%'")).await;
    env.exec(&format!("GRANT ALL ON `{db}`.t TO '{v}'@'%'")).await;
    let k = kind("mysql_grant");
    let r = env.reader().await;
    let mut wanted = vec![
        grant("g", &v, "%", "*.*", &["ALL PRIVILEGES"]),
        grant("d", &v, "%", &format!("{db}.*"), &["ALL"]),
        grant("t", &v, "%", &format!("{db}.t"), &["all"]),
    ];
    for g in &mut wanted {
        r.normalise(&k, g);
    }
    let live = r.read(&k, &wanted).await.unwrap();
    for (g, l) in wanted.iter().zip(&live) {
        let l = l.as_ref().expect("granted");
        assert_eq!(strs(l.attrs.get("privileges").unwrap()), ["ALL"], "{}", g.address);
        let change = aspects_core::diff::diff(&k, g, Some(l), None);
        assert_eq!(change.action, Action::Adopt, "{}: equal but not owned", g.address);
    }

    // Most but not all of a level reads as the list, not ALL.
    env.exec(&format!("REVOKE SELECT ON `{db}`.* FROM '{v}'@'%'")).await;
    let live = r.read(&k, &wanted[1..2]).await.unwrap();
    let privileges = strs(live[0].as_ref().unwrap().attrs.get("privileges").unwrap());
    assert!(
        !privileges.contains(&"ALL".to_owned()) && !privileges.contains(&"SELECT".to_owned()) && privileges.len() > 10
    );
}

#[tokio::test]
async fn orphans_owned_grants_and_extra_privileges_are_found_once() {
    let env = Env::new();
    let w = env.writer().await;
    let (db, u, other) = (env.name("db"), env.name("app"), env.name("other"));
    let mut desired = stack(&env, &["SELECT"]);
    desired.push(grant("other", &u, "%", &format!("{other}.*"), &["SELECT", "INSERT"]));
    apply(&w, &desired).await;
    assert_converged(&w, &desired).await;

    // Extra privileges on yet another database, granted by hand.
    let third = env.name("third");
    env.exec(&format!("GRANT UPDATE ON `{}`.* TO '{u}'@'%'", third)).await;
    env.exec(&format!("GRANT SELECT ON *.* TO '{u}'@'%'")).await;
    // Someone else's user is never touched.
    let stranger = env.name("stranger");
    env.exec(&format!("CREATE USER '{stranger}'@'%'")).await;
    env.exec(&format!("GRANT SELECT ON `{}`.* TO '{stranger}'@'%'", db)).await;

    // The plan drops grant "other" (owned) and has the extras on `third` and `*.*`.
    desired.pop();
    env.exec(&format!("GRANT DELETE ON `{}`.* TO '{u}'@'%'", other)).await;
    let steps = plan(&env.reader().await, &desired).await;
    let mut got: Vec<(String, Action, String)> = steps
        .iter()
        .filter(|s| s.change.action != Action::NoOp)
        .map(|s| (s.change.address.to_string(), s.change.action, s.change.reason.clone().unwrap_or_default()))
        .collect();
    got.sort();
    let mut expected = vec![
        ("mysql_grant.other".to_owned(), Action::Delete, "not in the plan".to_owned()),
        (
            aspects_core::Address::new("mysql_grant", format!("'{u}'@'%' on {third}.*")).to_string(),
            Action::Delete,
            "privileges beyond the plan".to_owned(),
        ),
        (
            aspects_core::Address::new("mysql_grant", format!("'{u}'@'%' on *.*")).to_string(),
            Action::Delete,
            "privileges beyond the plan".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(got, expected);
    let owned = step(&steps, "mysql_grant.other");
    let before: Vec<_> =
        owned.change.attrs.iter().find(|a| a.name == "privileges").unwrap().before.iter().flat_map(strs).collect();
    assert_eq!(before, ["DELETE", "INSERT", "SELECT"]);

    apply_steps(&*w, &steps).await;
    assert_converged(&w, &desired).await;
    let left = env
        .strings(
            "SELECT TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
            &[&format!("'{u}'@'%'")],
        )
        .await;
    assert_eq!(left, [db]);
    let stranger_privileges = env
        .strings(
            "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
            &[&format!("'{stranger}'@'%'")],
        )
        .await;
    assert_eq!(stranger_privileges, ["SELECT"]);
    let records: Vec<String> = env.records().await.into_iter().map(|(k, a)| format!("{k}.{a}")).collect();
    assert_eq!(records, ["mysql_database.db", "mysql_grant.app", "mysql_user.app"]);
}

#[tokio::test]
async fn grant_host_change_replaces_the_grant() {
    let env = Env::new();
    let w = env.writer().await;
    let (db, u) = (env.name("db"), env.name("app"));
    let before =
        vec![user("app", &u, "localhost", "pw"), grant("app", &u, "localhost", &format!("{db}.*"), &["SELECT"])];
    apply(&w, &before).await;
    let after = vec![user("app", &u, "%", "pw"), grant("app", &u, "%", &format!("{db}.*"), &["SELECT"])];
    let steps = plan(&w, &after).await;
    assert_eq!(
        actions(&steps),
        [("mysql_grant.app".to_owned(), Action::Replace), ("mysql_user.app".to_owned(), Action::Replace)]
    );
    apply_steps(&*w, &steps).await;
    assert_converged(&w, &after).await;
    assert_eq!(env.strings("SELECT Host FROM mysql.user WHERE User = ?", &[&u]).await, ["%"]);
}

#[tokio::test]
async fn granting_to_a_missing_user_is_refused_at_plan_and_explained_at_apply() {
    let env = Env::new();
    let w = env.writer().await;
    let ghost = env.name("ghost");
    let mut g = grant("g", &ghost, "%", "x.*", &["SELECT"]);
    w.normalise(&kind("mysql_grant"), &mut g);

    // The plan refuses: no mysql_user declares the account and it does not exist.
    let err = w.orphans(std::slice::from_ref(&g)).await.unwrap_err();
    assert!(err.message.contains(&format!("mysql_grant.g at test grants to '{ghost}'@'%'")), "{err}");
    assert!(err.message.contains("does not exist and no mysql_user in the plan declares"), "{err}");

    // Should the account vanish between plan and apply, the apply error still explains itself.
    let create = aspects_core::diff::diff(&kind("mysql_grant"), &g, None, None);
    let err = w.apply(&kind("mysql_grant"), &create, Some(&g)).await.unwrap_err();
    assert!(err.message.contains("granting on x.*"), "{err}");
    assert!(err.hint.as_deref().unwrap_or_default().contains("does not exist"), "{:?}", err.hint);
    // The server did not auto-create a passwordless user (NO_AUTO_CREATE_USER), and the failed
    // create left no ownership record.
    assert!(env.strings("SELECT User FROM mysql.user WHERE User = ?", &[&ghost]).await.is_empty());
    assert!(env.records().await.is_empty());

    // Delete of a grant whose user or table is gone is success.
    let table = grant("t", &ghost, "%", "nodb.notable", &["SELECT"]);
    for r in [&g, &table] {
        let mut r = r.clone();
        w.normalise(&kind("mysql_grant"), &mut r);
        let orphan = aspects_core::Orphan {
            address: r.address.clone(),
            identity: r.attrs.iter().filter(|(k, _)| *k != "privileges").map(|(k, v)| (k.clone(), v.clone())).collect(),
            attrs: r.attrs.clone(),
            provider: PROVIDER.into(),
            reason: "test".into(),
            adopted: false,
        };
        let change = aspects_core::diff::delete(&kind("mysql_grant"), &orphan);
        w.apply(&kind("mysql_grant"), &change, None).await.unwrap();
    }
}

/// Lets the admin grant and revoke PROXY (MariaDB gives root@localhost this row at install;
/// an admin connecting over TCP lacks it). Idempotent.
async fn admin_may_proxy(env: &Env) {
    let me = env.strings("SELECT CURRENT_USER()", &[]).await.remove(0);
    let (user, host) = me.rsplit_once('@').unwrap();
    env.exec(&format!(
        "INSERT IGNORE INTO mysql.proxies_priv (Host, User, Proxied_host, Proxied_user, With_grant, Grantor) \
         VALUES ('{host}', '{user}', '', '', 1, ''); FLUSH PRIVILEGES"
    ))
    .await;
}

#[tokio::test]
async fn roles_default_roles_column_routine_and_proxy_privileges_are_beyond_the_plan() {
    let env = Env::new();
    let w = env.writer().await;
    let (db, u, role, other) = (env.name("db"), env.name("app"), env.name("role"), env.name("other"));
    let desired =
        vec![database("db", &db), user("app", &u, "%", "pw"), grant("app", &u, "%", &format!("{db}.t"), &["SELECT"])];
    env.exec(&format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (a INT, b INT); CREATE PROCEDURE `{db}`.p() SELECT 1"
    ))
    .await;
    apply(&w, &desired).await;
    env.exec(&format!("CREATE USER '{other}'@'%'; CREATE ROLE '{role}'; GRANT ALL ON *.* TO '{role}'")).await;
    admin_may_proxy(&env).await;
    assert_converged(&w, &desired).await;
    // MariaDB roles have no host; MySQL's `CREATE ROLE 'r'` is 'r'@'%'.
    let role_name = if env.mariadb().await { format!("`{role}`") } else { format!("'{role}'@'%'") };

    let drifts = [
        (
            format!("GRANT '{role}' TO '{u}'@'%'; SET DEFAULT ROLE '{role}' FOR '{u}'@'%'"),
            vec![
                (format!("default role {role_name}"), vec!["DEFAULT ROLE"]),
                (format!("role {role_name}"), vec!["ROLE"]),
            ],
        ),
        (
            format!("GRANT SELECT(a), INSERT(a, b) ON `{db}`.t TO '{u}'@'%'"),
            vec![(format!("columns of `{db}`.`t`"), vec!["INSERT(`a`)", "INSERT(`b`)", "SELECT(`a`)"])],
        ),
        (
            format!("GRANT EXECUTE ON PROCEDURE `{db}`.p TO '{u}'@'%' WITH GRANT OPTION"),
            vec![(format!("procedure `{db}`.`p`"), vec!["EXECUTE", "GRANT OPTION"])],
        ),
        (format!("GRANT PROXY ON '{other}'@'%' TO '{u}'@'%'"), vec![(format!("proxy '{other}'@'%'"), vec!["PROXY"])]),
    ];
    for (drift, expected) in drifts {
        env.exec(&drift).await;
        let steps = plan(&w, &desired).await;
        let mut found: Vec<(String, Vec<String>)> = steps
            .iter()
            .filter(|s| s.change.action != Action::NoOp)
            .map(|s| {
                assert_eq!(s.change.action, Action::Delete, "{drift}");
                assert_eq!(s.change.reason.as_deref(), Some("privileges beyond the plan"));
                let attr = |n: &str| s.change.attrs.iter().find(|a| a.name == n).unwrap().before.clone().unwrap();
                (attr("on").as_str().unwrap().to_owned(), strs(&attr("privileges")))
            })
            .collect();
        found.sort();
        let expected: Vec<(String, Vec<String>)> =
            expected.into_iter().map(|(on, p)| (on, p.into_iter().map(str::to_owned).collect())).collect();
        assert_eq!(found, expected, "{drift}");
        apply_steps(&*w, &steps).await;
        assert_converged(&w, &desired).await;
    }
    // The managed table grant survived the column revokes; nothing else is left.
    let grants = env.strings(&format!("SHOW GRANTS FOR '{u}'@'%'"), &[]).await;
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert!(grants[0].starts_with(&format!("GRANT USAGE ON *.* TO `{u}`@`%`")), "{grants:?}");
    assert_eq!(grants[1], format!("GRANT SELECT ON `{db}`.`t` TO `{u}`@`%`"));
    // A revoke of something already gone is done.
    let gone = aspects_core::Orphan {
        address: aspects_core::Address::new("mysql_grant", "gone"),
        identity: [("user", u.as_str()), ("host", "%"), ("on", "proxy 'nobody'@'%'")]
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .into(),
        attrs: Default::default(),
        provider: PROVIDER.into(),
        reason: "test".into(),
        adopted: false,
    };
    w.apply(&kind("mysql_grant"), &aspects_core::diff::delete(&kind("mysql_grant"), &gone), None).await.unwrap();
}

#[tokio::test]
async fn revocations_on_an_account_being_adopted_carry_a_warning() {
    let env = Env::new();
    let w = env.writer().await;
    let (db, u) = (env.name("db"), env.name("legacy"));
    env.exec(&format!("CREATE USER '{u}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON `{db}`.* TO '{u}'@'%'")).await;
    let desired = vec![user("legacy", &u, "%", "pw")];
    let steps = plan(&w, &desired).await;
    let revoke = steps.iter().find(|s| s.change.action == Action::Delete).expect("the SELECT is beyond the plan");
    let reason = revoke.change.reason.as_deref().unwrap();
    assert!(reason.contains(&format!("WARNING: '{u}'@'%' is being adopted and loses privileges")), "{reason}");
    apply_steps(&*w, &steps).await;
    assert_converged(&w, &desired).await;

    // Once the account is ours, extra privileges are ordinary drift, without the warning.
    env.exec(&format!("GRANT SELECT ON `{db}`.* TO '{u}'@'%'")).await;
    let steps = plan(&w, &desired).await;
    let revoke = steps.iter().find(|s| s.change.action == Action::Delete).unwrap();
    assert_eq!(revoke.change.reason.as_deref(), Some("privileges beyond the plan"));
}

/// A grant written with `on` replaced by the literal `database` (and `table`).
fn literal(name: &str, user: &str, target: &[(&str, &str)], privileges: &[&str]) -> aspects_core::Resource {
    let mut r = grant(name, user, "%", "*.*", privileges);
    r.attrs.remove("on");
    r.attrs.extend(target.iter().map(|(k, v)| (k.to_string(), Value::from(*v))));
    r
}

#[tokio::test]
async fn database_and_table_name_exactly_one_database_without_escaping() {
    let env = Env::new();
    let w = env.writer().await;
    // The name holds `_`, which `on = "x_y.*"` would read as a wildcard.
    let (db, u) = (env.name("x_y"), env.name("lit"));
    let grantee = format!("'{u}'@'%'");
    let desired =
        vec![database("db", &db), user("u", &u, "%", "pw"), literal("db_grant", &u, &[("database", &db)], &["SELECT"])];
    let steps = apply(&w, &desired).await;
    let normalised = step(&steps, "mysql_grant.db_grant").desired.as_ref().unwrap();
    assert_eq!(normalised.attrs["on"], Value::from(format!("`{}`.*", db.replace('_', r"\_"))));
    assert!(!normalised.attrs.contains_key("database"));
    assert_converged(&w, &desired).await;
    let schemas = env
        .strings(
            "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
            &[&grantee],
        )
        .await;
    assert_eq!(schemas, [db.replace('_', r"\_")]);

    // Drift: a privilege added by hand on the same database shows and is revoked.
    env.exec(&format!("GRANT DELETE ON `{}`.* TO {grantee}", db.replace('_', r"\_"))).await;
    let steps = plan(&env.reader().await, &desired).await;
    assert_eq!(step(&steps, "mysql_grant.db_grant").change.action, Action::Update);
    apply_steps(&*w, &steps).await;
    assert_converged(&w, &desired).await;

    // A table in it, by database and table, taken literally.
    env.exec(&format!("CREATE TABLE `{db}`.`t_1` (a INT)")).await;
    let mut desired = desired;
    desired.push(literal("table_grant", &u, &[("database", &db), ("table", "t_1")], &["INSERT"]));
    apply(&w, &desired).await;
    assert_converged(&w, &desired).await;
    let tables = env
        .strings(
            "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME, ':', PRIVILEGE_TYPE) FROM information_schema.TABLE_PRIVILEGES \
             WHERE GRANTEE = ?",
            &[&grantee],
        )
        .await;
    assert_eq!(tables, [format!("{db}.t_1:INSERT")]);
    env.exec(&format!("REVOKE INSERT ON `{db}`.`t_1` FROM {grantee}")).await;
    let steps = plan(&env.reader().await, &desired).await;
    assert_eq!(step(&steps, "mysql_grant.table_grant").change.action, Action::Create);
}

/// MySQL 8's dynamic privileges (`mysql.global_grants`) are read like the static ones: a global
/// grant naming one converges, and one added by hand is drift that apply revokes.
#[tokio::test]
async fn dynamic_privileges_converge_on_mysql() {
    let env = Env::new();
    if env.mariadb().await {
        return eprintln!("skipped: dynamic privileges are MySQL 8's (MariaDB's plan refuses them)");
    }
    let w = env.writer().await;
    let u = env.name("ops");
    let desired = vec![user("ops", &u, "%", "pw"), grant("ops", &u, "%", "*.*", &["PROCESS", "BACKUP_ADMIN"])];
    apply(&w, &desired).await;
    assert_converged(&w, &desired).await;
    env.exec(&format!("GRANT XA_RECOVER_ADMIN ON *.* TO '{u}'@'%'")).await;
    let steps = plan(&w, &desired).await;
    let change = &step(&steps, "mysql_grant.ops").change;
    assert_eq!(change.action, Action::Update);
    assert_eq!(strs(change.attrs[0].before.as_ref().unwrap()), ["BACKUP_ADMIN", "PROCESS", "XA_RECOVER_ADMIN"]);
    apply_steps(&*w, &steps).await;
    assert_converged(&w, &desired).await;
    let held = env.strings("SELECT PRIV FROM mysql.global_grants WHERE USER = ? ORDER BY 1", &[&u]).await;
    assert_eq!(held, ["BACKUP_ADMIN"]);
}

/// A partial revoke (MySQL 8.0.16+ with `partial_revokes`) withholds part of a managed global
/// grant: it is beyond the plan, and apply lifts it.
#[tokio::test]
async fn partial_revokes_are_lifted_on_mysql() {
    let env = Env::new();
    if env.mariadb().await || env.strings("SELECT CAST(@@GLOBAL.partial_revokes AS CHAR)", &[]).await[0] != "1" {
        return eprintln!("skipped: needs MySQL 8.0.16+ started with --partial-revokes=ON");
    }
    let w = env.writer().await;
    let u = env.name("ro");
    let desired = vec![user("ro", &u, "%", "pw"), grant("ro", &u, "%", "*.*", &["INSERT", "SELECT"])];
    apply(&w, &desired).await;
    env.exec(&format!("REVOKE INSERT ON mysql.* FROM '{u}'@'%'")).await;
    let steps = plan(&w, &desired).await;
    let found: Vec<_> = steps.iter().filter(|s| s.change.action != Action::NoOp).collect();
    assert_eq!(found.len(), 1, "{:?}", actions(&steps));
    assert_eq!(found[0].change.action, Action::Delete);
    let attr = |n: &str| found[0].change.attrs.iter().find(|a| a.name == n).unwrap().before.clone().unwrap();
    assert_eq!(attr("on"), Value::from("partial revoke on `mysql`.*"));
    assert_eq!(strs(&attr("privileges")), ["INSERT"]);
    apply_steps(&*w, &steps).await;
    let restricted = "SELECT CAST(IFNULL(JSON_LENGTH(JSON_EXTRACT(User_attributes, '$.Restrictions')), 0) AS CHAR) \
                      FROM mysql.user WHERE User = ?";
    assert_eq!(env.strings(restricted, &[&u]).await, ["0"]);
    assert_converged(&w, &desired).await;
}

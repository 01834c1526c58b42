//! Ownership is proven, not assumed: one owner per object whatever the timing, no record for a
//! create that did not happen, records of vanished objects pruned rather than destroyed, other
//! deployments' grants left alone, and the meta tables upgraded in place.

mod common;

use std::sync::Arc;

use aspects_core::{Action, Secret, Value};
use aspects_engine::provider::{Connector, ProviderWrite};
use aspects_mysql::MySql;
use common::*;
use tokio::sync::Barrier;

/// Every ownership row of this test's meta database: (deployment, kind, address, state).
async fn all_records(env: &Env) -> Vec<(String, String, String, String)> {
    let sql = format!("SELECT deployment, kind, address, state FROM `{}`.owned ORDER BY 1, 2, 3", env.meta);
    let mut c = env.root().await;
    use sqlx::Row;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn writer_for(env: &Env, deployment: &str) -> Arc<dyn ProviderWrite> {
    MySql.connect_write(&env.config(), deployment).await.expect("connect_write")
}

/// Applies every step, in order, keeping each outcome (message, then hint) instead of stopping
/// at the first.
async fn try_apply(h: &dyn ProviderWrite, steps: &[Step]) -> Vec<Result<(), String>> {
    let mut out = Vec::new();
    for s in steps {
        let k = kind(&s.change.address.kind);
        let result = h.apply(&k, &s.change, s.desired.as_ref()).await;
        out.push(result.map_err(|e| format!("{} / hint: {}", e.message, e.hint.unwrap_or_default())));
    }
    out
}

#[tokio::test]
async fn two_deployments_racing_for_the_same_objects_get_exactly_one_owner_each() {
    let env = Env::new();
    let (a, b) = (writer_for(&env, "dep_a").await, writer_for(&env, "dep_b").await);
    for round in 0..20 {
        let desired = [
            database("d", &env.name(&format!("race{round}"))),
            user("u", &env.name(&format!("race{round}")), "%", "pw"),
        ];
        let (plan_a, plan_b) = (plan(&a, &desired).await, plan(&b, &desired).await);
        assert_eq!(actions(&plan_a), actions(&plan_b), "both see nothing yet");
        assert!(actions(&plan_a).iter().all(|(_, action)| *action == Action::Create));
        let barrier = Arc::new(Barrier::new(2));
        let run = |w: Arc<dyn ProviderWrite>, steps: Vec<Step>, barrier: Arc<Barrier>| async move {
            barrier.wait().await;
            try_apply(&*w, &steps).await
        };
        let (ra, rb) = tokio::join!(
            tokio::spawn(run(a.clone(), plan_a, barrier.clone())),
            tokio::spawn(run(b.clone(), plan_b, barrier))
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let records = all_records(&env).await;
        for (i, address) in ["d", "u"].iter().enumerate() {
            let kind = if i == 0 { "mysql_database" } else { "mysql_user" };
            let owners: Vec<&str> =
                records.iter().filter(|r| r.1 == kind && r.2 == *address).map(|r| r.0.as_str()).collect();
            assert_eq!(owners.len(), 1, "round {round}: {kind} has one owner: {records:?}");
            let (winner, loser) = if owners[0] == "dep_a" { (&ra[i], &rb[i]) } else { (&rb[i], &ra[i]) };
            assert_eq!(winner, &Ok(()), "round {round}: the owner created {kind}");
            let err = loser.as_ref().expect_err("the other deployment fails");
            assert!(err.contains(&format!("is owned by deployment `{}`", owners[0])), "round {round}: {err}");
            assert!(err.contains("nothing was changed"), "{err}");
        }
        assert!(records.iter().all(|r| r.3 == "created"), "{records:?}");
        // Clear the round: each owner removes its own.
        for w in [&a, &b] {
            apply(w, &[]).await;
        }
        assert!(all_records(&env).await.is_empty());
    }
}

#[tokio::test]
async fn a_failed_create_leaves_no_record_so_what_a_person_makes_later_is_never_destroyed() {
    let env = Env::new();
    let w = env.writer().await;
    let (db, person) = (env.name("data"), env.name("person"));
    env.exec(&format!("CREATE DATABASE `{db}`")).await;
    env.exec(&format!("CREATE USER '{person}'@'%'")).await;

    // A grant on a table that does not exist fails at apply: no record may stay behind.
    let g = grant("g", &person, "%", &format!("{db}.later"), &["SELECT"]);
    let steps = plan(&w, std::slice::from_ref(&g)).await;
    assert_eq!(actions(&steps), [("mysql_grant.g".to_owned(), Action::Create)]);
    let s = step(&steps, "mysql_grant.g");
    let err = w.apply(&kind("mysql_grant"), &s.change, s.desired.as_ref()).await.unwrap_err();
    assert!(err.message.contains("granting on"), "{err}");
    assert!(all_records(&env).await.is_empty(), "a failed create records nothing");

    // A person makes that very grant by hand; the plan drops the resource. Nothing is revoked.
    env.exec(&format!("CREATE TABLE `{db}`.later (a INT)")).await;
    env.exec(&format!("GRANT SELECT ON `{db}`.later TO '{person}'@'%'")).await;
    let steps = plan(&w, &[]).await;
    assert!(actions(&steps).is_empty(), "{:?}", actions(&steps));
    assert_eq!(env.strings("SELECT Table_priv FROM mysql.tables_priv WHERE User = ?", &[&person]).await, ["Select"]);
}

#[tokio::test]
async fn an_unconfirmed_create_is_adopted_visibly_and_never_destroyed() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("half");
    let d = database("d", &name);
    apply(&w, std::slice::from_ref(&d)).await;
    assert_eq!(all_records(&env).await[0].3, "created");
    // What a kill between CREATE DATABASE and the confirmation leaves: a claim, and an object
    // that may as well have been made by someone else at that moment.
    env.exec(&format!("UPDATE `{}`.owned SET state = 'creating'", env.meta)).await;

    // Still declared: adopted in a visible step, not silently owned.
    let steps = plan(&w, std::slice::from_ref(&d)).await;
    assert_eq!(actions(&steps), [("mysql_database.d".to_owned(), Action::Adopt)]);

    // No longer declared: not an orphan, so no flag can destroy it; apply only drops the claim.
    assert!(actions(&plan(&w, &[]).await).is_empty());
    assert_eq!(w.prune(&[]).await.unwrap(), 1);
    assert!(all_records(&env).await.is_empty());
    assert_eq!(
        env.strings("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", &[&name]).await,
        [name]
    );
}

#[tokio::test]
async fn privileges_another_deployment_granted_to_a_shared_account_are_not_beyond_this_plan() {
    let env = Env::new();
    let (a, b) = (writer_for(&env, "dep_a").await, writer_for(&env, "dep_b").await);
    let (shared, da, db) = (env.name("shared"), env.name("da"), env.name("db"));
    let plan_a = [user("u", &shared, "%", "pw"), grant("ga", &shared, "%", &format!("{da}.*"), &["SELECT"])];
    let plan_b = [grant("gb", &shared, "%", &format!("{db}.*"), &["INSERT"])];
    apply(&a, &plan_a).await;
    apply(&b, &plan_b).await;
    // Neither revokes the other's grant, however often they run.
    for _ in 0..3 {
        assert_converged(&a, &plan_a).await;
        assert_converged(&b, &plan_b).await;
        apply(&a, &plan_a).await;
        apply(&b, &plan_b).await;
    }
    let held = env
        .strings(
            "SELECT CONCAT(TABLE_SCHEMA, ':', PRIVILEGE_TYPE) FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? ORDER BY 1",
            &[&format!("'{shared}'@'%'")],
        )
        .await;
    assert_eq!(held, [format!("{da}:SELECT"), format!("{db}:INSERT")]);
    // A grant nobody records is still beyond A's plan.
    env.exec(&format!("GRANT UPDATE ON `{}`.* TO '{shared}'@'%'", env.name("x"))).await;
    let steps = plan(&a, &plan_a).await;
    assert_eq!(actions(&steps).len(), 1, "{:?}", actions(&steps));
    assert_eq!(actions(&steps)[0].1, Action::Delete);
}

#[tokio::test]
async fn a_record_whose_object_is_gone_is_pruned_never_destroyed() {
    let env = Env::new();
    let w = env.writer().await;
    let (old, new) = (env.name("old"), env.name("new"));
    apply(&w, &[database("d", &old)]).await;
    env.exec(&format!("DROP DATABASE `{old}`")).await;

    // The entry now names another database: a plain create, not a replace that destroys data.
    let steps = plan(&w, &[database("d", &new)]).await;
    assert_eq!(actions(&steps), [("mysql_database.d".to_owned(), Action::Create)]);
    assert!(steps.iter().all(|s| s.change.old_identity.is_none()));
    assert_eq!(w.prune(&[database("d", &new)]).await.unwrap(), 1);
    apply_steps(&*w, &steps).await;
    assert_eq!(env.records().await, [("mysql_database".to_owned(), "d".to_owned())]);
}

#[tokio::test]
async fn removing_a_user_but_keeping_its_grant_is_refused_at_plan() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("app");
    let (u, g) = (user("u", &name, "%", "pw"), grant("g", &name, "%", &format!("{}.*", env.name("d")), &["SELECT"]));
    apply(&w, &[u, g.clone()]).await;
    let mut g = g;
    w.normalise(&kind("mysql_grant"), &mut g);
    let err = w.orphans(std::slice::from_ref(&g)).await.unwrap_err();
    assert!(
        err.message
            .contains(&format!("mysql_grant.g at test grants to '{name}'@'%', whose mysql_user.u left the plan")),
        "{err}"
    );
    assert!(err.hint.unwrap().contains("keep (or add) the mysql_user"));
}

#[tokio::test]
async fn grants_reaching_the_meta_database_are_refused() {
    let env = Env::new();
    let r = env.reader().await;
    let meta = env.meta.clone();
    let pattern = format!("{}%.*", &meta[..meta.len() - 3]);
    let checked = |on: &str| {
        let mut g = grant("g", "someone", "%", on, &["SELECT"]);
        r.normalise(&kind("mysql_grant"), &mut g);
        r.check(&kind("mysql_grant"), &g)
    };
    for on in [format!("{meta}.*"), format!("{meta}.owned"), pattern, format!("`{}`.*", meta.replace('_', "\\_"))] {
        let found = checked(&on);
        assert_eq!(found.len(), 1, "{on}: {found:?}");
        assert_eq!(found[0].attr.as_deref(), Some("on"));
        assert!(found[0].message.contains(&format!("reaches the meta database `{meta}`")), "{on}: {found:?}");
    }
    // Written as the literal `database`, it is refused the same way.
    let mut g = grant("g", "someone", "%", "*.*", &["SELECT"]);
    g.attrs.remove("on");
    g.attrs.insert("database".into(), Value::from(meta.as_str()));
    r.normalise(&kind("mysql_grant"), &mut g);
    assert!(r.check(&kind("mysql_grant"), &g)[0].message.contains("reaches the meta database"));
    // Other databases, and the global level, are fine.
    for on in [format!("{}x.*", env.prefix), "*.*".to_owned()] {
        assert!(checked(&on).is_empty(), "{on}");
    }
}

#[tokio::test]
async fn an_empty_identity_never_reaches_the_server() {
    let env = Env::new();
    let w = env.writer().await;
    // What a user name built from a secret resolves to in identity terms: nothing.
    for u in [user("u", "", "%", "pw"), {
        let mut u = user("u", "x", "%", "pw");
        u.attrs.insert("user".into(), Value::Sensitive(Secret::new(env.name("s"))));
        u
    }] {
        let change = aspects_core::diff::diff(&kind("mysql_user"), &u, None, None);
        let err = w.apply(&kind("mysql_user"), &change, Some(&u)).await.unwrap_err();
        assert!(err.message.contains("refusing to send mysql_user with an empty user"), "{err}");
    }
    assert!(env.records().await.is_empty());
    assert!(env.strings("SELECT User FROM mysql.user WHERE User = ?", &[&env.name("s")]).await.is_empty());
}

#[tokio::test]
async fn meta_tables_of_an_older_version_are_upgraded_and_shared_records_refused() {
    let env = Env::new();
    let meta = &env.meta;
    env.exec(&format!("CREATE DATABASE `{meta}`")).await;
    // The shape the first release created.
    env.exec(&format!(
        "CREATE TABLE `{meta}`.owned (deployment VARCHAR(190) NOT NULL, kind VARCHAR(64) NOT NULL, \
         ident_key CHAR(40) NOT NULL, address VARCHAR(1024) NOT NULL, identity TEXT NOT NULL, \
         created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (deployment, kind, ident_key))"
    ))
    .await;
    env.exec(&format!(
        "CREATE TABLE `{meta}`.locks (name VARCHAR(64) NOT NULL PRIMARY KEY, holder VARCHAR(1024) NOT NULL, \
         acquired_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    ))
    .await;
    let row = |dep: &str| {
        format!(
            "INSERT INTO `{meta}`.owned (deployment, kind, ident_key, address, identity) \
             VALUES ('{dep}', 'mysql_database', 'k1', 'd', '{{\"name\":\"x\"}}')"
        )
    };
    env.exec(&row("one")).await;
    env.exec(&row("two")).await;

    let err = match MySql.connect_write(&env.config(), &env.deployment).await {
        Ok(_) => panic!("two owners of one object must be refused"),
        Err(e) => e,
    };
    assert!(err.message.contains(r#"mysql_database {"name":"x"} (deployments one, two)"#), "{err}");
    assert!(err.hint.unwrap().contains("delete the rows of the deployments that should not own it"));

    env.exec(&format!("DELETE FROM `{meta}`.owned WHERE deployment = 'two'")).await;
    // Planning (read-only, so it cannot upgrade) still reads the old tables.
    let reader = MySql.connect_read(&env.config(), "one").await.unwrap();
    let x = database("d", "x");
    let live = reader.read(&kind("mysql_database"), std::slice::from_ref(&x)).await.unwrap();
    assert!(live[0].is_none());
    reader.orphans(&[]).await.expect("old tables are readable");
    let _w = env.writer().await;
    let _again = env.writer().await;
    assert_eq!(
        env.strings(&format!("SELECT CONCAT(deployment, ':', state) FROM `{meta}`.owned"), &[]).await,
        ["one:adopted"],
        "rows from before states carry no proof of creation"
    );
    let unique = env
        .strings(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'owned' \
             AND NON_UNIQUE = 0 AND INDEX_NAME = 'one_owner' GROUP BY INDEX_NAME",
            &[meta],
        )
        .await;
    assert_eq!(unique, ["one_owner"]);
    let columns = env
        .strings(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'locks' \
             AND COLUMN_NAME = 'connection_id'",
            &[meta],
        )
        .await;
    assert_eq!(columns, ["connection_id"]);
}

#[tokio::test]
async fn an_object_made_between_plan_and_apply_is_not_taken_for_ours() {
    let env = Env::new();
    let w = env.writer().await;
    let (db, name) = (env.name("late"), env.name("late"));
    let desired = [database("d", &db), user("u", &name, "%", "pw")];
    let steps = plan(&w, &desired).await;
    assert!(actions(&steps).iter().all(|(_, a)| *a == Action::Create));
    // Someone makes both objects before the apply runs.
    env.exec(&format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4")).await;
    env.exec(&format!("CREATE USER '{name}'@'%' IDENTIFIED BY 'theirs'")).await;
    for result in try_apply(&*w, &steps).await {
        let err = result.expect_err("CREATE without IF NOT EXISTS fails on an object that exists");
        assert!(err.contains("(MySQL error 1007)") || err.contains("(MySQL error 1396)"), "{err}");
        assert!(err.contains("appeared after the plan was read, so this deployment did not create it"), "{err}");
    }
    assert!(all_records(&env).await.is_empty(), "nothing was recorded as created");
    assert!(env.can_login(&name, "theirs").await, "their account is untouched");
    // The next plan offers to adopt what matches, visibly.
    let steps = plan(&w, &desired).await;
    assert_eq!(step(&steps, "mysql_database.d").change.action, Action::Adopt);
}

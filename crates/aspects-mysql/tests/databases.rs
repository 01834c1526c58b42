//! `mysql_database`: create, idempotency, charset drift, explicit collation, delete.

mod common;

use aspects_core::{Action, Value};
use common::*;

#[tokio::test]
async fn create_then_plan_is_empty_and_the_default_collation_is_filled() {
    let env = Env::new();
    let w = env.writer().await;
    let db = database("main", &env.name("db"));

    let steps = apply(&w, std::slice::from_ref(&db)).await;
    assert_eq!(actions(&steps), [("mysql_database.main".to_owned(), Action::Create)]);
    let normalised = step(&steps, "mysql_database.main").desired.as_ref().unwrap();
    assert_eq!(normalised.get("collation"), Some(&Value::from(env.default_collation("utf8mb4").await)));

    assert_converged(&w, std::slice::from_ref(&db)).await;
    assert_converged(&env.reader().await, std::slice::from_ref(&db)).await;
    let live = w.read(&kind("mysql_database"), std::slice::from_ref(normalised)).await.unwrap();
    let live = live[0].as_ref().expect("exists");
    assert!(live.owned);
    assert_eq!(live.attrs.get("charset"), Some(&Value::from("utf8mb4")));
    assert_eq!(env.records().await, [("mysql_database".to_owned(), "main".to_owned())]);
}

#[tokio::test]
async fn charset_drift_is_reported_and_fixed() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("drift");
    let db = database("d", &name);
    apply(&w, std::slice::from_ref(&db)).await;

    env.exec(&format!("ALTER DATABASE `{name}` CHARACTER SET latin1")).await;
    let utf8mb4_default = env.default_collation("utf8mb4").await;
    let steps = plan(&env.reader().await, std::slice::from_ref(&db)).await;
    let change = &step(&steps, "mysql_database.d").change;
    assert_eq!(change.action, Action::Update);
    let changed: Vec<_> = change.attrs.iter().map(|a| (a.name.as_str(), a.before.clone(), a.after.clone())).collect();
    assert_eq!(
        changed,
        [
            ("charset", Some(Value::from("latin1")), Some(Value::from("utf8mb4"))),
            ("collation", Some(Value::from("latin1_swedish_ci")), Some(Value::from(utf8mb4_default))),
        ]
    );

    apply(&w, std::slice::from_ref(&db)).await;
    assert_converged(&w, std::slice::from_ref(&db)).await;
}

#[tokio::test]
async fn explicit_collation_and_utf8_alias_converge() {
    let env = Env::new();
    let w = env.writer().await;
    let mut db = database("c", &env.name("coll"));
    db.attrs.insert("charset".into(), Value::from("UTF8MB4"));
    db.attrs.insert("collation".into(), Value::from("utf8mb4_unicode_ci"));
    apply(&w, std::slice::from_ref(&db)).await;
    assert_converged(&w, std::slice::from_ref(&db)).await;

    // A collation-only change is an in-place update.
    db.attrs.insert("collation".into(), Value::from("utf8mb4_bin"));
    let steps = apply(&w, std::slice::from_ref(&db)).await;
    assert_eq!(step(&steps, "mysql_database.c").change.action, Action::Update);
    assert_converged(&w, std::slice::from_ref(&db)).await;

    // `utf8` is what the server calls utf8mb3.
    let mut old = database("o", &env.name("old"));
    old.attrs.insert("charset".into(), Value::from("utf8"));
    apply(&w, std::slice::from_ref(&old)).await;
    assert_converged(&w, std::slice::from_ref(&old)).await;
}

#[tokio::test]
async fn removed_database_is_an_orphan_and_deleting_it_twice_is_fine() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("gone");
    apply(&w, &[database("g", &name)]).await;

    let steps = plan(&w, &[]).await;
    let orphan = step(&steps, "mysql_database.g");
    assert_eq!(orphan.change.action, Action::Delete);
    assert_eq!(orphan.change.reason.as_deref(), Some("not in the plan"));
    assert!(orphan.change.data_bearing);
    apply_steps(&*w, &steps).await;
    assert!(
        env.strings("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", &[&name])
            .await
            .is_empty()
    );
    assert!(env.records().await.is_empty());
    // Deleting what is already gone succeeds.
    apply_steps(&*w, &steps).await;
    assert!(plan(&w, &[]).await.is_empty());
}

//! Names with quotes, backticks, backslashes, spaces and LIKE wildcards reach the server intact,
//! read back equal, and are matched exactly (not as patterns, not case-insensitively).

mod common;

use aspects_core::{Action, Value};
use common::*;

#[tokio::test]
async fn awkward_names_round_trip_through_every_kind() {
    let env = Env::new();
    let w = env.writer().await;
    let db = env.name(r"we`ird 'db' \ 100%_x");
    let u = env.name(r"o'k `u` \ x");
    let host = r"h'o`st \ 1%";
    let quoted_db = format!("`{}`", db.replace('`', "``"));
    let desired = vec![
        database("db", &db),
        user("u", &u, host, "pw"),
        grant("db", &u, host, &format!("{quoted_db}.*"), &["SELECT", "INSERT"]),
    ];
    let steps = apply(&w, &desired).await;
    assert_eq!(actions(&steps).len(), 3);
    assert_eq!(
        env.strings("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", &[&db]).await,
        std::slice::from_ref(&db)
    );
    assert_eq!(env.strings("SELECT Host FROM mysql.user WHERE User = ?", &[&u]).await, [host]);
    assert_converged(&w, &desired).await;

    // The grant names exactly that database: `_` and `%` were escaped, and reading unescapes.
    let stored = env
        .strings(
            "SELECT TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
            &[&format!("'{u}'@'{host}'")],
        )
        .await;
    assert!(stored.iter().all(|s| s == &db), "{stored:?}");

    // Table level with a table name that needs quoting.
    env.exec(&format!("CREATE TABLE {quoted_db}.`t a``b` (x INT)")).await;
    let mut with_table = desired.clone();
    with_table.push(grant("t", &u, host, &format!("{quoted_db}.`t a``b`"), &["SELECT"]));
    apply(&w, &with_table).await;
    assert_converged(&w, &with_table).await;

    // Everything goes again when the plan is emptied.
    let steps = apply(&w, &[]).await;
    assert!(steps.iter().all(|s| s.change.action == Action::Delete), "{:?}", actions(&steps));
    assert_eq!(steps.len(), 4);
    assert!(env.strings("SELECT User FROM mysql.user WHERE User = ?", &[&u]).await.is_empty());
    assert!(env.records().await.is_empty());
}

#[tokio::test]
async fn grantee_strings_are_unescaped_and_matched_exactly() {
    let env = Env::new();
    let w = env.writer().await;
    let u = env.name("Case'q");
    let lower = u.to_lowercase();
    env.exec(&format!("CREATE USER '{}'@'%'", lower.replace('\'', "''"))).await;
    env.exec(&format!("GRANT SELECT ON x.* TO '{}'@'%'", lower.replace('\'', "''"))).await;
    // MariaDB spells GRANTEE without escaping the quote inside.
    let grantee = env
        .strings(
            "SELECT DISTINCT GRANTEE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE LIKE ?",
            &[&format!("'{}%", env.prefix)],
        )
        .await;
    assert_eq!(grantee, [format!("'{lower}'@'%'")]);

    // A user differing only in case is another account: its grants are not ours.
    let desired = vec![user("u", &u, "%", "pw"), grant("g", &u, "%", "x.*", &["SELECT"])];
    let steps = plan(&w, &desired).await;
    assert_eq!(step(&steps, "mysql_grant.g").change.action, Action::Create);
    assert_eq!(step(&steps, "mysql_user.u").change.action, Action::Create);
    apply_steps(&*w, &steps).await;
    assert_converged(&w, &desired).await;
    let k = kind("mysql_grant");
    let mut g = grant("g", &lower, "%", "x.*", &["SELECT"]);
    w.normalise(&k, &mut g);
    let live = w.read(&k, &[g]).await.unwrap();
    assert_eq!(live[0].as_ref().map(|l| l.owned), Some(false), "the lowercase twin is not owned");
    assert_eq!(live[0].as_ref().unwrap().attrs.get("user"), Some(&Value::from(lower.as_str())));
}

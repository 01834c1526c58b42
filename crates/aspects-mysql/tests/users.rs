//! `mysql_user`: create, password verification without reading it back, drift, adoption, moved
//! identity, recovery from a crash between the ownership record and the create.

mod common;

use aspects_core::{Action, Secret, Value, Verification};
use common::*;

#[tokio::test]
async fn create_verify_and_password_drift() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("app");
    let u = user("app", &name, "%", "first-Pw-1");

    let steps = apply(&w, std::slice::from_ref(&u)).await;
    assert_eq!(actions(&steps), [("mysql_user.app".to_owned(), Action::Create)]);
    assert!(env.can_login(&name, "first-Pw-1").await);
    assert_converged(&w, std::slice::from_ref(&u)).await;
    let live = w.read(&kind("mysql_user"), std::slice::from_ref(&u)).await.unwrap();
    let live = live[0].as_ref().unwrap();
    assert_eq!(live.verified.get("password"), Some(&Verification::Matches));
    assert!(!live.attrs.contains_key("password"), "a write-only attribute is never read back");
    if !env.mariadb().await {
        // MySQL's default plugin, set from the hash computed here with a fresh salt.
        assert_eq!(live.attrs["plugin"], Value::from("caching_sha2_password"));
        let stored = env.strings("SELECT authentication_string FROM mysql.user WHERE User = ?", &[&name]).await;
        assert!(stored[0].starts_with("$A$"), "{stored:?}");
    }

    // Someone changes the password by hand: the plan sees it without reading it.
    env.exec(&format!("ALTER USER '{name}'@'%' IDENTIFIED BY 'changed'")).await;
    let steps = plan(&env.reader().await, std::slice::from_ref(&u)).await;
    let change = &step(&steps, "mysql_user.app").change;
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.attrs.len(), 1);
    assert!(change.attrs[0].sensitive && change.attrs[0].before.is_none());

    apply(&w, std::slice::from_ref(&u)).await;
    assert!(env.can_login(&name, "first-Pw-1").await);
    assert!(!env.can_login(&name, "changed").await);
    assert_converged(&w, std::slice::from_ref(&u)).await;

    // Rotation: a new secret value is an update, and the old password stops working.
    let rotated = user("app", &name, "%", "second-Pw-2");
    let steps = apply(&w, std::slice::from_ref(&rotated)).await;
    assert_eq!(step(&steps, "mysql_user.app").change.action, Action::Update);
    assert!(env.can_login(&name, "second-Pw-2").await);
    assert!(!env.can_login(&name, "first-Pw-1").await);
}

#[tokio::test]
async fn a_unix_socket_account_shows_its_plugin_changing_and_gets_a_password() {
    let env = Env::new();
    if !env.mariadb().await {
        return eprintln!("skipped: `IDENTIFIED VIA unix_socket` is MariaDB's syntax");
    }
    let w = env.writer().await;
    let name = env.name("sock");
    // A unix_socket account has no password at all: it certainly does not match one.
    env.exec(&format!("CREATE USER '{name}'@'%' IDENTIFIED VIA unix_socket")).await;
    let u = user("sock", &name, "%", "pw");
    let live = w.read(&kind("mysql_user"), std::slice::from_ref(&u)).await.unwrap();
    assert_eq!(
        live[0].as_ref().unwrap().verified.get("password"),
        Some(&Verification::Differs),
        "a unix_socket account cannot match a password"
    );
    let steps = plan(&w, std::slice::from_ref(&u)).await;
    let plugin = step(&steps, "mysql_user.sock").change.attrs.iter().find(|a| a.name == "plugin").unwrap();
    assert_eq!(plugin.before, Some(Value::from("unix_socket")));
    assert_eq!(plugin.after, Some(Value::from("mysql_native_password")));
    // Applying sets a native password, after which the hash comparison applies.
    apply_steps(&*w, &steps).await;
    assert!(env.can_login(&name, "pw").await);
    assert_converged(&w, std::slice::from_ref(&u)).await;
}

/// Loads MariaDB's ed25519 plugin if it is not active (idempotent; the plugin ships with the server).
async fn ed25519(env: &Env) {
    let active =
        env.strings("SELECT PLUGIN_NAME FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'", &[]).await;
    if active.is_empty() {
        env.exec("INSTALL SONAME 'auth_ed25519'").await;
    }
}

#[tokio::test]
async fn passwords_are_verified_without_logging_in_whatever_the_host_or_plugin() {
    let env = Env::new();
    if !env.mariadb().await {
        // MySQL's forms are checked against MySQL's own published hashes in `password.rs`.
        return eprintln!("skipped: ed25519 and mysql_old_password accounts are MariaDB's");
    }
    // Loaded before connecting: the provider learns the active plugins at connect time.
    ed25519(&env).await;
    let w = env.writer().await;
    // Hosts this machine cannot log in from: a login probe would be refused and read "differs".
    let (native, ed) = (env.name("native"), env.name("ed"));
    env.exec(&format!("CREATE USER '{native}'@'10.255.255.1' IDENTIFIED BY 'pw-1'")).await;
    env.exec(&format!("CREATE USER '{ed}'@'10.255.255.1' IDENTIFIED VIA ed25519 USING PASSWORD('pw-2')")).await;
    let mut ed_user = user("ed", &ed, "10.255.255.1", "pw-2");
    ed_user.attrs.insert("plugin".into(), Value::from("ed25519"));
    let desired = vec![user("native", &native, "10.255.255.1", "pw-1"), ed_user.clone()];
    let steps = plan(&w, &desired).await;
    assert_eq!(
        actions(&steps),
        [("mysql_user.ed".to_owned(), Action::Adopt), ("mysql_user.native".to_owned(), Action::Adopt)],
        "both passwords match, although neither account can log in from here"
    );
    let live = w.read(&kind("mysql_user"), std::slice::from_ref(&ed_user)).await.unwrap();
    assert_eq!(live[0].as_ref().unwrap().verified["password"], Verification::Matches);
    ed_user.attrs.insert("password".into(), Value::Sensitive(Secret::new("pw-3")));
    let live = w.read(&kind("mysql_user"), std::slice::from_ref(&ed_user)).await.unwrap();
    assert_eq!(live[0].as_ref().unwrap().verified["password"], Verification::Differs);

    // aspects sets an ed25519 password from the locally computed key: the server agrees with it.
    apply(&w, std::slice::from_ref(&ed_user)).await;
    let witness = env.name("witness");
    env.exec(&format!("CREATE USER '{witness}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('pw-3')")).await;
    let stored = "SELECT authentication_string FROM mysql.user WHERE User = ?";
    assert_eq!(env.strings(stored, &[&ed]).await, env.strings(stored, &[&witness]).await);
    assert_converged(&w, std::slice::from_ref(&ed_user)).await;

    // A plugin whose stored form cannot be recomputed is unknown, with the reason, never probed.
    let old = env.name("old");
    env.exec(&format!("CREATE USER '{old}'@'%' IDENTIFIED VIA mysql_old_password USING '7d4bd5b6434f3b4b'")).await;
    let live = w.read(&kind("mysql_user"), &[user("old", &old, "%", "pw")]).await.unwrap();
    let Verification::Unknown(why) = &live[0].as_ref().unwrap().verified["password"] else { panic!("{live:?}") };
    assert!(why.contains("mysql_old_password") && why.contains("never logs in"), "{why}");
}

#[tokio::test]
async fn an_existing_unowned_user_is_adopted() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("legacy");
    env.exec(&format!("CREATE USER '{name}'@'%' IDENTIFIED BY 'same-pw'")).await;
    let u = user("legacy", &name, "%", "same-pw");

    let steps = plan(&w, std::slice::from_ref(&u)).await;
    let change = &step(&steps, "mysql_user.legacy").change;
    assert_eq!(change.action, Action::Adopt);
    assert!(change.adopt);
    // Before adoption it is not ours: it is never an orphan.
    assert!(plan(&w, &[]).await.is_empty());

    apply_steps(&*w, &steps).await;
    assert_eq!(env.records().await, [("mysql_user".to_owned(), "legacy".to_owned())]);
    assert_converged(&w, std::slice::from_ref(&u)).await;

    // Adopted with a different password: update and adopt in one apply.
    let other = env.name("legacy2");
    env.exec(&format!("CREATE USER '{other}'@'%' IDENTIFIED BY 'old'")).await;
    let u2 = user("legacy2", &other, "%", "new");
    let steps = apply(&w, &[u.clone(), u2.clone()]).await;
    let change = &step(&steps, "mysql_user.legacy2").change;
    assert_eq!((change.action, change.adopt), (Action::Update, true));
    assert!(env.can_login(&other, "new").await);
    assert_converged(&w, &[u, u2]).await;
}

#[tokio::test]
async fn moving_the_host_replaces_the_account() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("mover");
    apply(&w, &[user("m", &name, "LocalHost", "pw")]).await;
    assert_eq!(env.strings("SELECT Host FROM mysql.user WHERE User = ?", &[&name]).await, ["localhost"]);

    let moved = user("m", &name, "%", "pw");
    let steps = plan(&w, std::slice::from_ref(&moved)).await;
    let change = &step(&steps, "mysql_user.m").change;
    assert_eq!(change.action, Action::Replace);
    let old = change.old_identity.as_ref().expect("old identity");
    assert_eq!(old.get("host"), Some(&Value::from("localhost")));
    assert_eq!(actions(&steps).len(), 1, "the old account is replaced, not deleted separately");

    apply_steps(&*w, &steps).await;
    assert_eq!(env.strings("SELECT Host FROM mysql.user WHERE User = ?", &[&name]).await, ["%"]);
    assert_eq!(env.records().await, [("mysql_user".to_owned(), "m".to_owned())]);
    assert_converged(&w, &[moved]).await;
}

#[tokio::test]
async fn replace_without_a_moved_identity_is_delete_then_create() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("again");
    let u = user("a", &name, "%", "pw1");
    apply(&w, std::slice::from_ref(&u)).await;

    let mut steps = plan(&w, std::slice::from_ref(&user("a", &name, "%", "pw2"))).await;
    steps[0].change.action = Action::Replace;
    apply_steps(&*w, &steps).await;
    assert!(env.can_login(&name, "pw2").await);
    assert_eq!(env.records().await.len(), 1);
}

#[tokio::test]
async fn a_crash_between_record_and_create_converges() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("crash");
    let u = user("c", &name, "%", "pw");
    apply(&w, std::slice::from_ref(&u)).await;
    // The state a kill -9 right after recording ownership leaves: a record, no object.
    env.exec(&format!("DROP USER '{name}'@'%'")).await;
    assert_eq!(env.records().await.len(), 1);

    let steps = plan(&w, std::slice::from_ref(&u)).await;
    assert_eq!(actions(&steps), [("mysql_user.c".to_owned(), Action::Create)]);
    apply_steps(&*w, &steps).await;
    assert!(env.can_login(&name, "pw").await);
    assert_converged(&w, &[u]).await;

    // And when the plan no longer wants it, a record whose object is gone is no change at all:
    // the plan is empty and the record is pruned.
    env.exec(&format!("DROP USER '{name}'@'%'")).await;
    assert!(actions(&plan(&w, &[]).await).is_empty());
    assert_eq!(w.prune(&[]).await.unwrap(), 1);
    assert!(env.records().await.is_empty());
}

#[tokio::test]
async fn passwords_with_quotes_and_backslashes_round_trip() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("q");
    let pw = r#"it's a \ "tricky" pw`;--"#;
    let u = res(
        "mysql_user",
        "q",
        &[("user", Value::from(name.as_str())), ("password", Value::Sensitive(Secret::new(pw)))],
    );
    apply(&w, std::slice::from_ref(&u)).await;
    assert!(env.can_login(&name, pw).await);
    assert_converged(&w, &[u]).await;
}

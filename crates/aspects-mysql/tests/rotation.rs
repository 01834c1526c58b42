//! The rotation seam (`aspects rotate`): on MySQL 8.0.14+ a `mysql_user` keeps its old password
//! beside the new one until the rotation discards it; MariaDB holds one password per account, so
//! the new one replaces the old at once.

mod common;

use aspects_core::{Action, Value};
use aspects_engine::provider::SecretRotation;
use common::*;

#[tokio::test]
async fn a_rotation_keeps_the_old_password_exactly_where_the_server_can() {
    let env = Env::new();
    let w = env.writer().await;
    let name = env.name("rot");
    let k = kind("mysql_user");
    apply(&w, &[user("rot", &name, "%", "old-Pw-1")]).await;
    let dual = env.dual_passwords().await;
    assert_eq!(w.secret_rotation(&k), if dual { SecretRotation::Dual } else { SecretRotation::Replace });

    let new = user("rot", &name, "%", "new-Pw-2");
    let steps = plan(&w, std::slice::from_ref(&new)).await;
    let s = step(&steps, "mysql_user.rot");
    assert_eq!(s.change.action, Action::Update);
    w.apply_keeping_old_secret(&k, &s.change, s.desired.as_ref().unwrap()).await.unwrap();
    assert!(env.can_login(&name, "new-Pw-2").await);
    assert_eq!(env.can_login(&name, "old-Pw-1").await, dual, "the old password works on, exactly with dual passwords");

    if dual {
        // Until the rotation ends, the retained password is drift the plan shows.
        let steps = plan(&w, std::slice::from_ref(&new)).await;
        let change = &step(&steps, "mysql_user.rot").change;
        let kept = change.attrs.iter().find(|a| a.name == "old_password_accepted").expect("drift shown");
        assert_eq!((&kept.before, &kept.after), (&Some(Value::Bool(true)), &Some(Value::Bool(false))));
    }
    let desired = plan(&w, std::slice::from_ref(&new)).await;
    let desired = step(&desired, "mysql_user.rot").desired.clone().unwrap();
    w.discard_old_secret(&k, &desired).await.unwrap();
    assert!(!env.can_login(&name, "old-Pw-1").await);
    assert!(env.can_login(&name, "new-Pw-2").await);
    assert_converged(&w, std::slice::from_ref(&new)).await;
    // Discarding again (a re-run after a crash) is harmless.
    w.discard_old_secret(&k, &desired).await.unwrap();

    if dual {
        // A retained password left behind (a rotation made by hand) is drift, and apply
        // discards it.
        env.exec(&format!(
            "ALTER USER '{name}'@'%' IDENTIFIED BY 'hand-Pw-3'; \
             ALTER USER '{name}'@'%' IDENTIFIED BY 'new-Pw-2' RETAIN CURRENT PASSWORD"
        ))
        .await;
        assert!(env.can_login(&name, "hand-Pw-3").await);
        let steps = apply(&w, std::slice::from_ref(&new)).await;
        assert_eq!(actions(&steps), [("mysql_user.rot".to_owned(), Action::Update)]);
        assert!(!env.can_login(&name, "hand-Pw-3").await);
        assert!(env.can_login(&name, "new-Pw-2").await);
        assert_converged(&w, std::slice::from_ref(&new)).await;
    }
}

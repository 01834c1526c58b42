//! Connecting: errors say what is wrong and what to do; a read handle creates nothing.

mod common;

use aspects_core::Value;
use aspects_engine::provider::{Connector, ProviderError};
use aspects_mysql::MySql;
use common::*;

async fn read_error(env: &Env, attrs: &[(&str, Value)]) -> ProviderError {
    let mut config = env.config();
    for (k, v) in attrs {
        config.attrs.insert(k.to_string(), v.clone());
    }
    match MySql.connect_read(&config, &env.deployment).await {
        Ok(_) => panic!("connecting with {attrs:?} should fail"),
        Err(e) => e,
    }
}

async fn write_error(env: &Env, attrs: &[(&str, Value)]) -> ProviderError {
    let mut config = env.config();
    for (k, v) in attrs {
        config.attrs.insert(k.to_string(), v.clone());
    }
    match MySql.connect_write(&config, &env.deployment).await {
        Ok(_) => panic!("connecting with {attrs:?} should fail"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn an_unreachable_server_says_so_with_a_hint() {
    let env = Env::new();
    let e = read_error(&env, &[("url", Value::from("mysql://root@127.0.0.1:1"))]).await;
    assert!(e.message.starts_with("cannot reach MySQL at mysql://127.0.0.1:1"), "{e}");
    assert_eq!(e.hint.as_deref(), Some("is the server running? check `url` in [providers.mysql]"));
}

#[tokio::test]
async fn a_url_with_a_password_is_refused() {
    let env = Env::new();
    let e = read_error(&env, &[("url", Value::from(format!("mysql://root:hunter2@{}", env.address())))]).await;
    assert!(e.message.contains("never in the URL"), "{e}");
    assert!(!e.message.contains("hunter2"));
}

#[tokio::test]
async fn a_wrong_login_points_at_the_password_secret() {
    let env = Env::new();
    let ghost = env.name("nobody");
    let e = read_error(&env, &[("url", Value::from(format!("mysql://{ghost}@{}", env.address())))]).await;
    assert!(e.message.contains(&format!("refused the login of the provider user '{ghost}'")), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("`password`"), "{:?}", e.hint);
}

#[tokio::test]
async fn a_provider_user_without_privileges_is_told_which() {
    let env = Env::new();
    let weak = env.name("weak");
    env.exec(&format!("CREATE USER '{weak}'@'%' IDENTIFIED BY 'weak-pw'")).await;
    let attrs = [
        ("url", Value::from(format!("mysql://{weak}@{}", env.address()))),
        ("password", Value::Sensitive(aspects_core::Secret::new("weak-pw"))),
    ];
    let e = write_error(&env, &attrs).await;
    assert!(e.message.contains(&format!("the provider user '{weak}' lacks a privilege")), "{e}");
    assert!(e.message.contains("creating the meta database"), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("CREATE USER"), "{:?}", e.hint);
}

#[tokio::test]
async fn a_read_handle_creates_nothing_and_sees_no_records() {
    let env = Env::new();
    let r = env.reader().await;
    assert!(r.orphans(&[]).await.unwrap().is_empty());
    let name = env.name("adopt_me");
    env.exec(&format!("CREATE DATABASE `{name}`")).await;
    let mut db = database("d", &name);
    r.normalise(&kind("mysql_database"), &mut db);
    let live = r.read(&kind("mysql_database"), &[db]).await.unwrap();
    assert_eq!(live[0].as_ref().map(|l| l.owned), Some(false));
    let meta =
        env.strings("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", &[&env.meta]).await;
    assert!(meta.is_empty(), "plan must not create the meta database");
    assert_eq!(r.target(), format!("mysql://{}", env.address()));
    assert_eq!(r.max_concurrency(), 4);
}

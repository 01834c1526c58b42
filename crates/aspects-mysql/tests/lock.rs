//! The deployment lock: contention names the holder and its age (and says it is waiting),
//! release frees it, a holder whose connection dies (a killed process, or `KILL` on the server)
//! frees it at once and is never reported as holding, and a guard knows when its lock is gone.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

fn quiet(_: String) {}

/// The server connection holding this test deployment's lock.
async fn holder_connection(env: &Env) -> String {
    let name = format!("aspects:{}", env.deployment);
    env.strings("SELECT CAST(IS_USED_LOCK(?) AS CHAR)", &[&name]).await.pop().expect("the lock is held")
}

#[tokio::test]
async fn contention_names_holder_and_age_says_it_waits_and_a_dropped_holder_frees_the_lock() {
    let env = Env::new();
    let a = env.writer().await;
    let b = env.writer().await;

    let held = a.lock("alice@box pid 1 (aspects)", Duration::from_secs(1), &quiet).await.expect("first lock");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let heard = Mutex::new(Vec::new());
    let started = Instant::now();
    let err = match b.lock("bob@box pid 2 (aspects)", Duration::from_secs(1), &|m| heard.lock().unwrap().push(m)).await
    {
        Ok(_) => panic!("the lock is held"),
        Err(e) => e,
    };
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for the timeout");
    assert!(err.locked);
    assert!(err.message.starts_with(&format!("deployment '{}' on mysql://", env.deployment)), "{}", err.message);
    assert!(err.message.contains("is locked by alice@box pid 1 (aspects) for "), "{}", err.message);
    let age: u64 = err.message.split(" for ").nth(1).unwrap().split('s').next().unwrap().parse().unwrap();
    assert!((1..60).contains(&age), "{}", err.message);
    assert!(err.message.contains(&format!("(connection {})", holder_connection(&env).await)), "{}", err.message);
    assert!(err.hint.as_deref().unwrap().contains("--lock-timeout"));
    let heard = heard.into_inner().unwrap();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(heard[0].contains("is locked by alice@box pid 1 (aspects)"), "{heard:?}");
    assert!(heard[0].contains("waiting up to 1s"), "{heard:?}");

    // A released lock can be taken again at once.
    held.release().await;
    let held = b.lock("bob", Duration::ZERO, &quiet).await.expect("free after release");

    // A holder that dies without releasing (kill -9): the server drops its connection's lock.
    drop(held);
    let again = a.lock("alice again", Duration::from_secs(5), &quiet).await.expect("free after the holder died");
    again.release().await;
}

#[tokio::test]
async fn a_killed_holder_is_never_reported_and_its_guard_knows_the_lock_is_gone() {
    let env = Env::new();
    let (a, b) = (env.writer().await, env.writer().await);
    // Right after a KILL the server may still be tearing the holder down: the next run must take
    // the lock anyway, without waiting flags, and never name the dead holder.
    for round in 0..10 {
        let held = a.lock("doomed", Duration::ZERO, &quiet).await.expect("lock");
        held.check().await.expect("held while its connection lives");
        env.exec(&format!("KILL {}", holder_connection(&env).await)).await;
        let err = held.check().await.expect_err("the lock's connection was killed");
        assert!(err.message.contains("is gone") || err.message.contains("no longer held"), "{}", err.message);
        let next = b.lock("next", Duration::ZERO, &quiet).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        let err = held.check().await.expect_err("someone else holds it now");
        assert!(!err.message.is_empty());
        next.release().await;
        held.release().await;
    }
}

#[tokio::test]
async fn a_holder_row_is_believed_only_for_the_connection_that_holds_the_lock() {
    let env = Env::new();
    let w = env.writer().await;
    let name = format!("aspects:{}", env.deployment);
    // Some session other than an apply holds the lock; a row left by an earlier holder names
    // someone long gone.
    let mut other = env.root().await;
    sqlx::query("SELECT GET_LOCK(?, 0)").bind(&name).execute(&mut other).await.unwrap();
    env.exec(&format!(
        "INSERT INTO `{}`.locks (name, holder, connection_id) VALUES ('{name}', 'ghost@gone pid 1', 1)",
        env.meta
    ))
    .await;
    let err = match w.lock("me", Duration::ZERO, &quiet).await {
        Ok(_) => panic!("the lock is held"),
        Err(e) => e,
    };
    let id = holder_connection(&env).await;
    assert!(err.message.contains(&format!("is locked by another session (connection {id})")), "{}", err.message);
    assert!(!err.message.contains("ghost"), "{}", err.message);
}

#[tokio::test]
async fn other_deployments_are_not_blocked() {
    let (one, two) = (Env::new(), Env::new());
    let held = one.writer().await.lock("one", Duration::ZERO, &quiet).await.unwrap();
    let second =
        two.writer().await.lock("two", Duration::ZERO, &quiet).await.expect("a different deployment has its own lock");
    second.release().await;
    held.release().await;
}

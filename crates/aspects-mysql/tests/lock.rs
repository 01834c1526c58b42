//! The deployment lock: contention names the holder and its age, release frees it, and a holder
//! whose connection dies (a killed process) frees it too.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn contention_names_holder_and_age_and_a_dropped_holder_frees_the_lock() {
    let env = Env::new();
    let a = env.writer().await;
    let b = env.writer().await;

    let held = a.lock("alice@box pid 1 (aspects apply)", Duration::from_secs(1)).await.expect("first lock");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let err = match b.lock("bob@box pid 2 (aspects apply)", Duration::from_secs(1)).await {
        Ok(_) => panic!("the lock is held"),
        Err(e) => e,
    };
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for the timeout");
    assert!(err.locked);
    assert!(err.message.starts_with(&format!("deployment '{}' on mysql://", env.deployment)), "{}", err.message);
    assert!(err.message.contains("is locked by alice@box pid 1 (aspects apply) for "), "{}", err.message);
    let age: u64 = err.message.split(" for ").nth(1).unwrap().split('s').next().unwrap().parse().unwrap();
    assert!((1..60).contains(&age), "{}", err.message);
    assert!(err.hint.as_deref().unwrap().contains("--lock-timeout"));

    // A released lock can be taken again at once.
    held.release().await;
    let held = b.lock("bob", Duration::ZERO).await.expect("free after release");

    // A holder that dies without releasing (kill -9): the server drops its connection's lock.
    drop(held);
    let again = a.lock("alice again", Duration::from_secs(5)).await.expect("free after the holder died");
    again.release().await;
}

#[tokio::test]
async fn other_deployments_are_not_blocked() {
    let (one, two) = (Env::new(), Env::new());
    let held = one.writer().await.lock("one", Duration::ZERO).await.unwrap();
    let second = two.writer().await.lock("two", Duration::ZERO).await.expect("a different deployment has its own lock");
    second.release().await;
    held.release().await;
}

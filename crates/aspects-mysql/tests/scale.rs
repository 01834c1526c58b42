//! Reads cost a constant number of statements whatever the number of resources.

mod common;

use aspects_core::Resource;
use aspects_engine::provider::ProviderRead;
use common::*;

/// Statements one `read` of `desired` issues.
async fn read_cost(h: &dyn ProviderRead, kind_name: &str, desired: &[Resource]) -> u64 {
    let k = kind(kind_name);
    let mut desired = desired.to_vec();
    for r in &mut desired {
        h.normalise(&k, r);
    }
    let before = h.queries();
    let live = h.read(&k, &desired).await.unwrap();
    assert!(live.iter().all(Option::is_some), "{kind_name}: every object exists");
    h.queries() - before
}

#[tokio::test]
async fn reading_1_or_200_objects_costs_the_same() {
    let env = Env::new();
    let w = env.writer().await;
    let users: Vec<Resource> =
        (0..200).map(|i| user(&format!("u{i}"), &env.name(&format!("u{i}")), "%", "pw")).collect();
    let grants: Vec<Resource> = (0..200)
        .map(|i| {
            grant(
                &format!("g{i}"),
                &env.name(&format!("u{i}")),
                "%",
                &format!("{}.*", env.name(&format!("d{i}"))),
                &["SELECT"],
            )
        })
        .collect();
    let dbs: Vec<Resource> = (0..200).map(|i| database(&format!("d{i}"), &env.name(&format!("d{i}")))).collect();
    let all: Vec<Resource> = dbs.iter().chain(&users).chain(&grants).cloned().collect();
    apply(&w, &all).await;

    let r = env.reader().await;
    for (kind_name, list) in [("mysql_database", &dbs), ("mysql_user", &users), ("mysql_grant", &grants)] {
        let one = read_cost(&*r, kind_name, &list[..1]).await;
        let many = read_cost(&*r, kind_name, list).await;
        assert_eq!(one, many, "{kind_name}: 1 vs 200");
        // One read of the objects plus one of the ownership records.
        assert_eq!(one, 2, "{kind_name}");
    }

    let before = r.queries();
    let mut desired = all.clone();
    for d in &mut desired {
        r.normalise(&kind(&d.address.kind), d);
    }
    assert!(r.orphans(&desired).await.unwrap().is_empty());
    let with_all = r.queries() - before;
    let before = r.queries();
    let orphans = r.orphans(&desired[..1]).await.unwrap();
    assert_eq!(orphans.len(), 599);
    let with_one = r.queries() - before;
    // Records, databases, accounts, privileges, roles and other extras, who owns grants.
    assert!(with_all <= 6 && with_one <= 6, "orphans: {with_all} and {with_one} statements");
}

//! Cluster mode (`[providers.clickhouse] cluster`): every DDL statement the provider sends carries
//! `ON CLUSTER`, and MergeTree-family engines become `Replicated*` as Aspects' migrations write
//! them. The stack's engine has no cluster (no Keeper), so the statements cannot run here; each is
//! snapshotted and judged by the real parser (`formatQueryOrNull`), and a plan of the reference
//! plan in cluster mode is made against the stack (the provider canonicalises every desired
//! CREATE with the server at plan time).

use std::collections::BTreeMap;

use aspects_clickhouse::ddl;
use aspects_core::Value;
use aspects_e2e::clickhouse::query;

fn attrs(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|i| Value::from(*i)).collect())
}

/// Every kind of statement, for a cluster named `aspects` (Tutor's CLICKHOUSE_CLUSTER_NAME).
fn statements() -> Vec<String> {
    let on = ddl::on_cluster(Some("aspects"));
    let xapi = attrs(&[
        ("database", "xapi".into()),
        ("name", "xapi_events_all".into()),
        ("columns", list(&["event_id UUID", "emission_time DateTime64(6)", "event String"])),
        ("engine", "ReplacingMergeTree".into()),
        ("partition_by", "toYYYYMM(emission_time)".into()),
        ("primary_key", "(emission_time, event_id)".into()),
        ("order_by", "(emission_time, event_id)".into()),
    ]);
    let versioned = attrs(&[
        ("database", "xapi".into()),
        ("name", "alembic_version".into()),
        ("columns", list(&["version_num String", "dt DateTime DEFAULT now()"])),
        ("engine", "ReplacingMergeTree(dt)".into()),
        ("order_by", "tuple()".into()),
        ("ttl", "dt + INTERVAL 1 YEAR".into()),
        ("settings", Value::Map([("index_granularity".to_owned(), Value::Int(4096))].into())),
    ]);
    let plain = attrs(&[
        ("database", "openedx".into()),
        ("name", "_tracking".into()),
        ("columns", list(&["time DateTime", "message String"])),
        ("engine", "MergeTree".into()),
        ("order_by", "time".into()),
    ]);
    let memory = attrs(&[
        ("database", "reporting".into()),
        ("name", "scratch".into()),
        ("columns", list(&["a UInt8"])),
        ("engine", "Memory".into()),
    ]);
    let function = attrs(&[
        ("name", "get_org_from_course_url".into()),
        ("lambda", Value::Sql("(course_url) -> nullIf(EXTRACT(course_url, 'course-v1:([a-zA-Z0-9]*)'), '')".into())),
    ]);
    vec![
        ddl::create_database("xapi", "Atomic", &on),
        ddl::create_table(&xapi, &on),
        ddl::create_table(&versioned, &on),
        ddl::create_table(&plain, &on),
        ddl::create_table(&memory, &on),
        ddl::alter_table("xapi", "xapi_events_all", &on, "ADD COLUMN `n` UInt8 AFTER `event`"),
        ddl::alter_table("xapi", "xapi_events_all", &on, "MODIFY COLUMN `event` LowCardinality(String)"),
        ddl::alter_table("xapi", "alembic_version", &on, "MODIFY TTL dt + toIntervalYear(2)"),
        ddl::alter_table("xapi", "alembic_version", &on, "REMOVE TTL"),
        ddl::alter_table("xapi", "alembic_version", &on, "MODIFY SETTING index_granularity = 1024"),
        ddl::alter_table("xapi", "alembic_version", &on, "RESET SETTING index_granularity"),
        ddl::create_function(&function, &on, false),
        ddl::create_function(&function, &on, true),
        ddl::drop_function("get_org_from_course_url", &on),
        ddl::drop_table("xapi", "xapi_events_all", &on),
        ddl::drop_database("xapi", &on),
        ddl::meta_database("aspects_meta", &on),
        ddl::owned_table("aspects_meta", &on),
        // The lock is one node's: never ON CLUSTER.
        ddl::lock_generation("aspects_meta", "lock_7", "alice@host pid 42 (deployment 'aspects')"),
        ddl::drop_lock_generation("aspects_meta", "lock_6"),
    ]
}

#[test]
fn every_cluster_statement_carries_on_cluster_replicated_engines_and_passes_the_real_parser() {
    let all = statements();
    insta::assert_snapshot!("cluster_statements", all.join("\n"));
    for sql in &all {
        let literal = format!("'{}'", sql.replace('\\', "\\\\").replace('\'', "\\'"));
        let formatted = query(&format!("SELECT formatQuerySingleLineOrNull({literal}) FORMAT JSONEachRow")).unwrap();
        let row: serde_json::Value = serde_json::from_str(formatted.trim()).unwrap();
        let text = row.as_object().and_then(|o| o.values().next()).and_then(|v| v.as_str());
        let text = text.unwrap_or_else(|| panic!("the parser refuses: {sql}"));
        // The parser kept the clause where the statement has it (not swallowed into an expression).
        assert_eq!(text.contains("ON CLUSTER aspects"), sql.contains("ON CLUSTER `aspects`"), "{sql}\n{text}");
    }
}

//! No-op plan benchmark: N MySQL resources (databases, users, grants in equal parts) are applied
//! once, then planned repeatedly in this process. Prints the median time and the queries issued;
//! fails when the query count grows with N (N = 1000 under 300 ms is reported). Then ClickHouse
//! ([`crate::bench_clickhouse`]: the reference plan's layer, and N synthetic tables), Superset's
//! assets ([`crate::bench_superset`]: the Aspects bundle, against Superset's own importer) and the
//! loading side ([`crate::loading`]). Ratios within one run are what to compare: machines are
//! shared and noisy.

use std::fmt::Write;
use std::time::{Duration, Instant};

use aspects_config::{LoadOptions, Loaded, SecretValues, SourceFile, load_sources};
use aspects_core::{Redactor, Registry};
use aspects_engine::Connector;
use aspects_engine::apply::{ApplyOptions, Writers, apply};
use aspects_engine::plan::{Goal, Readers, plan};

const SIZES: [usize; 3] = [10, 100, 1000];
const RUNS: usize = 7;
const TARGET_MS: f64 = 300.0;

/// One part of the benchmark, for `cargo xtask bench PART`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The MySQL provider's no-op plan, in process.
    Mysql,
    /// The ClickHouse provider's no-op plans, in process.
    Clickhouse,
    /// The Aspects asset bundle against Superset's own importer, in process.
    Superset,
    /// validate and no-op plan of the release binary at N = 1,000 / 3,000 / 9,000.
    Loading,
}

pub fn run(part: Option<Part>) -> Result<(), String> {
    let url = std::env::var("ASPECTS_STACK_MYSQL_URL")
        .map_err(|_| "ASPECTS_STACK_MYSQL_URL is not set; run `cargo xtask bench`")?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let runs = |p: Part| part.is_none_or(|only| only == p);
    let mysql = !runs(Part::Mysql) || mysql_noop(&rt, &url)?;
    let clickhouse = !runs(Part::Clickhouse) || crate::bench_clickhouse::run(&rt, &url)?;
    let superset = !runs(Part::Superset) || crate::bench_superset::run(&rt)?;
    let loading = !runs(Part::Loading) || crate::loading::run(&url)?;
    if mysql && clickhouse && superset && loading {
        Ok(())
    } else {
        Err("benchmark limits exceeded (see NO / TOO SLOW above)".into())
    }
}

/// The MySQL part; `Ok(false)` when the query count grows with N.
fn mysql_noop(rt: &tokio::runtime::Runtime, url: &str) -> Result<bool, String> {
    let registry = Registry::default().with(aspects_mysql::schema());
    let mut rows = Vec::new();
    for n in SIZES {
        rows.push(rt.block_on(measure(n, url, &registry))?);
    }
    println!("\nno-op plan, MySQL provider (median of {RUNS} runs, connect included)");
    println!("{:>6} {:>10} {:>9} {:>12}", "N", "ms", "queries", "ms / ms(10)");
    let base = rows[0].1;
    for (n, ms, q) in &rows {
        println!("{n:>6} {ms:>10.1} {q:>9} {:>12.2}", ms / base);
    }
    let queries_flat = rows.iter().all(|r| r.2 == rows[0].2);
    let fast = rows.last().is_some_and(|r| r.1 < TARGET_MS);
    println!("\nquery count independent of N: {}", if queries_flat { "yes" } else { "NO" });
    println!("N = 1000 under {TARGET_MS} ms: {}", if fast { "yes" } else { "NO" });
    Ok(queries_flat)
}

pub fn plan_text(n: usize, url: &str) -> String {
    let mut s = format!(
        "[deployment]\nname = \"bench{n}\"\n\n[secrets]\npw = {{ generate = 24 }}\n\n[providers.mysql]\nurl = \"{url}\"\n\n"
    );
    for i in 0..n {
        let k = i / 3;
        let _ = match i % 3 {
            0 => writeln!(s, "[mysql_database.d{k}]\nname = \"bench{n}_d{k}\"\n"),
            1 => writeln!(s, "[mysql_user.u{k}]\nuser = \"bench{n}_u{k}\"\npassword = \"${{secrets.pw}}\"\n"),
            _ => writeln!(
                s,
                "[mysql_grant.g{k}]\nuser = \"${{mysql_user.u{k}.user}}\"\non = \"${{mysql_database.d{k}.name}}.*\"\nprivileges = [\"SELECT\", \"INSERT\"]\n"
            ),
        };
    }
    s
}

/// The systems a benchmark plan uses, by provider name.
pub type Systems<'a> = &'a [(&'a str, &'a dyn Connector)];

const MYSQL: Systems<'static> = &[("mysql", &aspects_mysql::MySql)];

fn load(n: usize, text: String, registry: &Registry) -> Result<Loaded, String> {
    load_files(&format!("bench{n}"), vec![text], registry)
}

/// Loads plan texts layered in order, as `name.toml` (secrets beside it, under target/stack).
pub fn load_files(name: &str, texts: Vec<String>, registry: &Registry) -> Result<Loaded, String> {
    let dir = crate::root().join("target/stack");
    let files = texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| SourceFile { path: dir.join(format!("{name}-{i}.toml")), text })
        .collect();
    let opts = LoadOptions {
        secrets_path: Some(dir.join(format!("{name}.secrets.toml"))),
        secret_values: SecretValues::Generate,
        vars: Default::default(),
        vars_from_env: false,
        rotate: Default::default(),
    };
    let mut loaded = load_sources(files, registry, &opts).map_err(|e| e.to_string())?;
    // Later loads of the same plan must find the same generated passwords.
    loaded.save_secrets().map_err(|e| e.to_string())?;
    Ok(loaded)
}

/// Applies the plan (a setup or, with a plan of no resources and `allow_destroy`, a teardown).
pub async fn converge(
    loaded: &Loaded,
    registry: &Registry,
    systems: Systems<'_>,
    allow_destroy: bool,
) -> Result<(), String> {
    let (mut writers, mut readers) = (Writers::new(), Readers::new());
    for (id, connector) in systems {
        let cfg = &loaded.desired.providers[*id];
        let w = connector.connect_write(cfg, &loaded.desired.deployment).await.map_err(|e| e.to_string())?;
        writers.insert((*id).to_owned(), w.clone());
        readers.insert((*id).to_owned(), w as _);
    }
    let planned = plan(&loaded.desired, &loaded.graph, registry, &readers, None, Goal::Converge)
        .await
        .map_err(|e| e.to_string())?;
    let redactor = Redactor::default();
    let opts = ApplyOptions {
        parallelism: 4,
        allow_destroy,
        redactor: &redactor,
        journal: None,
        locks: None,
        keep_old_secret: Default::default(),
    };
    let report =
        apply(&planned, &loaded.graph, registry, &writers, &opts, &mut |_| {}).await.map_err(|e| e.to_string())?;
    if report.succeeded() { Ok(()) } else { Err(format!("setup apply failed: {:?}", report.failed)) }
}

async fn measure(n: usize, url: &str, registry: &Registry) -> Result<(usize, f64, u64), String> {
    let loaded = load(n, plan_text(n, url), registry)?;
    eprintln!("bench: N = {n}: applying once to set up");
    converge(&loaded, registry, MYSQL, false).await?;
    let (ms, issued) = noop_plan(&loaded, registry, MYSQL, "mysql").await?;
    // Tear down: the same deployment with no resources destroys what it owns.
    let empty =
        load(n, format!("[deployment]\nname = \"bench{n}\"\n\n[providers.mysql]\nurl = \"{url}\"\n"), registry)?;
    converge(&empty, registry, MYSQL, true).await?;
    Ok((n, ms, issued))
}

/// The median time of [`RUNS`] no-op plans (connecting included) and the queries one plan sends
/// to the provider `counted`; an error when the plan is not empty.
pub async fn noop_plan(
    loaded: &Loaded,
    registry: &Registry,
    systems: Systems<'_>,
    counted: &str,
) -> Result<(f64, u64), String> {
    let mut times = Vec::new();
    let mut issued = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut readers = Readers::new();
        for (id, connector) in systems {
            let cfg = &loaded.desired.providers[*id];
            let r = connector.connect_read(cfg, &loaded.desired.deployment).await.map_err(|e| e.to_string())?;
            readers.insert((*id).to_owned(), r);
        }
        let before = readers[counted].queries();
        let planned = plan(&loaded.desired, &loaded.graph, registry, &readers, None, Goal::Converge)
            .await
            .map_err(|e| e.to_string())?;
        times.push(started.elapsed());
        issued = readers[counted].queries() - before;
        if planned.plan.has_changes() {
            return Err(format!("{}: the plan after apply is not empty", loaded.desired.deployment));
        }
    }
    times.sort();
    let median: Duration = times[RUNS / 2];
    Ok((median.as_secs_f64() * 1000.0, issued))
}

//! ClickHouse no-op plan benchmark, in this process against the stack's ClickHouse: the reference
//! plan's ClickHouse layer (plans/aspects.toml with plans/local.toml, as the demo runs it, under a
//! deployment and object names of its own), then N = 10 / 50 / 200 synthetic tables and
//! N = 10 / 100 / 1000 synthetic grants (ten per role). Each is
//! applied once and planned [`crate::bench`]'s number of times; prints the median ms, the
//! ClickHouse queries per plan and the ratio to N = 10, and fails when the query count grows with N.
//! The grantees are roles: a `clickhouse_user` adds one login per plan (its password can only be
//! verified by logging in), which the grants themselves do not cost.

use std::fmt::Write;

use aspects_core::Registry;
use tokio::runtime::Runtime;

use crate::bench::{Systems, converge, load_files, noop_plan};

const SIZES: [usize; 3] = [10, 50, 200];
const GRANT_SIZES: [usize; 3] = [10, 100, 1000];
const CLICKHOUSE: Systems<'static> = &[("clickhouse", &aspects_clickhouse::ClickHouse)];
const BOTH: Systems<'static> = &[("mysql", &aspects_mysql::MySql), ("clickhouse", &aspects_clickhouse::ClickHouse)];
/// Shared by every benchmark deployment, clear of the demo's and the tests' meta databases.
const META: &str = "bench_meta";

/// Runs both parts; `Ok(false)` when the query count grows with N.
pub fn run(rt: &Runtime, mysql_url: &str) -> Result<bool, String> {
    let url = std::env::var("ASPECTS_STACK_CLICKHOUSE_URL")
        .map_err(|_| "ASPECTS_STACK_CLICKHOUSE_URL is not set; run `cargo xtask bench`")?;
    // Every kind the reference plan declares must parse; only MySQL and ClickHouse are measured.
    let registry = Registry::default()
        .with(aspects_mysql::schema())
        .with(aspects_clickhouse::schema())
        .with(aspects_lms::schema())
        .with(aspects_files::schema())
        .with(aspects_superset::schema());
    let (count, ms, queries) = rt.block_on(reference(&registry, &url, mysql_url))?;
    println!("\nno-op plan, the reference plan's ClickHouse layer ({count} resources; MySQL read alongside)");
    println!("{ms:>10.1} ms {queries:>9} ClickHouse queries");
    let mut flat = true;
    for (what, sizes, bench) in
        [("tables", SIZES, Bench::Tables), ("grants (ten per role)", GRANT_SIZES, Bench::Grants)]
    {
        let mut rows = Vec::new();
        for n in sizes {
            rows.push(rt.block_on(synthetic(bench, n, &registry, &url))?);
        }
        println!("\nno-op plan, ClickHouse provider, N synthetic {what} (median, connect included)");
        println!("{:>6} {:>10} {:>9} {:>12}", "N", "ms", "queries", "ms / ms(10)");
        for (n, ms, q) in &rows {
            println!("{n:>6} {ms:>10.1} {q:>9} {:>12.2}", ms / rows[0].1);
        }
        flat &= rows.iter().all(|r| r.2 == rows[0].2);
    }
    println!("\nClickHouse query count independent of N: {}", if flat { "yes" } else { "NO" });
    Ok(flat)
}

/// The reference plan, renamed: (ClickHouse resources, median ms, ClickHouse queries).
async fn reference(registry: &Registry, url: &str, mysql_url: &str) -> Result<(usize, f64, u64), String> {
    let plans = crate::root().join("plans");
    let read = |f: &str| std::fs::read_to_string(plans.join(f)).map_err(|e| format!("plans/{f}: {e}"));
    let head = |name: &str| {
        format!(
            "[deployment]\nname = \"{name}\"\n\n[providers.mysql]\nurl = \"{mysql_url}\"\n\n\
             [providers.clickhouse]\nurl = \"{url}\"\nmeta_database = \"{META}\"\n\n"
        )
    };
    let base = read("aspects.toml")?;
    let mut overlay = head("benchref") + "[vars]\n";
    // The object names among the reference plan's vars, made the benchmark's own (not the
    // logins: CLICKHOUSE_ADMIN_USER, MYSQL_ROOT_USERNAME).
    let vars = base.lines().skip_while(|l| l.trim() != "[vars]").skip(1).take_while(|l| !l.starts_with('['));
    for var in vars.filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim())) {
        let object = var.ends_with("_DATABASE")
            || var.starts_with("SUPERSET_DB_")
            || (var.starts_with("ASPECTS_CLICKHOUSE_") && var.ends_with("_USER"));
        if object && var.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            let _ = writeln!(overlay, "{var} = \"benchref_{}\"", var.to_lowercase());
        }
    }
    for f in ["get_org_from_course_url", "get_org_from_ccx_course_url"] {
        let _ = write!(overlay, "\n[clickhouse_function.{f}]\nname = \"benchref_{f}\"\n");
    }
    // The LMS rows, the files and Superset's objects are not this benchmark's: switched off.
    let others = base
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.strip_suffix(']'))
        .filter(|a| ["lms_", "file.", "ralph_auth.", "superset_"].iter().any(|p| a.starts_with(p)));
    for address in others {
        let _ = write!(overlay, "\n[{address}]\nwhen = false\n");
    }
    let loaded = load_files("benchref", vec![base, read("local.toml")?, overlay], registry)?;
    let count = loaded.desired.resources.values().filter(|r| r.provider == "clickhouse").count();
    eprintln!("bench: the reference plan's ClickHouse layer: applying once to set up");
    converge(&loaded, registry, BOTH, false).await?;
    let measured = noop_plan(&loaded, registry, BOTH, "clickhouse").await;
    // Torn down whatever the measurement gave: the same deployment with no resources.
    let empty = load_files("benchref", vec![head("benchref")], registry)?;
    converge(&empty, registry, BOTH, true).await?;
    let (ms, queries) = measured?;
    Ok((count, ms, queries))
}

#[derive(Clone, Copy)]
enum Bench {
    /// One database and `n` tables.
    Tables,
    /// `n` grants, ten per role, each on a database of its own (which need not exist).
    Grants,
}

/// (n, median ms, ClickHouse queries).
async fn synthetic(bench: Bench, n: usize, registry: &Registry, url: &str) -> Result<(usize, f64, u64), String> {
    let name = match bench {
        Bench::Tables => format!("benchch{n}"),
        Bench::Grants => format!("benchgr{n}"),
    };
    let head = format!(
        "[deployment]\nname = \"{name}\"\n\n[providers.clickhouse]\nurl = \"{url}\"\nmeta_database = \"{META}\"\n\n"
    );
    let mut text = head.clone();
    match bench {
        Bench::Tables => {
            let _ = writeln!(text, "[clickhouse_database.d]\nname = \"{name}\"\n");
            for i in 0..n {
                let _ = writeln!(
                    text,
                    "[clickhouse_table.t{i}]\ndatabase = \"${{clickhouse_database.d.name}}\"\nname = \"t{i}\"\n\
                     columns = [\"id UInt64\", \"at DateTime\", \"v String\"]\norder_by = \"(id, at)\"\n\
                     ttl = \"at + INTERVAL 1 YEAR\"\n"
                );
            }
        }
        Bench::Grants => {
            for u in 0..n.div_ceil(10) {
                let _ = writeln!(text, "[clickhouse_role.r{u}]\nname = \"{name}_r{u}\"\n");
            }
            for i in 0..n {
                let _ = writeln!(
                    text,
                    "[clickhouse_grant.g{i}]\nrole = \"${{clickhouse_role.r{}.name}}\"\non = \"{name}_d{i}.*\"\n\
                     privileges = [\"SELECT\", \"INSERT\", \"UPDATE\"]\n",
                    i / 10
                );
            }
        }
    }
    let loaded = load_files(&name, vec![text], registry)?;
    eprintln!("bench: {name}: applying once to set up");
    converge(&loaded, registry, CLICKHOUSE, false).await?;
    let measured = noop_plan(&loaded, registry, CLICKHOUSE, "clickhouse").await;
    let empty = load_files(&name, vec![head], registry)?;
    converge(&empty, registry, CLICKHOUSE, true).await?;
    let (ms, queries) = measured?;
    Ok((n, ms, queries))
}

//! Shared test harness: a uniquely named sandbox on the real server (`aspects_e2e::mysql_url`:
//! ASPECTS_STACK_MYSQL_URL or the local stack's), cleaned up on drop; plans with the engine's own
//! planner and applies change by change through the provider's write handle.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aspects_core::diff::{Action, Change};
use aspects_core::graph::Graph;
use aspects_core::{Address, Desired, KindSchema, ProviderConfig, Registry, Resource, Secret, Value};
use aspects_engine::plan::{Goal, Readers};
use aspects_engine::provider::{Connector, ProviderRead, ProviderWrite};
use aspects_mysql::MySql;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, MySqlConnection, Row};

pub const PROVIDER: &str = "mysql";

/// The server URL, split into a password-free URL (what the provider accepts) and the password.
fn server() -> (String, Option<String>) {
    let url = aspects_e2e::mysql_url();
    let rest = url.strip_prefix("mysql://").expect("ASPECTS_STACK_MYSQL_URL starts with mysql://");
    match rest.rsplit_once('@') {
        Some((userinfo, hostpart)) if userinfo.contains(':') => {
            let (user, pw) = userinfo.split_once(':').unwrap();
            (format!("mysql://{user}@{hostpart}"), Some(pw.to_owned()))
        }
        _ => (url, None),
    }
}

/// One test's corner of the server: every object it makes starts with `prefix`.
pub struct Env {
    pub prefix: String,
    pub deployment: String,
    pub meta: String,
    pub url: String,
    pub password: Option<String>,
}

impl Env {
    pub fn new() -> Env {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let prefix = format!("t{}_{nanos}_", std::process::id());
        let (url, password) = server();
        Env { deployment: format!("{prefix}dep"), meta: format!("{prefix}meta"), prefix, url, password }
    }

    /// `HOST:PORT` of the test server.
    pub fn address(&self) -> &str {
        self.url.rsplit_once('@').map_or(&self.url, |(_, a)| a)
    }

    pub fn name(&self, s: &str) -> String {
        format!("{}{s}", self.prefix)
    }

    pub fn config(&self) -> ProviderConfig {
        let mut attrs: BTreeMap<String, Value> = BTreeMap::new();
        attrs.insert("url".into(), Value::from(self.url.as_str()));
        attrs.insert("meta_database".into(), Value::from(self.meta.as_str()));
        attrs.insert("max_concurrency".into(), Value::Int(4));
        if let Some(pw) = &self.password {
            attrs.insert("password".into(), Value::Sensitive(Secret::new(pw.as_str())));
        }
        ProviderConfig { id: PROVIDER.into(), system: "mysql".into(), attrs, origin: "test".into() }
    }

    pub async fn writer(&self) -> Arc<dyn ProviderWrite> {
        MySql.connect_write(&self.config(), &self.deployment).await.expect("connect_write")
    }

    pub async fn reader(&self) -> Arc<dyn ProviderRead> {
        MySql.connect_read(&self.config(), &self.deployment).await.expect("connect_read")
    }

    fn root_options(&self) -> MySqlConnectOptions {
        let mut o = MySqlConnectOptions::from_str(&self.url).unwrap();
        if let Some(pw) = &self.password {
            o = o.password(pw);
        }
        o.disable_statement_logging()
    }

    /// A plain admin connection for setting up drift by hand and checking results.
    pub async fn root(&self) -> MySqlConnection {
        self.root_options().connect().await.expect("root connection")
    }

    pub async fn exec(&self, sql: &str) {
        let mut c = self.root().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn strings(&self, sql: &str, binds: &[&str]) -> Vec<String> {
        let mut c = self.root().await;
        let mut q = sqlx::query(AssertSqlSafe(sql.to_owned()));
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    }

    /// MariaDB (rather than MySQL): tests of one flavour's own syntax skip on the other.
    pub async fn mariadb(&self) -> bool {
        self.strings("SELECT VERSION()", &[]).await[0].contains("MariaDB")
    }

    /// MySQL 8.0.14+, which keeps a retained old password beside the current one.
    pub async fn dual_passwords(&self) -> bool {
        let version = self.strings("SELECT VERSION()", &[]).await.remove(0);
        let v: Vec<u32> =
            version.split(|c: char| !c.is_ascii_digit()).take(3).map(|n| n.parse().unwrap_or(0)).collect();
        !version.contains("MariaDB") && v.as_slice() >= [8, 0, 14].as_slice()
    }

    /// The server's default collation of `charset` (MariaDB 10.11: `utf8mb4_general_ci`;
    /// MySQL 8: `utf8mb4_0900_ai_ci`).
    pub async fn default_collation(&self, charset: &str) -> String {
        let sql = "SELECT DEFAULT_COLLATE_NAME FROM information_schema.CHARACTER_SETS WHERE CHARACTER_SET_NAME = ?";
        self.strings(sql, &[charset]).await.remove(0)
    }

    /// Logs in as a user, as an application would.
    pub async fn can_login(&self, user: &str, password: &str) -> bool {
        let o = self.root_options().username(user).password(password);
        o.connect().await.is_ok()
    }

    /// Rows of this test's ownership records: (kind, address).
    pub async fn records(&self) -> Vec<(String, String)> {
        let mut c = self.root().await;
        let sql =
            format!("SELECT kind, address FROM `{}`.owned WHERE deployment = ? ORDER BY kind, address", self.meta);
        match sqlx::query(AssertSqlSafe(sql)).bind(&self.deployment).fetch_all(&mut c).await {
            Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Drops every database and user whose name starts with `prefix` (the meta database included).
async fn cleanup(options: MySqlConnectOptions, prefix: String) {
    let Ok(mut c) = options.connect().await else {
        return;
    };
    let like = format!("{}%", prefix.replace('_', "\\_"));
    let dbs: Vec<String> = sqlx::query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?")
        .bind(&like)
        .fetch_all(&mut c)
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    for db in dbs {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{}`", db.replace('`', "``"))))
            .execute(&mut c)
            .await;
    }
    let users: Vec<(String, String)> = sqlx::query("SELECT User, Host FROM mysql.user WHERE User LIKE ?")
        .bind(&like)
        .fetch_all(&mut c)
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default();
    for (u, h) in users {
        let q = |s: &str| s.replace('\\', "\\\\").replace('\'', "''");
        // A MariaDB role is a user row with an empty host that only DROP ROLE removes.
        let drop = if h.is_empty() {
            format!("DROP ROLE IF EXISTS '{}'", q(&u))
        } else {
            format!("DROP USER IF EXISTS '{}'@'{}'", q(&u), q(&h))
        };
        let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut c).await;
    }
    let _ = c.close().await;
}

impl Drop for Env {
    fn drop(&mut self) {
        let (options, prefix) = (self.root_options(), self.prefix.clone());
        // Drop cannot await; a thread with its own runtime works inside or outside a test runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(cleanup(options, prefix));
        })
        .join();
    }
}

pub fn kind(name: &str) -> KindSchema {
    aspects_mysql::schema().kinds.into_iter().find(|k| k.kind == name).expect("known kind")
}

pub fn res(kind: &str, name: &str, attrs: &[(&str, Value)]) -> Resource {
    Resource {
        address: Address::new(kind, name),
        provider: PROVIDER.into(),
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        depends_on: Default::default(),
        origin: "test".into(),
        ..Default::default()
    }
}

pub fn database(name: &str, db: &str) -> Resource {
    res("mysql_database", name, &[("name", Value::from(db))])
}

pub fn user(name: &str, user: &str, host: &str, password: &str) -> Resource {
    res(
        "mysql_user",
        name,
        &[
            ("user", Value::from(user)),
            ("host", Value::from(host)),
            ("password", Value::Sensitive(Secret::new(password))),
        ],
    )
}

pub fn grant(name: &str, user: &str, host: &str, on: &str, privileges: &[&str]) -> Resource {
    res(
        "mysql_grant",
        name,
        &[
            ("user", Value::from(user)),
            ("host", Value::from(host)),
            ("on", Value::from(on)),
            ("privileges", Value::List(privileges.iter().map(|p| Value::from(*p)).collect())),
        ],
    )
}

/// One planned change and the (normalised) resource it applies to.
pub struct Step {
    pub change: Change,
    pub desired: Option<Resource>,
}

/// A handle the planner can read through: a read or a write handle.
pub trait AsReader {
    fn as_reader(&self) -> Arc<dyn ProviderRead>;
}

impl AsReader for Arc<dyn ProviderRead> {
    fn as_reader(&self) -> Arc<dyn ProviderRead> {
        self.clone()
    }
}

impl AsReader for Arc<dyn ProviderWrite> {
    fn as_reader(&self) -> Arc<dyn ProviderRead> {
        self.clone()
    }
}

/// Plans with the engine's own planner, so the provider is tested under the code that drives
/// it in production (normalise, batched reads, orphans, moved identities, diff).
pub async fn plan(h: &impl AsReader, desired: &[Resource]) -> Vec<Step> {
    let resources: BTreeMap<Address, Resource> = desired.iter().map(|r| (r.address.clone(), r.clone())).collect();
    let graph = Graph::new(resources.iter().map(|(a, r)| (a, &*r.depends_on))).expect("test plans form a graph");
    let desired = Desired { deployment: "test".into(), providers: BTreeMap::new(), resources };
    let registry = Registry::default().with(aspects_mysql::schema());
    let readers: Readers = [(PROVIDER.into(), h.as_reader())].into();
    let planned =
        aspects_engine::plan::plan(&desired, &graph, &registry, &readers, None, Goal::Converge).await.expect("plan");
    planned
        .plan
        .changes
        .into_iter()
        .map(|change| Step { desired: planned.resources.get(&change.address).cloned(), change })
        .collect()
}

/// Plans and applies: creates/updates in rank order, then deletes in reverse rank order.
pub async fn apply(h: &Arc<dyn ProviderWrite>, desired: &[Resource]) -> Vec<Step> {
    let steps = plan(h, desired).await;
    apply_steps(&**h, &steps).await;
    steps
}

pub async fn apply_steps(h: &dyn ProviderWrite, steps: &[Step]) {
    let rank = |s: &Step| kind(&s.change.address.kind).rank;
    let mut order: Vec<&Step> = steps.iter().filter(|s| s.change.action != Action::Delete).collect();
    order.sort_by_key(|s| rank(s));
    let mut deletes: Vec<&Step> = steps.iter().filter(|s| s.change.action == Action::Delete).collect();
    deletes.sort_by_key(|s| std::cmp::Reverse(rank(s)));
    for s in order.into_iter().chain(deletes) {
        let k = kind(&s.change.address.kind);
        h.apply(&k, &s.change, s.desired.as_ref())
            .await
            .unwrap_or_else(|e| panic!("apply {} {:?}: {e} (hint: {:?})", s.change.address, s.change.action, e.hint));
    }
}

/// `(address, action)` of every change that is not a no-op.
pub fn actions(steps: &[Step]) -> Vec<(String, Action)> {
    steps
        .iter()
        .filter(|s| s.change.action != Action::NoOp)
        .map(|s| (s.change.address.to_string(), s.change.action))
        .collect()
}

pub fn step<'a>(steps: &'a [Step], address: &str) -> &'a Step {
    steps
        .iter()
        .find(|s| s.change.address.to_string() == address)
        .unwrap_or_else(|| panic!("no change for {address} in {:?}", actions(steps)))
}

/// Asserts that applying then planning is empty: the idempotency invariant.
pub async fn assert_converged(h: &impl AsReader, desired: &[Resource]) {
    let steps = plan(h, desired).await;
    let pending: Vec<String> = steps
        .iter()
        .filter(|s| s.change.action != Action::NoOp)
        .map(|s| {
            let attrs: Vec<String> =
                s.change.attrs.iter().map(|a| format!("{}: {:?} -> {:?}", a.name, a.before, a.after)).collect();
            format!("{} {:?} {attrs:?} {:?}", s.change.address, s.change.action, s.change.reason)
        })
        .collect();
    assert!(pending.is_empty(), "plan after apply is not empty: {pending:#?}");
}

pub fn strs(v: &Value) -> Vec<String> {
    v.as_list().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
}

//! The Superset side of the harness: the stack's Superset and its admin, a REST client to inject
//! drift and look at results, plan headers, and cleanup of what a sandbox created.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::{Run, Sandbox, block_on, optional_stack_env};

/// The stack's Superset: (url, admin user, admin password), or None (the test skips) outside CI
/// when the stack has no Superset. In CI (`CI` set, as .ci/run does) a missing Superset fails.
pub fn stack() -> Option<(String, String, String)> {
    let Some(url) = optional_stack_env("ASPECTS_STACK_SUPERSET_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ASPECTS_STACK_SUPERSET_URL is not set in CI: `cargo xtask stack up` must start Superset"
        );
        eprintln!("skipped: no ASPECTS_STACK_SUPERSET_URL (run `cargo xtask stack up` to start Superset)");
        return None;
    };
    let user = optional_stack_env("ASPECTS_STACK_SUPERSET_USER").expect("the stack exports the user with the URL");
    let password =
        optional_stack_env("ASPECTS_STACK_SUPERSET_PASSWORD").expect("the stack exports the password with the URL");
    Some((url, user, password))
}

/// The env variable a sandbox passes the admin password in (never a process argument).
pub const ADMIN_PASSWORD_ENV: &str = "SS_ADMIN_PASSWORD";

/// The Superset lock's lease in the tests: short, so a killed run's lock is taken over soon, yet
/// long enough for the heartbeat on a machine shared by parallel tests and builds (2 s was lost
/// under load).
pub const LEASE_SECONDS: u32 = 5;

/// A plan file for a Superset sandbox: its deployment and the Superset provider (lease
/// [`LEASE_SECONDS`]),
/// plus, when the body has ClickHouse resources, the ClickHouse provider (the sandbox's own meta
/// database; lease 10 s, since a run also waits for Superset's lock, which every test shares).
/// `secrets` are more `[secrets]` lines; `@@` in either is the prefix.
pub fn plan(s: &Sandbox, secrets: &str, body: &str) -> String {
    let (url, user, _) = stack().expect("a Superset");
    let clickhouse = if body.contains("[clickhouse_") {
        format!(
            "[providers.clickhouse]\nurl = \"{}\"\nmeta_database = \"{}meta\"\nlock_lease_seconds = 10\n\n",
            crate::clickhouse::url(),
            s.prefix
        )
    } else {
        String::new()
    };
    format!(
        "[deployment]\nname = \"{p}dep\"\n\n[secrets]\nss_admin = {{ env = \"{ADMIN_PASSWORD_ENV}\" }}\n{secrets}\n\
         [providers.superset]\nurl = \"{url}\"\nusername = \"{user}\"\npassword = \"${{secrets.ss_admin}}\"\n\
         lock_lease_seconds = {LEASE_SECONDS}\n\n{clickhouse}{}",
        body.replace("@@", &s.prefix),
        secrets = secrets.replace("@@", &s.prefix),
        p = s.prefix,
    )
}

/// A sandbox whose Superset and ClickHouse objects go when it does.
pub struct Ss(pub Sandbox);

impl Drop for Ss {
    fn drop(&mut self) {
        cleanup(&self.0.prefix);
        crate::clickhouse::cleanup(&self.0.prefix);
    }
}

impl std::ops::Deref for Ss {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

/// A command of the binary; apply, destroy and rotate wait for the lock: Superset has one apply
/// lock for every deployment on it, and the tests run in parallel.
pub fn run(s: &Sandbox, args: &[&str]) -> Run {
    let waits = matches!(args.first(), Some(&("apply" | "destroy" | "rotate")));
    let lock: &[&str] = if waits { &["--lock-timeout", "120s"] } else { &[] };
    s.run(&[args, lock].concat())
}

pub fn apply(s: &Sandbox) -> Run {
    let r = run(s, &["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    r
}

pub fn assert_no_changes(s: &Sandbox) -> Run {
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "a plan after apply must be empty: {r:?}");
    r
}

/// A UUID of the sandbox's own, so parallel tests never share a database connection.
pub fn uuid(s: &Sandbox) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(s.prefix.as_bytes()));
    format!("{}-{}-4{}-8{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// An admin session on the stack's Superset (access token, CSRF token and its cookie).
pub struct Api {
    client: Client,
    url: String,
    token: String,
    csrf: String,
}

impl Api {
    pub fn new() -> Api {
        let (url, user, password) = stack().expect("a Superset");
        block_on(async {
            let client = Client::builder().cookie_store(true).build().unwrap();
            let login = json!({"username": user, "password": password, "provider": "db", "refresh": true});
            let body =
                send(&client, Method::POST, &format!("{url}/api/v1/security/login"), None, None, Some(&login)).await.1;
            let token = body["access_token"].as_str().expect("the admin logs in").to_owned();
            let csrf =
                send(&client, Method::GET, &format!("{url}/api/v1/security/csrf_token/"), Some(&token), None, None)
                    .await
                    .1["result"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            Api { client, url, token, csrf }
        })
    }

    /// One request: status and JSON body.
    pub fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.url);
        block_on(send(&self.client, method, &url, Some(&self.token), Some(&self.csrf), body.as_ref()))
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None);
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    /// Rows of a list endpoint whose `column` starts with `prefix` (first 100).
    pub fn list(&self, path: &str, column: &str, prefix: &str) -> Vec<Value> {
        let q = format!("(filters:!((col:{column},opr:sw,value:'{prefix}')),page:0,page_size:100)");
        self.get(&format!("{path}?q={}", q.replace(' ', "%20")))["result"].as_array().cloned().unwrap_or_default()
    }

    /// The id of the one object whose `column` is `value`.
    pub fn id(&self, path: &str, column: &str, value: &str) -> i64 {
        let rows = self.list(path, column, value);
        let row = rows.iter().find(|r| r[column] == value).unwrap_or_else(|| panic!("no {value} in {path}"));
        row["id"].as_i64().unwrap()
    }

    /// Whether `user` can log in with `password`.
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        let login = json!({"username": user, "password": password, "provider": "db"});
        let url = format!("{}/api/v1/security/login", self.url);
        block_on(send(&Client::new(), Method::POST, &url, None, None, Some(&login))).0 == StatusCode::OK
    }
}

impl Default for Api {
    fn default() -> Self {
        Api::new()
    }
}

async fn send(
    client: &Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = client.request(method, url).header("Accept", "application/json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(csrf) = csrf {
        request = request.header("X-CSRFToken", csrf);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("Superset answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Deletes what a sandbox made in Superset: its dashboards, charts, datasets, users, databases
/// and roles (named with its prefix, or, for datasets, on its databases) and its deployment's
/// records and asset markers.
pub fn cleanup(prefix: &str) {
    if stack().is_none() {
        return;
    }
    let api = Api::new();
    let delete = |path: &str, rows: Vec<Value>| {
        for row in rows {
            api.call(Method::DELETE, &format!("{path}{}", row["id"]), None);
        }
    };
    delete("/api/v1/dashboard/", api.list("/api/v1/dashboard/", "dashboard_title", prefix));
    delete("/api/v1/chart/", api.list("/api/v1/chart/", "slice_name", prefix));
    // Datasets of physical tables keep the table's name: found through their connection.
    for db in api.list("/api/v1/database/", "database_name", prefix) {
        let q = format!("(filters:!((col:database,opr:rel_o_m,value:{})),page_size:100)", db["id"]);
        delete(
            "/api/v1/dataset/",
            api.get(&format!("/api/v1/dataset/?q={q}"))["result"].as_array().cloned().unwrap_or_default(),
        );
    }
    delete("/api/v1/dataset/", api.list("/api/v1/dataset/", "table_name", prefix));
    delete("/api/v1/security/users/", api.list("/api/v1/security/users/", "username", prefix));
    delete("/api/v1/database/", api.list("/api/v1/database/", "database_name", prefix));
    delete("/api/v1/security/roles/", api.list("/api/v1/security/roles/", "name", prefix));
    for marker in ["aspects records: ", "aspects assets: "] {
        let templates = api.list("/api/v1/css_template/", "template_name", &format!("{marker}{prefix}"));
        delete("/api/v1/css_template/", templates);
    }
}

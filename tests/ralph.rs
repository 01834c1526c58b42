//! Ralph's auth file end to end: the engine writes target/stack/ralph/auth.json (a `ralph_auth`
//! resource whose on_change restarts the stack's Ralph), and the real Ralph (ralph-malph 5.1.0,
//! ClickHouse backend on the stack's ClickHouse) accepts the password; the LMS's RouterConfiguration
//! (event-routing-backends, read back through its real Django model) holds the same password.
//! After `aspects rotate` both hold the new one, Ralph accepts it and refuses the old.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use aspects_config::SecretStore;
use aspects_e2e::{Run, Sandbox, block_on, clickhouse, django, lms_admin, lms_db_url, read_tree, stack_env};
use base64::Engine;

const STATEMENT: &str = r#"{"actor": {"mbox": "mailto:learner@example.com", "objectType": "Agent"},
 "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
 "object": {"id": "http://example.com/aspects/ralph-test", "objectType": "Activity"}}"#;

/// The status of `POST /xAPI/statements` as `user`.
fn post(user: &str, password: &str) -> u16 {
    let url = stack_env("ASPECTS_STACK_RALPH_URL");
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut s = TcpStream::connect(address).unwrap();
    write!(
        s,
        "POST /xAPI/statements HTTP/1.0\r\nHost: {address}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nX-Experience-API-Version: 1.0.3\r\nContent-Length: {}\r\n\r\n{STATEMENT}",
        STATEMENT.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The password of the LMS's current RouterConfiguration for `route`, as event-routing-backends
/// decrypts it (the stack's LMS fixture: FERNET_KEYS[0] is its test key).
fn lms_route_password(route: &str) -> String {
    let code = "import json, os\nfrom event_routing_backends.models import RouterConfiguration\n\
                print(json.dumps(RouterConfiguration.current(os.environ['ROUTE']).password))";
    django(code, &[("ROUTE", route)]).as_str().unwrap_or_default().to_owned()
}

fn ok(s: &Sandbox, args: &[&str]) -> Run {
    let r = s.run(args);
    assert_eq!(r.code, 0, "{r:?}");
    r
}

#[test]
fn real_ralph_accepts_the_engines_password_and_after_a_rotation_only_the_new_one() {
    let restart = PathBuf::from(stack_env("ASPECTS_STACK_RALPH_RESTART"));
    let dir = restart.parent().unwrap().to_owned();
    // The stack's auth file belongs to this test: start from none.
    let _ = std::fs::remove_file(dir.join("auth.json"));
    let _ = std::fs::remove_dir_all(dir.join(".aspects"));
    // What the reference plan creates for Ralph (Tutor's xapi.xapi_events_all), exactly: the demo
    // adopts it when it runs after the tests.
    clickhouse::sql(&[
        "CREATE DATABASE IF NOT EXISTS xapi",
        "CREATE TABLE IF NOT EXISTS xapi.xapi_events_all (event_id UUID, emission_time DateTime64(6), event String) \
         ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(emission_time) PRIMARY KEY (emission_time, event_id) \
         ORDER BY (emission_time, event_id)",
    ]);
    let mut s = Sandbox::new("ralph");
    s.set_env("LMS_FERNET_KEY", &stack_env("ASPECTS_STACK_LMS_FERNET_KEY"));
    // The route the LMS would post to (the stack's Ralph), unique to this run.
    let route = format!("{}/xAPI/{}", stack_env("ASPECTS_STACK_RALPH_URL"), s.prefix);
    let _cleanup = LmsRows(s.prefix.clone());
    s.write(
        "aspects.toml",
        &format!(
            r#"[deployment]
name = "{p}dep"

[secrets]
RALPH_LMS_PASSWORD = {{ generate = 36 }}
fernet = {{ env = "LMS_FERNET_KEY" }}

[providers.files]
root = "{root}"

[providers.lms]
url = "{lms}"
fernet_key = "${{secrets.fernet}}"

[lms_user.router]
username = "{p}router"
email = "router@example.com"

[lms_router_configuration.ralph]
route_url = "{route}"
username = "lms"
password = "${{secrets.RALPH_LMS_PASSWORD}}"
changed_by = "${{lms_user.router.username}}"

[ralph_auth.users]
path = "auth.json"
bcrypt_cost = 4
users = [
  {{ username = "lms", password = "${{secrets.RALPH_LMS_PASSWORD}}", scopes = ["statements/write", "statements/read/mine"], agent = {{ mbox = "mailto:lms@example.com" }} }},
]
on_change = ["{restart}"]
"#,
            p = s.prefix,
            root = dir.display(),
            restart = restart.display(),
            lms = lms_db_url(),
        ),
    );
    let apply = ok(&s, &["apply", "--auto-approve"]);
    let store = || SecretStore::open(&s.secrets_path()).unwrap();
    let old = store().get("RALPH_LMS_PASSWORD").unwrap().expose().to_owned();
    assert_eq!(post("lms", &old), 200, "Ralph refused the password the engine hashed");
    assert_eq!(post("lms", "not-the-password"), 401);
    assert_eq!(lms_route_password(&route), old, "the LMS would send another password than Ralph's");

    let rotate = ok(&s, &["rotate", "RALPH_LMS_PASSWORD", "--auto-approve"]);
    let new = store().get("RALPH_LMS_PASSWORD").unwrap().expose().to_owned();
    assert_ne!(new, old);
    assert_eq!(post("lms", &new), 200, "Ralph refused the rotated password");
    assert_eq!(post("lms", &old), 401, "Ralph still accepts the old password");
    assert_eq!(lms_route_password(&route), new, "the rotation did not reach the LMS's RouterConfiguration");
    assert!(ok(&s, &["plan"]).stdout.contains("No changes"));
    let hash = std::fs::read_to_string(dir.join("auth.json")).unwrap();
    let hash = serde_json::from_str::<serde_json::Value>(&hash).unwrap()[0]["hash"].as_str().unwrap().to_owned();
    let records = read_tree(&dir.join(".aspects"));
    for out in [apply.all(), rotate.all(), records] {
        for secret in [&old, &new, &hash] {
            assert!(!out.contains(secret.as_str()), "a secret or hash leaked:\n{out}");
        }
    }
}

/// Deletes the LMS rows and records a run made, however it ended.
struct LmsRows(String);

impl Drop for LmsRows {
    fn drop(&mut self) {
        let p = self.0.clone();
        let _ = std::thread::spawn(move || {
            block_on(async {
                let pool = lms_admin().await;
                for sql in [
                    "DELETE FROM event_routing_backends_routerconfiguration WHERE route_url LIKE CONCAT('%/xAPI/', ?)",
                    "DELETE p FROM auth_userprofile p JOIN auth_user u ON u.id = p.user_id WHERE u.username = CONCAT(?, 'router')",
                    "DELETE FROM auth_user WHERE username = CONCAT(?, 'router')",
                    "DELETE FROM aspects_lms_meta.owned WHERE deployment = CONCAT(?, 'dep')",
                ] {
                    let _ = sqlx::query(sql).bind(&p).execute(&pool).await;
                }
            })
        })
        .join();
    }
}

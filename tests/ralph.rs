//! Ralph's auth file end to end: the engine writes target/stack/ralph/auth.json (a `ralph_auth`
//! resource whose on_change restarts the stack's Ralph), and the real Ralph (ralph-malph 5.1.0,
//! ClickHouse backend on the stack's ClickHouse) accepts the password; after `aspects rotate` it
//! accepts the new one and refuses the old.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use aspects_config::SecretStore;
use aspects_e2e::{Run, Sandbox, clickhouse, read_tree, stack_env};
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
    // What the reference plan creates for Ralph (Tutor's xapi.xapi_events_all).
    clickhouse::sql(&[
        "CREATE DATABASE IF NOT EXISTS xapi",
        "CREATE TABLE IF NOT EXISTS xapi.xapi_events_all (event_id UUID, emission_time DateTime64(6), event String) \
         ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(emission_time) ORDER BY (emission_time, event_id)",
    ]);
    let s = Sandbox::new("ralph");
    s.write(
        "aspects.toml",
        &format!(
            r#"[deployment]
name = "{p}dep"

[secrets]
RALPH_LMS_PASSWORD = {{ generate = 36 }}

[providers.files]
root = "{root}"

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
        ),
    );
    let apply = ok(&s, &["apply", "--auto-approve"]);
    let store = || SecretStore::open(&s.secrets_path()).unwrap();
    let old = store().get("RALPH_LMS_PASSWORD").unwrap().expose().to_owned();
    assert_eq!(post("lms", &old), 200, "Ralph refused the password the engine hashed");
    assert_eq!(post("lms", "not-the-password"), 401);

    let rotate = ok(&s, &["rotate", "RALPH_LMS_PASSWORD", "--auto-approve"]);
    let new = store().get("RALPH_LMS_PASSWORD").unwrap().expose().to_owned();
    assert_ne!(new, old);
    assert_eq!(post("lms", &new), 200, "Ralph refused the rotated password");
    assert_eq!(post("lms", &old), 401, "Ralph still accepts the old password");
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

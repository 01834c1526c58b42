//! No secret reaches a log line (any level, sqlx's own logging included), an error or Debug
//! output: neither a password nor its native hash. Its own test binary, because it installs the
//! global log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use aspects_core::{Action, Secret, Value};
use common::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The forms a password could leak in: plaintext, SQL-escaped, and the native hash either case.
fn forms(pw: &str) -> Vec<String> {
    use sha1::{Digest, Sha1};
    let hash = hex::encode_upper(Sha1::digest(Sha1::digest(pw.as_bytes()).as_slice()).as_slice());
    vec![pw.to_owned(), pw.replace('\'', "''").replace('\\', "\\\\"), hash.clone(), hash.to_lowercase()]
}

fn assert_clean(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} leaks a secret form {s:?}:\n{text}");
    }
}

#[tokio::test]
async fn secrets_stay_out_of_logs_errors_and_debug_output() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber in this binary");

    let env = Env::new();
    let w = env.writer().await;
    let (pw1, pw2) = ("S3cret-'one'\\", "S3cret-two-Zq");
    let mut secrets = forms(pw1);
    secrets.extend(forms(pw2));
    let name = env.name("app");

    let desired = vec![user("app", &name, "%", pw1), grant("app", &name, "%", "x.*", &["SELECT"])];
    let steps = apply(&w, &desired).await;
    assert_converged(&w, &desired).await;
    let steps2 = apply(&w, &[user("app", &name, "%", pw2), desired[1].clone()]).await;
    assert!(env.can_login(&name, pw2).await);
    for s in steps.iter().chain(&steps2) {
        assert_clean("Debug of a change", &format!("{:?} {:?}", s.change, s.desired), &secrets);
    }

    // An ALTER USER for an account that vanished fails; the error carries no secret.
    env.exec(&format!("DROP USER '{name}'@'%'")).await;
    let mut u = user("app", &name, "%", pw1);
    w.normalise(&kind("mysql_user"), &mut u);
    let mut change = step(&steps2, "mysql_user.app").change.clone();
    change.action = Action::Update;
    let err = w.apply(&kind("mysql_user"), &change, Some(&u)).await.unwrap_err();
    assert!(err.message.contains("setting the password of user"), "{err}");
    assert_clean("an error", &format!("{err} {err:?} {:?}", err.hint), &secrets);

    // The provider's own password never shows either (a wrong one here, so the login fails).
    let mut config = env.config();
    config.attrs.insert("password".into(), Value::Sensitive(Secret::new("Adm1n-pw-XYZ")));
    let err = match aspects_engine::provider::Connector::connect_read(&aspects_mysql::MySql, &config, &env.deployment)
        .await
    {
        Ok(_) => panic!("root has no such password"),
        Err(e) => format!("{e} {e:?}"),
    };
    assert_clean("a login error", &err, &forms("Adm1n-pw-XYZ"));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("statement"), "the provider logged its statements:\n{logs}");
    assert!(logs.contains("text withheld"), "password statements are logged without text:\n{logs}");
    assert_clean("the log", &logs, &secrets);
}

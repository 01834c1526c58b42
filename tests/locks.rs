//! The deployment lock seen from the command line: a run that waits says so and names the
//! holder (even when the holder's $USER is unset), and an apply whose lock connection is killed
//! on the server stops before its next write.

use std::process::Command;

use aspects_e2e::{Sandbox, many, query_one, sql, wait_line};

fn journal(s: &Sandbox) -> String {
    std::fs::read_to_string(s.path("aspects.journal.jsonl")).unwrap_or_default()
}

#[test]
fn an_apply_whose_lock_connection_is_killed_stops_before_its_next_write() {
    let s = Sandbox::new("lock-killed");
    s.write("aspects.toml", &s.plan(&many(40)));
    // Held after a few of its 120 changes, while its lock's connection is killed.
    let (run, go) = s.paused(&["apply", "--auto-approve", "--parallelism", "1"], 12);
    let holder = query_one(&format!("SELECT CAST(IS_USED_LOCK('aspects:{}dep') AS CHAR)", s.prefix))
        .expect("the apply holds its lock");
    sql(&[&format!("KILL {holder}")]);
    std::fs::write(&go, "").unwrap();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the deployment lock was lost"), "{stderr}");

    // Every object that exists is one whose change finished before the loss: nothing after.
    let j = journal(&s);
    let done = j.matches(r#""event":"done""#).count();
    let skipped = j.matches(r#""event":"skipped""#).count();
    assert!(skipped > 0 && done + skipped == 120, "done {done}, skipped {skipped}");
    let like = s.prefix.replace('_', "\\\\_");
    let count = |sql: String| query_one(&sql).unwrap().parse::<usize>().unwrap();
    let objects = count(format!(
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{like}d%'"
    )) + count(format!("SELECT CAST(COUNT(*) AS CHAR) FROM mysql.user WHERE User LIKE '{like}u%'"))
        + count(format!(
            "SELECT CAST(COUNT(DISTINCT GRANTEE) AS CHAR) FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE LIKE '''{like}u%'"
        ));
    assert_eq!(objects, done, "no write happened after the lock was lost");

    // The next apply resumes from live state.
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn a_waiting_apply_says_so_and_names_the_holder_without_user_set() {
    let s = Sandbox::new("lock-wait");
    s.write("aspects.toml", &s.plan(&many(25)));
    let (first, go) = s.paused(&["apply", "--auto-approve", "--parallelism", "1"], 5);
    let mut second = s.spawn(&["apply", "--auto-approve", "--lock-timeout", "60s"]);
    wait_line(&mut second, "waiting up to");
    std::fs::write(&go, "").unwrap();
    assert!(first.wait_with_output().unwrap().status.success());
    let second: aspects_e2e::Run = second.wait_with_output().unwrap().into();
    assert_eq!(second.code, 0, "it waited, then found nothing left to do: {second:?}");
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_owned();
    assert!(second.stderr.contains(&format!("is locked by {me}@")), "{second:?}");
    assert!(second.stderr.contains("waiting up to 1m for it"), "{second:?}");
    assert!(second.stdout.contains("No changes."), "{second:?}");
}

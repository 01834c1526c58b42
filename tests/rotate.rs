//! `aspects rotate` end to end: the binary against the real MariaDB, which holds one password
//! per account (the `Replace` path; MySQL 8's `Dual` path is covered by the engine's ordering
//! tests and the MySQL provider's SQL snapshots).

use std::os::unix::fs::PermissionsExt;

use aspects_config::SecretStore;
use aspects_e2e::{Sandbox, assert_no_secret, can_login, crash_after_write, crash_at_every_write};

/// Two accounts share one generated secret; a third uses another one and must never move.
const SHARED: &str = r#"
[secrets]
shared = { generate = 24 }
other = { generate = 24 }

[mysql_database.app]
name = "@@app"
charset = "utf8mb4"

[mysql_user.reader]
user = "@@reader"
password = "${secrets.shared}"

[mysql_user.writer]
user = "@@writer"
password = "${secrets.shared}"

[mysql_user.bystander]
user = "@@bystander"
password = "${secrets.other}"

[mysql_grant.reader]
user = "${mysql_user.reader.user}"
on = "${mysql_database.app.name}.*"
privileges = ["SELECT"]
"#;

/// A rotation of the shared secret, one write at a time so each crash point is the same write.
const ROTATE: [&str; 5] = ["rotate", "shared", "--auto-approve", "--parallelism", "1"];

fn shared(name: &str) -> Sandbox {
    let s = Sandbox::new(name);
    s.write("aspects.toml", &s.plan(SHARED));
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    s
}

fn store(s: &Sandbox) -> SecretStore {
    SecretStore::open(&s.secrets_path()).expect("the secrets file is always whole and private")
}

fn current(s: &Sandbox, name: &str) -> String {
    store(s).get(name).unwrap().expose().to_owned()
}

fn pending(s: &Sandbox, name: &str) -> Option<String> {
    store(s).pending(name).and_then(|p| p.value).map(|v| v.expose().to_owned())
}

fn logins(s: &Sandbox, password: &str) -> [bool; 2] {
    let p = &s.prefix;
    [can_login(&format!("{p}reader"), password), can_login(&format!("{p}writer"), password)]
}

#[test]
fn rotating_a_generated_secret_moves_every_account_that_uses_it_and_only_those() {
    let s = shared("rotate-generated");
    let (old, other) = (current(&s, "shared"), current(&s, "other"));
    assert_eq!(logins(&s, &old), [true, true]);

    let r = s.run(&["rotate", "shared", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    let new = current(&s, "shared");
    assert_ne!(new, old, "a new value");
    assert!(pending(&s, "shared").is_none(), "promoted once every consumer converged");
    assert_eq!(logins(&s, &new), [true, true], "the new password works for both accounts");
    assert_eq!(logins(&s, &old), [false, false], "the old password is refused by both");
    assert_eq!(current(&s, "other"), other);
    assert!(can_login(&format!("{}bystander", s.prefix), &other), "an account of another secret never moves");

    // The operator sees every consumer, in order, and what the window is.
    let reader = r.stdout.find("1. mysql_user.reader: credential").expect(&r.stdout);
    let writer = r.stdout.find("2. mysql_user.writer: credential").expect(&r.stdout);
    assert!(reader < writer);
    assert!(r.stdout.contains("Not zero-downtime"), "MariaDB holds one password per account: {r:?}");
    assert!(r.stdout.contains("Rotated secrets.shared"), "{r:?}");
    assert!(!r.stdout.contains("bystander"), "{r:?}");

    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 0, "{drift:?}");
    let journal = std::fs::read_to_string(s.path("aspects.journal.jsonl")).unwrap();
    assert!(journal.contains("\"event\":\"credential_transition\""), "{journal}");
    assert!(journal.contains("\"rotation\":\"replace\""), "{journal}");
    assert_no_secret(&s, &[&old, &new, &other], &[&r, &plan, &drift]);
    let mode = std::fs::metadata(s.secrets_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_dry_run_and_a_targeted_plan_show_what_a_rotation_touches_and_change_nothing() {
    let s = shared("rotate-dry");
    let old = current(&s, "shared");
    let before = std::fs::read_to_string(s.secrets_path()).unwrap();

    let dry = s.run(&["rotate", "shared", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("1. mysql_user.reader"), "{dry:?}");
    assert!(dry.stdout.contains("Dry run: nothing was changed"), "{dry:?}");
    let server = aspects_e2e::mysql_url().rsplit('@').next().unwrap().to_owned();
    let shown = s.scrub(&dry.stdout).replace(&server, "[SERVER]");
    insta::assert_snapshot!("rotate_dry_run", shown);
    assert_eq!(std::fs::read_to_string(s.secrets_path()).unwrap(), before, "nothing saved");
    assert_eq!(logins(&s, &old), [true, true]);

    // The graph has the secret as a node, and --target on it plans its consumers only.
    let graph = s.run(&["graph"]);
    assert!(graph.stdout.contains("\"secrets.shared\" -> \"mysql_user.reader\""), "{graph:?}");
    let targeted = s.run(&["plan", "--target", "secrets.shared"]);
    assert_eq!(targeted.code, 0, "{targeted:?}");
    assert!(targeted.stdout.contains("only what uses secrets.shared"), "{targeted:?}");
    assert_no_secret(&s, &[&old], &[&dry, &graph, &targeted]);
}

/// The crash hook aborts the process (as `kill -9` would) right after its k-th write, for every
/// k: the lock's holder row, the pending value, each account, then the promotion.
/// Whatever the crash point, the secrets file is whole and private, keeps every value an
/// account may still use, drift reports the unfinished rotation, and a re-run (rotate or apply,
/// in turn) converges on the pending value — never a third one.
#[test]
fn a_rotation_killed_after_any_write_is_finished_by_rotate_or_apply_with_the_same_value() {
    let s = shared("rotate-crash");
    let mut old = current(&s, "shared");
    let mut crashed_pending = 0;
    let writes = crash_at_every_write(&s, &ROTATE, |k, r| {
        let mode = std::fs::metadata(s.secrets_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "k = {k}");
        let (target, was_pending) = match pending(&s, "shared") {
            Some(p) => {
                assert_eq!(current(&s, "shared"), old, "k = {k}: the old value is kept while pending");
                // Each account accepts one of the two values the file keeps.
                let (with_old, with_new) = (logins(&s, &old), logins(&s, &p));
                assert!((0..2).all(|i| with_old[i] || with_new[i]), "k = {k}: {with_old:?} {with_new:?}");
                let drift = s.run(&["drift"]);
                assert_eq!(drift.code, 2, "k = {k}: {drift:?}");
                assert!(drift.stdout.contains("Rotation of secrets.shared is unfinished"), "k = {k}: {drift:?}");
                let saved = s.run(&["plan", "--out", "pending.json"]);
                assert_eq!(saved.code, 0, "k = {k}: {saved:?}");
                let doc = std::fs::read_to_string(s.path("pending.json")).unwrap();
                assert!(doc.contains("\"rotations\""), "k = {k}: {doc}");
                assert_no_secret(&s, &[&old, &p], &[r, &drift, &saved]);
                crashed_pending += 1;
                (p, true)
            }
            // Killed before the pending value was saved (the rotation never started), or right
            // after the promotion (it had finished).
            None => (current(&s, "shared"), false),
        };
        let finish = if k % 2 == 0 {
            s.run(&["rotate", "shared", "--auto-approve"])
        } else {
            s.run(&["apply", "--auto-approve"])
        };
        assert_eq!(finish.code, 0, "k = {k}: {finish:?}");
        // `rotate` with nothing pending rightly starts a new rotation.
        if was_pending || k % 2 == 1 {
            assert_eq!(current(&s, "shared"), target, "k = {k}: converged on the pending value, not a third");
        }
        assert!(pending(&s, "shared").is_none(), "k = {k}");
        let now = current(&s, "shared");
        assert_eq!(logins(&s, &now), [true, true], "k = {k}");
        if now != old {
            assert_eq!(logins(&s, &old), [false, false], "k = {k}");
        }
        assert_eq!(s.run(&["drift"]).code, 0, "k = {k}");
        // The next run rotates again, from what this one converged on.
        old = now;
    });
    assert!(writes >= 4, "a rotation of two accounts has at least four writes, saw {writes}");
    assert_ne!(current(&s, "shared"), old);
    assert_eq!(crashed_pending, 3, "after the pending save and after each account");
}

#[test]
fn an_env_secret_is_rotated_from_its_source_and_refused_when_the_source_did_not_change() {
    let mut s = Sandbox::new("rotate-env");
    s.write(
        "aspects.toml",
        &s.plan("[secrets]\npw = { env = \"ROTATE_PW\" }\n\n[mysql_user.app]\nuser = \"@@app\"\npassword = \"${secrets.pw}\"\n"),
    );
    s.set_env("ROTATE_PW", "env-First-1");
    assert_eq!(s.run(&["apply", "--auto-approve"]).code, 0);

    let same = s.run(&["rotate", "pw", "--auto-approve"]);
    assert_eq!(same.code, 1, "{same:?}");
    assert!(same.stderr.contains("secret `pw` did not change"), "{same:?}");
    assert!(same.stderr.contains("put the new value in the source first"), "{same:?}");

    let unknown = s.run(&["rotate", "pww", "--auto-approve"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(unknown.stderr.contains("the plan uses no secret `pww`"), "{unknown:?}");
    assert!(unknown.stderr.contains("pw"), "a suggestion: {unknown:?}");

    s.set_env("ROTATE_PW", "env-Second-2");
    let r = s.run(&["rotate", "pw", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    let user = format!("{}app", s.prefix);
    assert!(can_login(&user, "env-Second-2") && !can_login(&user, "env-First-1"));
    let file = store(&s);
    assert!(file.get("pw").is_none() && file.pending("pw").is_none(), "env values are never kept in the file");
    assert_no_secret(&s, &["env-First-1", "env-Second-2"], &[&same, &r]);
}

/// A rotation and an apply that loaded their values before it, both waiting for the lock:
/// whichever runs second must not write back a value the other replaced. An apply that loaded
/// the old value refuses once the rotation promoted the new one; either way every account ends on
/// the value the secrets file holds.
#[test]
fn an_apply_that_loaded_before_a_rotation_never_writes_the_old_value_back() {
    use std::io::{BufRead, BufReader};
    let s = shared("rotate-race");
    let old = current(&s, "shared");
    let name = format!("aspects:{}dep", s.prefix);
    let (children, seen) = aspects_e2e::holding_lock(&name, || {
        let args = ["--auto-approve", "--lock-timeout", "60s"];
        let mut children =
            [s.spawn(&[&["rotate", "shared"][..], &args].concat()), s.spawn(&[&["apply"][..], &args].concat())];
        // Both have loaded their values once they say they are waiting for the lock.
        let mut seen = Vec::new();
        for child in &mut children {
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let waiting = lines.by_ref().map_while(Result::ok).find(|l| l.contains("waiting up to"));
            assert!(waiting.is_some(), "the run never waited for the lock");
            seen.push(std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n")));
        }
        (children, seen)
    });
    let [rotate, apply]: [(i32, String); 2] = children
        .into_iter()
        .zip(seen)
        .map(|(c, err)| {
            let out = c.wait_with_output().unwrap();
            let stderr = err.join().unwrap();
            (out.status.code().unwrap_or(-9), format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)))
        })
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(rotate.0, 0, "{}", rotate.1);
    let new = current(&s, "shared");
    assert_ne!(new, old);
    if apply.0 != 0 {
        assert!(apply.1.contains("changed since this run read it"), "{}", apply.1);
    }
    assert_eq!(logins(&s, &new), [true, true], "rotate: {}\napply: {}", rotate.1, apply.1);
    assert_eq!(logins(&s, &old), [false, false]);
    assert_eq!(s.run(&["drift"]).code, 0);
}

#[test]
fn rotate_all_rotates_every_generated_secret_and_skips_an_unchanged_env_one_saying_why() {
    let mut s = Sandbox::new("rotate-all");
    let body = "[secrets]\ngen = { generate = 24 }\nenv = { env = \"ALL_PW\" }\n\n\
                [mysql_user.gen]\nuser = \"@@gen\"\npassword = \"${secrets.gen}\"\n\n\
                [mysql_user.env]\nuser = \"@@env\"\npassword = \"${secrets.env}\"\n";
    s.write("aspects.toml", &s.plan(body));
    s.set_env("ALL_PW", "all-Env-1");
    assert_eq!(s.run(&["apply", "--auto-approve"]).code, 0);
    let old = current(&s, "gen");
    let r = s.run(&["rotate", "--all", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("Skipping secrets.env: secret `env` did not change"), "{r:?}");
    let new = current(&s, "gen");
    assert_ne!(new, old);
    assert!(can_login(&format!("{}gen", s.prefix), &new));
    assert!(can_login(&format!("{}env", s.prefix), "all-Env-1"), "the env secret's account is untouched");
    let both = s.run(&["rotate", "--all", "gen"]);
    assert_eq!(both.code, 1, "names and --all do not mix: {both:?}");
}

/// What a scheduled job reading `drift --json` learns about a rotation left half-way.
#[test]
fn a_pending_rotation_is_in_the_plan_document_with_each_consumer() {
    let s = shared("rotate-doc");
    // Find the crash point right after the pending value is saved; a run that continues a
    // pending rotation saves nothing first, so the same point then falls right after the first
    // account moved.
    let crash = |k: usize| {
        let r = crash_after_write(&s, &ROTATE, k);
        assert!(r.stderr.contains("(test hook)"), "k = {k}: {r:?}");
        pending(&s, "shared").map(|p| logins(&s, &p))
    };
    let saved = (1..20).find(|k| crash(*k).is_some()).expect("some crash point leaves the value pending");
    let moved = (crash(saved) == Some([true, false])).then_some(saved);
    assert!(moved.is_some(), "no crash point left the first account moved");
    let drift = s.run(&["drift", "--json"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    let doc: serde_json::Value = serde_json::from_str(&drift.stdout).unwrap();
    let mut rotations = doc["rotations"].clone();
    assert!(rotations[0]["pending_since"].is_string(), "{rotations}");
    rotations[0]["pending_since"] = "[TIME]".into();
    insta::assert_json_snapshot!("pending_rotation_document", rotations);
    let text = s.run(&["drift"]);
    assert!(text.stdout.contains("Not yet using the new value: mysql_user.writer."), "{text:?}");
}

/// `apply --target` during a pending rotation moves only what it targets; a consumer left out is
/// not known to use the new value, so the old one is kept until it is.
#[test]
fn a_targeted_apply_never_promotes_a_rotation_whose_consumers_it_left_out() {
    let s = shared("rotate-target");
    let old = current(&s, "shared");
    let crash = |k: usize| {
        crash_after_write(&s, &ROTATE, k);
        pending(&s, "shared")
    };
    let new = (1..20).find_map(crash).expect("some crash point leaves the value pending");
    let r = s.run(&["apply", "--auto-approve", "--target", "mysql_user.reader"]);
    assert_eq!(r.code, 1, "the rotation stays unfinished: {r:?}");
    assert!(r.stdout.contains("Rotation of secrets.shared is unfinished: mysql_user.writer"), "{r:?}");
    assert_eq!(pending(&s, "shared").as_deref(), Some(new.as_str()), "still pending");
    assert_eq!(current(&s, "shared"), old, "the old value is kept: the writer still uses it");
    assert_eq!(logins(&s, &new), [true, false]);
    assert_eq!(logins(&s, &old), [false, true]);
    assert_eq!(s.run(&["apply", "--auto-approve"]).code, 0);
    assert_eq!(current(&s, "shared"), new);
    assert_eq!(logins(&s, &new), [true, true]);
}

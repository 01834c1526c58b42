//! The `file` kind end to end: the `aspects` binary rendering, writing and checking real files
//! under a sandbox root, with a real `on_change` command.

use std::os::unix::fs::PermissionsExt;

use aspects_e2e::{Run, Sandbox, read_tree};

/// A deployment whose files live under the sandbox's `root`; `@@` is the sandbox prefix.
fn plan(s: &Sandbox, body: &str) -> String {
    format!(
        "[deployment]\nname = \"{p}dep\"\n\n[providers.files]\nroot = \"{root}\"\ntemplates = \"templates\"\n\n{}",
        body.replace("@@", &s.prefix),
        p = s.prefix,
        root = s.path("root").display(),
    )
}

const RALPH_ENV: &str = r#"
[vars]
RALPH_DATABASE = "xapi"

[secrets]
RALPH_PASSWORD = { env = "RALPH_PASSWORD" }

[file.ralph_env]
path = "ralph/ralph.env"
mode = "0600"
template = "ralph.env.j2"
context = { RALPH_DATABASE = "${vars.RALPH_DATABASE}", RALPH_PASSWORD = "${secrets.RALPH_PASSWORD}" }
on_change = ["sh", "-c", "echo changed >> ../../hook.log"]
"#;

const TEMPLATE: &str = "{% include 'header.j2' %}\
RALPH_BACKENDS__DATA__CLICKHOUSE__DATABASE={{ RALPH_DATABASE }}
RALPH_BACKENDS__DATA__CLICKHOUSE__PASSWORD={{ RALPH_PASSWORD }}
RALPH_BACKENDS__DATA__CLICKHOUSE__TABLE={{ RALPH_DATABASE|upper }}_EVENTS
";

const SECRET: &str = "Pw-3f9c1e7a5b2d4c6e8f0a";

fn sandbox(name: &str) -> Sandbox {
    let mut s = Sandbox::new(name);
    std::fs::create_dir_all(s.path("templates")).unwrap();
    std::fs::create_dir_all(s.path("root")).unwrap();
    s.write("templates/ralph.env.j2", TEMPLATE);
    s.write("templates/header.j2", "# Rendered by aspects\n");
    s.write("aspects.toml", &plan(&s, RALPH_ENV));
    s.set_env("RALPH_PASSWORD", SECRET);
    s
}

fn file(s: &Sandbox) -> String {
    std::fs::read_to_string(s.path("root/ralph/ralph.env")).unwrap_or_default()
}

fn hooks(s: &Sandbox) -> usize {
    std::fs::read_to_string(s.path("hook.log")).unwrap_or_default().lines().count()
}

/// Outputs and every file but the rendered one (which must hold the secret) are secret-free.
fn assert_no_secret(s: &Sandbox, runs: &[&Run], secrets: &[&str]) {
    let state = s.path("root/.aspects");
    let records = if state.exists() { read_tree(&state) } else { String::new() };
    for secret in secrets {
        for r in runs {
            assert!(!r.all().contains(secret), "secret in output:\n{r:?}");
        }
        assert!(!records.contains(secret), "secret in the records");
    }
}

fn ok(s: &Sandbox, args: &[&str]) -> Run {
    let r = s.run(args);
    assert_eq!(r.code, 0, "{r:?}");
    r
}

fn snapshot(s: &Sandbox, name: &str, text: &str) {
    insta::with_settings!({ filters => vec![(r"after \d+ms", "after [T]")] }, {
        insta::assert_snapshot!(name, s.scrub(text));
    });
}

#[test]
fn empty_apply_then_plan_is_empty_and_secrets_stay_masked_inside_the_content() {
    let s = sandbox("files-create");
    let first = ok(&s, &["plan"]);
    snapshot(&s, "files_first_plan", &first.stdout);
    let apply = ok(&s, &["apply", "--auto-approve"]);
    assert!(file(&s).contains(&format!("PASSWORD={SECRET}\n")), "{}", file(&s));
    assert!(file(&s).starts_with("# Rendered by aspects\n"));
    let mode = std::fs::metadata(s.path("root/ralph/ralph.env")).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600);
    assert_eq!(hooks(&s), 1, "on_change runs after the create");
    let again = ok(&s, &["plan"]);
    assert!(again.stdout.contains("No changes"), "{again:?}");
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 0, "{drift:?}");
    ok(&s, &["apply", "--auto-approve"]);
    assert_eq!(hooks(&s), 1, "no change, no on_change");
    assert_no_secret(&s, &[&first, &apply, &again, &drift], &[SECRET]);
}

#[test]
fn a_hand_edit_is_drift_that_apply_restores_and_the_hook_runs_once_per_change() {
    let s = sandbox("files-drift");
    ok(&s, &["apply", "--auto-approve"]);
    let path = s.path("root/ralph/ralph.env");
    let edited = file(&s).replace("DATABASE=xapi", "DATABASE=by_hand").replace(SECRET, "typed-by-hand-secret");
    std::fs::write(&path, &edited).unwrap();
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    snapshot(&s, "files_drift", &drift.stdout);
    let fixed = ok(&s, &["apply", "--auto-approve"]);
    assert!(file(&s).contains("DATABASE=xapi\n"));
    assert_eq!(hooks(&s), 2);

    // Mode alone: drift, restored, and no restart (the content did not change).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let drift_mode = s.run(&["drift"]);
    assert_eq!(drift_mode.code, 2, "{drift_mode:?}");
    assert!(drift_mode.stdout.contains(r#"mode = "0644" -> "0600""#), "{drift_mode:?}");
    ok(&s, &["apply", "--auto-approve"]);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(hooks(&s), 2);
    assert_eq!(s.run(&["drift"]).code, 0);
    // Whatever sits where the last write put a secret is masked, even a value the plan never knew.
    assert_no_secret(&s, &[&drift, &fixed, &drift_mode], &[SECRET, "typed-by-hand-secret"]);
}

#[test]
fn a_new_secret_value_changes_the_file_and_neither_value_is_shown() {
    let mut s = sandbox("files-secret");
    ok(&s, &["apply", "--auto-approve"]);
    let next = "Pw-new-7d1b9a3c5e2f4a6b8c0d";
    s.set_env("RALPH_PASSWORD", next);
    let plan = s.run(&["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    snapshot(&s, "files_secret_changed", &plan.stdout);
    let apply = ok(&s, &["apply", "--auto-approve"]);
    assert!(file(&s).contains(next));
    assert_eq!(hooks(&s), 2);
    assert_no_secret(&s, &[&plan, &apply], &[SECRET, next]);
}

#[test]
fn a_kill_after_every_write_converges() {
    const AFTER: &str = "Pw-after-the-kill-0123456789";
    let mut s = sandbox("files-kill");
    ok(&s, &["apply", "--auto-approve"]);
    let before = file(&s);
    // The sandbox's own password is the new one; the first plan is put back with the old one.
    s.set_env("RALPH_PASSWORD", AFTER);
    let changed = plan(&s, &RALPH_ENV.replace("0600", "0640"));
    s.write("aspects.toml", &changed);
    // Restarts logged before the change: the change must add one.
    let mut logged = hooks(&s);
    let writes = aspects_e2e::crash_at_every_write(&s, &["apply", "--auto-approve"], |k, killed| {
        let whole = file(&s);
        assert!(whole == before || whole.contains(AFTER), "half a file after write {k}");
        let finished = ok(&s, &["apply", "--auto-approve"]);
        assert!(file(&s).contains(AFTER));
        assert!(ok(&s, &["plan"]).stdout.contains("No changes"), "after a kill at write {k}");
        assert!(hooks(&s) > logged, "the restart after the change was lost at write {k}");
        assert_no_secret(&s, &[killed, &finished], &[AFTER, SECRET]);
        // Back to the first file for the next crash point.
        s.write("aspects.toml", &plan(&s, RALPH_ENV));
        let r: Run = s.command(&["apply", "--auto-approve"]).env("RALPH_PASSWORD", SECRET).output().unwrap().into();
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(file(&s), before);
        logged = hooks(&s);
        s.write("aspects.toml", &changed);
    });
    assert!(writes >= 3, "too few writes to cover: {writes}");
    assert!(file(&s).contains(AFTER));
    assert!(ok(&s, &["plan"]).stdout.contains("No changes"), "without a kill");
    assert!(hooks(&s) > logged, "the restart after the change was lost without a kill");
}

#[test]
fn hostile_paths_are_refused_with_their_location() {
    let s = sandbox("files-hostile");
    std::os::unix::fs::symlink("/etc", s.path("root/link")).unwrap();
    for (path, says) in [
        ("../outside", "contains `..`"),
        ("/etc/aspects-test", "outside the provider's root"),
        ("link/passwd", "symbolic link"),
        (".aspects/files-x.json", "state folder"),
    ] {
        let body = format!("[file.bad]\npath = \"{path}\"\ncontent = \"x\"\n");
        s.write("aspects.toml", &plan(&s, &body));
        let r = s.run(&["plan"]);
        assert_eq!(r.code, 1, "{path}: {r:?}");
        assert!(r.stderr.contains(says), "{path}: {r:?}");
        assert!(r.stderr.contains("aspects.toml:9:"), "{path}: no file:line:col in {r:?}");
    }
    assert!(!s.path("outside").exists());
}

#[test]
fn a_file_removed_from_the_plan_is_deleted() {
    let s = sandbox("files-orphan");
    ok(&s, &["apply", "--auto-approve"]);
    s.write("aspects.toml", &plan(&s, "[file.other]\npath = \"other.txt\"\ncontent = \"kept\\n\"\n"));
    let r = ok(&s, &["plan"]);
    assert!(r.stdout.contains("file.ralph_env will be destroyed"), "{r:?}");
    ok(&s, &["apply", "--auto-approve"]);
    assert!(!s.path("root/ralph/ralph.env").exists());
    assert_eq!(std::fs::read_to_string(s.path("root/other.txt")).unwrap(), "kept\n");
    assert!(ok(&s, &["plan"]).stdout.contains("No changes"));
}

#[test]
fn render_writes_every_file_and_touches_nothing_else() {
    let s = sandbox("files-render");
    let r = ok(&s, &["render", "--out", "out"]);
    let rendered = std::fs::read_to_string(s.path("out/ralph/ralph.env")).unwrap();
    assert!(rendered.starts_with("# Rendered by aspects\n") && rendered.contains(SECRET), "{rendered}");
    assert_eq!(std::fs::metadata(s.path("out/ralph/ralph.env")).unwrap().permissions().mode() & 0o7777, 0o600);
    assert!(r.stdout.contains("out/ralph/ralph.env"), "{r:?}");
    // No service file, no record, no hook.
    assert!(!s.path("root/ralph").exists() && !s.path("root/.aspects").exists());
    assert_eq!(hooks(&s), 0);
    assert_no_secret(&s, &[&r], &[SECRET]);
    // A broken template fails with its line, and no secret, before anything is written.
    s.write("templates/ralph.env.j2", "{{ RALPH_PASSWORD }}\n{{ RALPH_PASSWORD | nope }}\n");
    let bad = s.run(&["render", "--out", "out2"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("nope"), "{bad:?}");
    assert!(!s.path("out2/ralph/ralph.env").exists());
    assert_no_secret(&s, &[&bad], &[SECRET]);
}

const RALPH_AUTH: &str = r#"
[secrets]
RALPH_LMS_PASSWORD = { env = "RALPH_LMS_PASSWORD" }

[ralph_auth.users]
path = "ralph/auth.json"
bcrypt_cost = 4
users = [
  { username = "lms", password = "${secrets.RALPH_LMS_PASSWORD}", scopes = ["statements/write", "statements/read/mine"], agent = { mbox = "mailto:lms@example.com" } },
]
on_change = ["sh", "-c", "echo changed >> ../../hook.log"]
"#;

#[test]
fn ralph_auth_hashes_verify_are_kept_byte_identical_and_a_new_password_rehashes() {
    let mut s = sandbox("files-ralph-auth");
    s.write("aspects.toml", &plan(&s, RALPH_AUTH));
    s.set_env("RALPH_LMS_PASSWORD", SECRET);
    let first = ok(&s, &["plan"]);
    assert!(first.stdout.contains("password = (sensitive)"), "{first:?}");
    let apply = ok(&s, &["apply", "--auto-approve"]);
    let path = s.path("root/ralph/auth.json");
    let written = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&written).unwrap();
    let hash = doc[0]["hash"].as_str().unwrap().to_owned();
    assert!(hash.starts_with("$2b$04$"), "{written}");
    assert_eq!(doc[0]["agent"]["mbox"], "mailto:lms@example.com");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
    let again = ok(&s, &["plan"]);
    assert!(again.stdout.contains("No changes"), "{again:?}");
    ok(&s, &["apply", "--auto-approve"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written, "a hash that verifies is kept byte for byte");
    assert_eq!(hooks(&s), 1);

    // A hand-added user is drift; a new password rehashes and restarts.
    let mut tampered = doc.clone();
    tampered
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"username": "intruder", "hash": hash, "scopes": [], "agent": {"mbox": "mailto:i@x"}}));
    std::fs::write(&path, serde_json::to_string(&tampered).unwrap()).unwrap();
    assert_eq!(s.run(&["drift"]).code, 2);
    ok(&s, &["apply", "--auto-approve"]);
    assert!(!std::fs::read_to_string(&path).unwrap().contains("intruder"));
    let next = "Pw-new-7d1b9a3c5e2f4a6b8c0d";
    s.set_env("RALPH_LMS_PASSWORD", next);
    let rotated = s.run(&["drift"]);
    assert_eq!(rotated.code, 2, "{rotated:?}");
    let applied = ok(&s, &["apply", "--auto-approve"]);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_ne!(doc[0]["hash"].as_str().unwrap(), hash);
    assert_eq!(hooks(&s), 3);
    assert_no_secret(&s, &[&first, &apply, &again, &rotated, &applied], &[SECRET, next, &hash, &hash[7..]]);
}

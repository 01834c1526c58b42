//! The `aspects` command line: output formats, exit codes, targeting, layering, the secrets
//! file, and the promise that no secret value ever leaves the process.

use std::os::unix::fs::PermissionsExt;

use aspects_e2e::{Sandbox, can_login, read_tree, sql};

const APP: &str = r#"
[secrets]
app_pw = { env = "APP_PW" }
gen_pw = { generate = 24 }

[mysql_database.app]
name = "@@app"

[mysql_user.app]
user = "@@app"
password = "${secrets.app_pw}"

[mysql_user.gen]
user = "@@gen"
password = "${secrets.gen_pw}"

[mysql_grant.app]
user = "${mysql_user.app.user}"
on = "${mysql_database.app.name}.*"
privileges = ["SELECT"]
"#;

const ENV_PW: &str = "Env-S3cret-value-9f1c";

fn app(name: &str) -> Sandbox {
    let mut s = Sandbox::new(name);
    s.write("aspects.toml", &s.plan(APP));
    s.set_env("APP_PW", ENV_PW);
    s
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let s = app("graph");
    let dot = s.run(&["graph"]);
    assert_eq!(dot.code, 0, "{dot:?}");
    insta::assert_snapshot!("graph_dot", s.scrub(&dot.stdout));
    let mermaid = s.run(&["graph", "--format", "mermaid"]);
    insta::assert_snapshot!("graph_mermaid", s.scrub(&mermaid.stdout));
    assert!(s.secrets_file().is_empty(), "graph writes nothing");
}

#[test]
fn usage_errors_exit_1_because_2_means_changes_present() {
    let s = app("usage");
    for args in [&["drift", "--jsn"][..], &["plan", "--nope"], &["frobnicate"], &["graph", "--format", "png"]] {
        let r = s.run(args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains("error:"), "{args:?}: {r:?}");
    }
    let r = s.run(&[]);
    assert_eq!(r.code, 1, "no command is a usage error too: {r:?}");
    assert!(r.stderr.contains("Usage: aspects"), "{r:?}");
    let r = s.run(&["--version"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Help is not an error; global options are listed apart from the command's own.
    let r = s.run(&["plan", "--help"]);
    assert_eq!(r.code, 0, "{r:?}");
    insta::assert_snapshot!("plan_help", r.stdout);
    let r = s.run(&["graph", "--help"]);
    assert!(r.stdout.contains("dot") && r.stdout.contains("mermaid"), "graph --format is documented: {r:?}");
}

#[test]
fn validate_checks_without_writing_and_plan_keeps_generated_secrets_0600() {
    let s = app("validate");
    let r = s.run(&["validate"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("The plan is valid, with 1 warning: 4 resources, 1 provider, 2 secrets"), "{r:?}");
    // The sandbox's database name holds `_`: a wildcard in `db.*`, so validate shows the exact form.
    let escaped = format!("on = '`{}app`.*'", s.prefix.replace('_', "\\_"));
    assert!(r.stderr.contains("are wildcards in a database grant") && r.stderr.contains(&escaped), "{r:?}");
    assert!(!s.secrets_path().exists(), "validate writes nothing");

    let r = s.run(&["plan"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("Generated secret gen_pw"), "{r:?}");
    let meta = std::fs::metadata(s.secrets_path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let first = s.secrets_file();
    assert_eq!(s.run(&["plan"]).code, 0);
    assert_eq!(s.secrets_file(), first, "a generated secret is made once");

    std::fs::set_permissions(s.secrets_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("readable by other users") && r.stderr.contains("chmod 600"), "{r:?}");
}

#[test]
fn drift_never_writes_and_needs_generated_secrets_to_exist() {
    let s = app("drift-nowrite");
    let r = s.run(&["drift"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("secret `gen_pw` has not been generated yet"), "{r:?}");
    assert!(!s.secrets_path().exists());
}

#[test]
fn json_plan_document_is_versioned_and_holds_no_secret() {
    let s = app("json");
    let r = s.run(&["plan", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["format_version"], "1");
    assert_eq!(doc["verdict"]["summary"]["add"], 4);
    doc["created_at"] = "[TIME]".into();
    for s in doc["secrets"].as_array_mut().unwrap() {
        assert!(s["fingerprint"].as_str().unwrap().starts_with("hmac-sha256:"));
        s["fingerprint"] = "[FINGERPRINT]".into();
    }
    doc["config"] = "[PLAN FILES]".into();
    insta::assert_snapshot!("plan_json", s.scrub(&serde_json::to_string_pretty(&doc).unwrap()));
}

#[test]
fn target_narrows_the_plan_to_the_address_and_its_dependencies() {
    let s = app("target");
    let r = s.run(&["plan", "--target", "mysql_grant.app"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Plan: 3 to add") && r.stdout.contains("Partial plan: only mysql_grant.app"), "{r:?}");
    assert!(!r.stdout.contains("mysql_user.gen"), "{r:?}");
    let r = s.run(&["plan", "--target", "mysql_database.app"]);
    assert!(r.stdout.starts_with("Plan: 1 to add"), "{r:?}");
    let r = s.run(&["plan", "--target", "mysql_user.nope"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("unknown --target mysql_user.nope"), "{r:?}");
    let r = s.run(&["apply", "--auto-approve", "--target", "mysql_user.gen"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("1 done"), "{r:?}");
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let s = app("confirm");
    let r = s.run(&["apply"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("standard input is not a terminal") && r.stderr.contains("--auto-approve"), "{r:?}");
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "nothing was applied: {r:?}");
}

#[test]
fn later_plan_files_override_earlier_ones() {
    let s = app("layers");
    s.write("prod.toml", "[mysql_database.app]\ncharset = \"latin1\"\n");
    let r = s.run(&["-f", "aspects.toml", "-f", "prod.toml", "plan", "--target", "mysql_database.app"]);
    assert!(r.stdout.lines().any(|l| l.contains("+ charset") && l.ends_with("= \"latin1\"")), "{r:?}");
    // A command-line var wins over the environment, which wins over the file.
    s.write("vars.toml", "[vars]\ndb = \"@@fromfile\"\n\n[mysql_database.app]\nname = \"${vars.db}\"\n");
    let mut s = s;
    s.set_env("ASPECTS_VAR_db", &format!("{}fromenv", s.prefix));
    let r = s.run(&["-f", "aspects.toml", "-f", "vars.toml", "plan", "--target", "mysql_database.app"]);
    assert!(r.stdout.contains("fromenv"), "{r:?}");
    let flag = format!("db={}fromflag", s.prefix);
    let r = s.run(&["-f", "aspects.toml", "-f", "vars.toml", "--var", &flag, "plan", "--target", "mysql_database.app"]);
    assert!(r.stdout.contains("fromflag") && !r.stdout.contains("fromenv"), "{r:?}");
}

#[test]
fn no_secret_value_reaches_output_plans_or_the_journal() {
    let s = app("leaks");
    let mut runs = Vec::new();
    let mut run = |args: &[&str], expect: i32| {
        let r = s.command(args).env("ASPECTS_LOG", "trace").output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
        assert_eq!(r.status.code(), Some(expect), "{args:?}: {text}");
        runs.push(text);
    };
    run(&["validate"], 0);
    run(&["plan", "-vv"], 0);
    run(&["plan", "--json"], 0);
    run(&["plan", "--out", "saved.json"], 0);
    run(&["apply", "saved.json", "-vv"], 0);
    sql(&[&format!("ALTER USER '{}app'@'%' IDENTIFIED BY 'Hand-S3cret-77'", s.prefix)]);
    run(&["drift", "-vv"], 2);
    run(&["drift", "--json"], 2);
    run(&["apply", "--auto-approve", "-vv"], 0);
    // A failing statement (a grant on a table that does not exist) must not echo secrets either.
    s.write(
        "aspects.toml",
        &s.plan(&APP.replace("${mysql_database.app.name}.*", "${mysql_database.app.name}.no_table")),
    );
    run(&["apply", "--auto-approve", "-vv"], 1);

    let secrets_file = s.secrets_file();
    let generated =
        secrets_file.lines().find_map(|l| l.strip_prefix("gen_pw = ")).unwrap().trim_matches('"').to_owned();
    let files: String = {
        let all = read_tree(&s.dir);
        all.replace(&secrets_file, "")
    };
    let everything = format!("{}{files}", runs.join("\n"));
    assert!(everything.contains("apply_finished"), "the journal was written and scanned");
    assert!(everything.contains("(sensitive"), "sensitive values were shown as markers");
    for secret in [ENV_PW, generated.as_str(), "Hand-S3cret-77"] {
        assert!(!everything.contains(secret), "a secret value leaked");
        let hash = mysql_native_hash(secret);
        assert!(!everything.to_uppercase().contains(&hash[1..]), "a password hash leaked");
    }
}

/// `*` + upper(hex(sha1(sha1(pw)))), computed by the server itself.
fn mysql_native_hash(pw: &str) -> String {
    aspects_e2e::query_one(&format!("SELECT CONCAT('*', UPPER(SHA1(UNHEX(SHA1('{}')))))", pw.replace('\'', "''")))
        .unwrap()
}

/// Runs `aspects apply` on a pseudo-terminal (util-linux `script`), answering the prompt.
fn apply_on_a_terminal(s: &Sandbox, answer: &str) -> (i32, String) {
    use std::io::Write;
    let cmd = format!("{} apply", aspects_e2e::binary().display());
    let mut child = s
        .command(&[])
        .get_envs()
        .fold(std::process::Command::new("script"), |mut c, (k, v)| {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
            c
        })
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(&s.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(answer.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn on_a_terminal_apply_asks_and_only_yes_applies() {
    let s = app("tty");
    let (code, out) = apply_on_a_terminal(&s, "no\n");
    assert_eq!(code, 1, "{out}");
    // The verdict is repeated right above the question: a long plan has scrolled it away.
    assert!(
        out.contains("Plan: 4 to add, 0 to change, 0 to destroy.\r\nDo you want to perform these actions?"),
        "{out:?}"
    );
    assert!(
        out.contains("Only 'yes' will be accepted") && out.contains("apply cancelled; nothing was changed"),
        "{out}"
    );
    assert_eq!(s.run(&["plan", "--detailed-exitcode"]).code, 2, "nothing was applied");

    let (code, out) = apply_on_a_terminal(&s, "yes\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Apply complete! 4 done"), "{out}");
    assert_eq!(s.run(&["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn secrets_never_appear_in_process_arguments() {
    let s = app("argv");
    let mut child = s.spawn(&["apply", "--auto-approve"]);
    // Sample the command lines of aspects and anything it starts until it exits.
    let mut seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        let pids =
            std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let parent =
                stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
            if pid == child.id() || parent == Some(child.id()) {
                seen.push(std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
            }
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(!seen.is_empty(), "the running process was sampled");
    let generated =
        s.secrets_file().lines().find_map(|l| l.strip_prefix("gen_pw = ")).unwrap().trim_matches('"').to_owned();
    for argv in &seen {
        let argv = String::from_utf8_lossy(argv);
        assert!(!argv.contains(ENV_PW) && !argv.contains(&generated), "a secret is in a process argument: {argv}");
    }
}

/// The layerings the project runs: the reference plan alone, and with the demo's local overlay.
const REFERENCE_LAYERS: &[&[&str]] = &[&["aspects.toml"], &["aspects.toml", "local.toml"]];

fn reference_plans() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plans")
}

fn layer_args(files: &[&str]) -> Vec<String> {
    files.iter().flat_map(|f| ["-f".to_owned(), reference_plans().join(f).display().to_string()]).collect()
}

#[test]
fn every_reference_plan_validates() {
    let s = Sandbox::new("reference-plans");
    // Every plan file in plans/ is part of a layering checked here.
    for entry in std::fs::read_dir(reference_plans()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") && !name.ends_with(".secrets.toml") {
            assert!(REFERENCE_LAYERS.iter().any(|l| l.contains(&name.as_str())), "plans/{name} is not checked");
        }
    }
    for layers in REFERENCE_LAYERS {
        // A secrets file any reader would refuse (others may read it): validate and graph never
        // open it. Nor do they need MYSQL_ROOT_PASSWORD: a pull-request check has no production
        // credentials.
        let secrets = s.write("ref.secrets.toml", "x = \"y\"\n");
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
        for command in ["validate", "graph"] {
            let mut args = layer_args(layers);
            args.extend(["--secrets".to_owned(), secrets.display().to_string(), command.to_owned()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = s.command(&args).env_remove("MYSQL_ROOT_PASSWORD").output().unwrap();
            assert!(r.status.success(), "{layers:?}: {command}: {}", String::from_utf8_lossy(&r.stderr));
        }
        assert_eq!(std::fs::read_to_string(&secrets).unwrap(), "x = \"y\"\n", "nothing written");
    }
}

/// The demo's layering reaches the test server through the endpoint vars `stack up` exports, with
/// no root password (the overlay unsets it) and no MYSQL_ROOT_PASSWORD in the environment.
#[test]
fn the_local_overlay_plans_the_reference_plan_against_the_stack() {
    let mut s = Sandbox::new("local-overlay");
    let url = aspects_e2e::mysql_url();
    let (user, address) = url.trim_start_matches("mysql://").split_once('@').expect("mysql://USER@HOST:PORT");
    let (host, port) = address.rsplit_once(':').expect("a port");
    s.set_env("ASPECTS_VAR_MYSQL_ROOT_USERNAME", user);
    s.set_env("ASPECTS_VAR_MYSQL_HOST", host);
    s.set_env("ASPECTS_VAR_MYSQL_PORT", port);
    // Its own deployment and object names: the demo's deployment may own the reference names on
    // this server. A third layer renames the deployment, as a site file would.
    // On ClickHouse the site file also names its own meta database: the function names are fixed,
    // and another deployment's records of them are not this one's business.
    let name = format!("{}superset", s.prefix);
    // The LMS rows' names are Tutor's fixed ones: the site file renames them too, and its files go
    // to a folder of its own.
    let site = s.write(
        "site.toml",
        &format!(
            "[deployment]\nname = \"{p}local\"\n\n[providers.clickhouse]\nmeta_database = \"{p}meta\"\n\n\
             [lms_user.superset]\nusername = \"{p}superset\"\n\n[lms_user.aspects]\nusername = \"{p}aspects\"\n\n\
             [lms_oauth_application.superset_sso]\nname = \"{p}sso\"\n\n\
             [lms_oauth_application.superset_sso_dev]\nname = \"{p}sso-dev\"\n\n\
             [lms_router_configuration.ralph]\nroute_url = \"http://ralph:8100/xAPI/{p}\"\n\n\
             [superset_user.lms]\nusername = \"{p}lms\"\nemail = \"{p}lms@example.com\"\n",
            p = s.prefix,
        ),
    );
    // The Aspects bundle's UUIDs are fixed and the upstream-bundle test imports them: off here.
    s.set_env("ASPECTS_VAR_ASPECTS_SUPERSET_ASSETS", "false");
    for role in ["INSTRUCTOR", "OPERATOR", "STUDENT"] {
        s.set_env(&format!("ASPECTS_VAR_SUPERSET_ROLE_{role}"), &format!("{}{}", s.prefix, role.to_lowercase()));
    }
    s.set_env("ASPECTS_VAR_SUPERSET_OAUTH2_CLIENT_ID", &format!("{}sso", s.prefix));
    s.set_env("ASPECTS_VAR_SUPERSET_OAUTH2_CLIENT_ID_DEV", &format!("{}sso-dev", s.prefix));
    for (k, v) in aspects_e2e::local_overlay_env(&s) {
        s.set_env(&k, &v);
    }
    s.set_env("ASPECTS_VAR_SUPERSET_DB_NAME", &name);
    s.set_env("ASPECTS_VAR_SUPERSET_DB_USERNAME", &name);
    let ch = aspects_e2e::clickhouse::url();
    let (ch_host, ch_port) = ch.trim_start_matches("http://").trim_end_matches('/').rsplit_once(':').expect("a port");
    s.set_env("ASPECTS_VAR_CLICKHOUSE_HOST", ch_host);
    s.set_env("ASPECTS_VAR_CLICKHOUSE_INTERNAL_HTTP_PORT", ch_port);
    let names = [
        "RALPH_DATABASE",
        "ASPECTS_EVENT_SINK_DATABASE",
        "ASPECTS_VECTOR_DATABASE",
        "DBT_PROFILE_TARGET_DATABASE",
        "ASPECTS_CLICKHOUSE_LRS_USER",
        "ASPECTS_CLICKHOUSE_VECTOR_USER",
        "ASPECTS_CLICKHOUSE_REPORT_USER",
        "ASPECTS_CLICKHOUSE_CMS_USER",
    ];
    for var in names {
        s.set_env(&format!("ASPECTS_VAR_{var}"), &format!("{}{}", s.prefix, var.to_lowercase()));
    }
    let secrets = s.path("local.secrets.toml").display().to_string();
    let mut args = layer_args(&["aspects.toml", "local.toml"]);
    args.extend(["-f".to_owned(), site.display().to_string()]);
    args.extend(["--secrets".to_owned(), secrets, "plan".to_owned(), "--json".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r: aspects_e2e::Run = s.command(&args).env_remove("MYSQL_ROOT_PASSWORD").output().unwrap().into();
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["deployment"], format!("{}local", s.prefix), "{r:?}");
    let planned: Vec<(&str, &str)> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["address"].as_str().unwrap(), c["action"].as_str().unwrap()))
        .collect();
    // The two functions exist already when the demo ran on this stack: adopted then.
    let (functions, planned): (Vec<_>, Vec<_>) =
        planned.into_iter().partition(|(a, _)| a.starts_with("clickhouse_function."));
    assert!(functions.len() == 2 && functions.iter().all(|(_, action)| ["create", "adopt"].contains(action)), "{r:?}");
    // Everything else the reference plan declares is new on this server.
    let text = std::fs::read_to_string(reference_plans().join("aspects.toml")).unwrap();
    // Tables in order, with their bodies; those switched on only for ASPECTS_XAPI_SOURCE = "ralph"
    // are off here (the local overlay keeps the default, "vector").
    let tables = text.split("\n[").skip(1).filter_map(|t| t.split_once("]\n"));
    let mut declared: Vec<&str> = tables
        .filter(|(_, body)| {
            !body.lines().any(|l| l.starts_with("when = ") && (l.contains("== ralph") || l.contains("SUPERSET_ASSETS")))
        })
        .map(|(a, _)| a)
        .filter(|a| {
            a.contains('.') && !["providers.", "vars.", "clickhouse_function."].iter().any(|p| a.starts_with(p))
        })
        .collect();
    declared.sort();
    let want: Vec<(&str, &str)> = declared.into_iter().map(|a| (a, "create")).collect();
    assert_eq!(planned, want, "{r:?}");
}

#[test]
fn a_secrets_file_passed_as_a_plan_file_is_refused_without_echoing_it() {
    let s = app("secrets-as-plan");
    assert_eq!(s.run(&["plan"]).code, 0);
    let r = s.run(&["-f", s.secrets_path().to_str().unwrap(), "validate"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("is a secrets file, not a plan file") && r.stderr.contains("--secrets"), "{r:?}");
    let generated =
        s.secrets_file().lines().find_map(|l| l.strip_prefix("gen_pw = ")).unwrap().trim_matches('"').to_owned();
    assert!(!r.stderr.contains(&generated), "{r:?}");
}

#[test]
fn a_lost_secrets_file_never_silently_re_keys_owned_objects() {
    let s = app("lost-secrets");
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    let saved = s.secrets_file();
    let gen_pw = saved.lines().find_map(|l| l.strip_prefix("gen_pw = ")).unwrap().trim_matches('"').to_owned();
    let user = format!("{}gen", s.prefix);

    // The secrets file belongs to the deployment, not to the plan file's name.
    std::fs::copy(s.path("aspects.toml"), s.path("renamed.toml")).unwrap();
    let r = s.run(&["-f", "renamed.toml", "plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "renaming the plan file changes nothing: {r:?}");

    // The file is gone (moved away): a new gen_pw would re-key a live user. Refused, unsaved.
    let elsewhere = s.path("kept-safe.toml");
    std::fs::rename(s.secrets_path(), &elsewhere).unwrap();
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let r = s.run(args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        let err = s.scrub(&r.stderr);
        assert!(err.contains("refusing to re-key mysql_user.gen from secret secrets.gen_pw"), "{err}");
        assert!(err.contains(".aspects/@@dep.secrets.toml has no value for it"), "{err}");
        assert!(err.contains("--secrets PATH") && err.contains("--allow-new-secrets"), "{err}");
        assert!(!s.secrets_path().exists(), "{args:?}: a refused run saves no secret");
    }
    assert!(can_login(&user, &gen_pw), "the live password was not touched");

    // Pointing at the file finds the values again.
    let r = s.run(&["--secrets", elsewhere.to_str().unwrap(), "plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Re-keying on purpose is possible, and only then is the new value saved.
    let r = s.run(&["plan", "--allow-new-secrets", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("password") && r.stdout.contains("(sensitive"), "{r:?}");
    assert!(s.secrets_file().contains("gen_pw = "));
    assert!(can_login(&user, &gen_pw), "plan changes nothing");

    // Renaming the account makes a new one instead of re-keying the live one: not refused.
    std::fs::remove_file(s.secrets_path()).unwrap();
    s.write("moved.toml", &format!("[mysql_user.gen]\nuser = \"{user}2\"\n"));
    let r = s.run(&["-f", "aspects.toml", "-f", "moved.toml", "plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("-/+ mysql_user.gen"), "{r:?}");
}

#[test]
fn a_secrets_file_of_another_user_is_refused() {
    let s = app("secrets-owner");
    assert_eq!(s.run(&["plan"]).code, 0);
    // The tests run as root; 65534 is nobody.
    std::os::unix::fs::chown(s.secrets_path(), Some(65534), None).unwrap();
    let before = s.secrets_file();
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("belongs to uid 65534, not to the user running aspects"), "{r:?}");
    assert!(r.stderr.contains("--secrets PATH"), "{r:?}");
    assert_eq!(s.secrets_file(), before, "not rewritten");
}

#[test]
fn first_runs_started_together_agree_on_generated_secrets() {
    let s = app("first-runs");
    let runs: Vec<_> = (0..4).map(|_| s.spawn(&["plan"])).collect();
    let outputs: Vec<_> = runs.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    assert!(outputs.iter().all(|o| o.status.success()), "{outputs:?}");
    // The lock is held from load to save: one run generates and saves, the others find it.
    let generated = outputs.iter().filter(|o| String::from_utf8_lossy(&o.stderr).contains("Generated secret")).count();
    assert_eq!(generated, 1, "{outputs:?}");
    let saved = s.secrets_file();
    assert_eq!(saved.matches("gen_pw = ").count(), 1, "{saved}");
    assert_eq!(s.run(&["plan"]).code, 0);
    assert_eq!(s.secrets_file(), saved, "later runs reuse it");
}

/// What the reference plan renders for the services is what they can read: the LMS settings
/// snippet runs as Python, its YAML twin and Vector's TOML parse, Superset's config compiles, and
/// every secret each service needs is in its place (read by Python's own parsers, with the LMS
/// fixture's python).
#[test]
fn the_reference_plans_settings_files_parse_and_carry_their_secrets() {
    let mut s = Sandbox::new("reference-render");
    s.set_env("ASPECTS_STACK_LMS_FERNET_KEY", "not-used-by-render");
    s.set_env("ASPECTS_STACK_SUPERSET_PASSWORD", "not-used-by-render");
    let generated = [
        "SUPERSET_DB_PASSWORD",
        "ASPECTS_CLICKHOUSE_LRS_PASSWORD",
        "ASPECTS_CLICKHOUSE_VECTOR_PASSWORD",
        "ASPECTS_CLICKHOUSE_REPORT_PASSWORD",
        "ASPECTS_CLICKHOUSE_CMS_PASSWORD",
        "SUPERSET_OAUTH2_CLIENT_SECRET",
        "SUPERSET_LMS_PASSWORD",
        "SUPERSET_SECRET_KEY",
        "RALPH_ADMIN_PASSWORD",
        "RALPH_LMS_PASSWORD",
    ];
    let value = |name: &str| format!("v{}", name.to_lowercase().replace('_', ""));
    let secrets: String = generated.iter().map(|n| format!("{n} = \"{}\"\n", value(n))).collect();
    let path = s.write("local.secrets.toml", &secrets);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut args = layer_args(&["aspects.toml", "local.toml"]);
    args.extend(["--secrets", path.to_str().unwrap(), "render", "--out", "out"].map(String::from));
    let r = s.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{r:?}");
    for name in generated {
        assert!(!r.all().contains(&value(name)), "{name} leaked: {r:?}");
    }
    let read = r##"
import ast, json, sys, tomllib, yaml
out = sys.argv[1]
lms = {}
exec(open(out + "/openedx/aspects_settings.py").read(), lms)
yml = yaml.safe_load(open(out + "/openedx/aspects_settings.yml"))
vector = tomllib.load(open(out + "/vector/vector.toml", "rb"))
superset = {t.targets[0].id: t.value for t in ast.parse(open(out + "/superset/superset_config_aspects.py").read()).body
            if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name)}
env = dict(l.split("=", 1) for l in open(out + "/ralph/env").read().splitlines() if l and not l.startswith("#"))
auth = json.load(open(out + "/ralph/auth.json"))
print(json.dumps({
    "py_sink": lms["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"],
    "py_superset_password": lms["SUPERSET_CONFIG"]["password"],
    "py_tag_enabled": lms["EVENT_SINK_CLICKHOUSE_TAG_ENABLED"],
    "py_dashboards": [d["slug"] for d in lms["ASPECTS_INSTRUCTOR_DASHBOARDS"]],
    "py_filter_steps": sorted(s for f in lms["OPEN_EDX_FILTERS_CONFIG"].values() for s in f["pipeline"]),
    "yml_same_as_py": all(yml[k] == lms[k] for k in yml),
    "vector_xapi": [vector["sinks"]["clickhouse_xapi"][k] for k in ("database", "table")],
    "vector_auth": vector["sinks"]["clickhouse_xapi"]["auth"],
    "superset_secret_key": ast.literal_eval(superset["SECRET_KEY"]),
    "superset_db": ast.literal_eval(superset["SQLALCHEMY_DATABASE_URI"]),
    "ralph_clickhouse": [env["RALPH_BACKENDS__LRS__CLICKHOUSE__USERNAME"], env["RALPH_BACKENDS__LRS__CLICKHOUSE__PASSWORD"]],
    "ralph_users": [u["username"] for u in auth],
}))
"##;
    let out = std::process::Command::new(aspects_e2e::stack_env("ASPECTS_STACK_LMS_PYTHON"))
        .args(["-c", read, s.path("out").to_str().unwrap()])
        .output()
        .unwrap();
    let run = aspects_e2e::Run::from(out);
    assert_eq!(run.code, 0, "{run:?}");
    let got: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let want = serde_json::json!({
        "py_sink": {
            "url": "http://127.0.0.1:18123", "username": "ch_cms", "password": value("ASPECTS_CLICKHOUSE_CMS_PASSWORD"),
            "xapi_database": "openedx", "database": "event_sink", "timeout_secs": 5,
        },
        "py_superset_password": value("SUPERSET_LMS_PASSWORD"),
        "py_tag_enabled": true,
        "py_dashboards": ["course-dashboard", "learner-groups"],
        "py_filter_steps": [
            "platform_plugin_aspects.extensions.filters.AddSupersetTab",
            "platform_plugin_aspects.extensions.filters.AddSupersetTabToInstructorDashboard",
        ],
        "yml_same_as_py": true,
        "vector_xapi": ["openedx", "xapi_events_all"],
        "vector_auth": { "strategy": "basic", "user": "ch_vector", "password": value("ASPECTS_CLICKHOUSE_VECTOR_PASSWORD") },
        "superset_secret_key": value("SUPERSET_SECRET_KEY"),
        "superset_db": format!("mysql://superset:{}@127.0.0.1:3307/superset", value("SUPERSET_DB_PASSWORD")),
        "ralph_clickhouse": ["ch_lrs", value("ASPECTS_CLICKHOUSE_LRS_PASSWORD")],
        "ralph_users": ["ralph", "lms"],
    });
    assert_eq!(got, want);
    // With Ralph as the xAPI source, the event sink reads xAPI from Ralph's database.
    s.set_env("ASPECTS_VAR_ASPECTS_XAPI_SOURCE", "ralph");
    args.pop();
    args.push("ralph-out".to_owned());
    let r = s.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{r:?}");
    let yml = std::fs::read_to_string(s.path("ralph-out/openedx/aspects_settings.yml")).unwrap();
    assert!(yml.contains("  xapi_database: \"xapi\"\n"), "{yml}");
}

//! Diagnostics never show a secret, whatever the input: known values (the secrets file's, and
//! those read from env and file sources) and lines that may hold one are pointed at, not shown.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use aspects_config::{LoadOptions, SecretValues, SourceFile, load_sources};
use aspects_core::Registry;

const HEAD: &str = "[providers.mysql]\nurl = \"mysql://root@127.0.0.1:3306\"\n\n[secrets]\npw = { generate = 24 }\n\n";

/// A folder of its own for one test.
fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aspects-diag-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Loads `plan` beside a secrets file holding `pw = "<stored>"`, and returns the rendered error.
fn error(test: &str, stored: &str, plan: &str) -> String {
    error_reading(test, stored, plan, SecretValues::Existing)
}

fn error_reading(test: &str, stored: &str, plan: &str, secret_values: SecretValues) -> String {
    let d = dir(test);
    let secrets = d.join("p.secrets.toml");
    std::fs::write(&secrets, format!("pw = \"{stored}\"\n")).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let opts = LoadOptions {
        secrets_path: Some(secrets),
        secret_values,
        vars: Default::default(),
        vars_from_env: false,
        rotate: Default::default(),
    };
    let registry = Registry::default().with(aspects_mysql::schema());
    let files = vec![SourceFile { path: d.join("p.toml"), text: plan.to_owned() }];
    let Err(e) = load_sources(files, &registry, &opts) else { panic!("{test}: expected an error") };
    e.to_string()
}

#[test]
fn an_unquoted_password_is_not_echoed_by_the_syntax_error() {
    let out = error("unquoted", "Stored-Value-1234", &format!("{HEAD}[mysql_user.app]\npassword = Value123\n"));
    assert!(out.contains("invalid TOML") && out.contains("p.toml:8:12"), "{out}");
    assert!(out.contains("line not shown"), "{out}");
    assert!(!out.contains("Value123"), "{out}");
}

#[test]
fn an_unterminated_string_holding_a_stored_secret_is_not_echoed() {
    // validate reads no secret for the plan, but still masks what the secrets file holds.
    for values in [SecretValues::Existing, SecretValues::Generate, SecretValues::Unread] {
        let plan = format!("{HEAD}[mysql_database.app]\nname = \"Stored-Value-1234\n");
        let out = error_reading("unterminated", "Stored-Value-1234", &plan, values);
        assert!(out.contains("invalid TOML") && out.contains("p.toml:8:"), "{values:?}: {out}");
        assert!(out.contains("line not shown: it holds a secret"), "{values:?}: {out}");
        assert!(!out.contains("Stored-Value-1234"), "{values:?}: {out}");
    }
}

#[test]
fn a_value_written_into_the_secrets_table_is_not_echoed() {
    let out = error("in-secrets", "Stored-Value-1234", "[secrets]\nadmin = hunter2-the-password\n");
    assert!(out.contains("invalid TOML") && out.contains("p.toml:2:"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn a_semantic_error_masks_secrets_read_from_their_sources() {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("ASPECTS_DIAG_TEST_SECRET", "From-The-Environment-99") };
    let plan = "[providers.mysql]\nurl = \"mysql://root@127.0.0.1:3306\"\n[secrets]\nenvpw = { env = \"ASPECTS_DIAG_TEST_SECRET\" }\n\
                [mysql_database.app]\nname = \"From-The-Environment-99\"\ncharset = \"no such charset\"\n";
    let out = error("semantic", "Stored-Value-1234", plan);
    assert!(out.contains("p.toml:6:"), "{out}");
    assert!(!out.contains("From-The-Environment-99"), "{out}");
}

#[test]
fn lines_that_only_name_secrets_are_still_shown() {
    let plan = format!("{HEAD}[mysql_user.app]\nuser = \"app\"\npassword = \"${{secrets.nope}}\"\n");
    let out = error("shown", "Stored-Value-1234", &plan);
    assert!(out.contains("unknown secret `secrets.nope`"), "{out}");
    assert!(out.contains("9 | password = \"${secrets.nope}\"\n  |             ^^^^^^^^^^^^^^^"), "{out}");
}

//! The loader against a small stand-in schema (the real providers' schemas are exercised by the
//! end-to-end corpus in tests/).

use std::path::PathBuf;

use aspects_config::{LoadOptions, SecretValues, SourceFile, load_sources};
use aspects_core::{Address, AttrSchema, AttrType, KindSchema, Registry, SystemSchema, Value};

fn registry() -> Registry {
    Registry::default().with(SystemSchema {
        system: "db",
        provider_attrs: vec![
            AttrSchema::new("url", AttrType::String, "where the server is").required(),
            AttrSchema::new("password", AttrType::String, "admin password").write_only_secret(),
        ],
        kinds: vec![
            KindSchema {
                kind: "db_database",
                attrs: vec![
                    AttrSchema::new("name", AttrType::String, "Database name.").identity(),
                    AttrSchema::new("charset", AttrType::String, "Character set.").default("utf8mb4"),
                ],
                data_bearing: true,
                rank: 0,
                doc: "",
                ..Default::default()
            },
            KindSchema {
                kind: "db_user",
                attrs: vec![
                    AttrSchema::new("user", AttrType::String, "The login name.").identity(),
                    AttrSchema::new("password", AttrType::String, "password").write_only_secret().required(),
                    AttrSchema::new("note", AttrType::String, "Free text.").warn(warn_todo),
                    AttrSchema {
                        sensitive: true,
                        ..AttrSchema::new("dsn", AttrType::String, "A connection string.").warn(warn_todo)
                    },
                    AttrSchema::new("limits", AttrType::List(Box::new(AttrType::Int)), "A few numbers."),
                ],
                data_bearing: false,
                rank: 1,
                doc: "",
                ..Default::default()
            },
        ],
    })
}

fn warn_todo(v: &Value) -> Option<String> {
    v.as_str().filter(|s| s.contains("TODO")).map(|_| "a TODO was left in; finish the note".to_owned())
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("aspects-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load(files: &[&str]) -> Result<aspects_config::Loaded, String> {
    let files = files
        .iter()
        .enumerate()
        .map(|(i, t)| SourceFile { path: dir().join(format!("layer{i}.toml")), text: (*t).to_owned() })
        .collect();
    load_with(files, Default::default())
}

fn load_with(
    files: Vec<SourceFile>,
    vars: std::collections::BTreeMap<String, String>,
) -> Result<aspects_config::Loaded, String> {
    // Each load its own secrets folder: a generating load locks the folder above it.
    static LOADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = LOADS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let above = dir().join(format!("load{n}"));
    std::fs::create_dir_all(&above).unwrap();
    let opts = LoadOptions {
        secrets_path: Some(above.join(".aspects/none.secrets.toml")),
        secret_values: SecretValues::Generate,
        vars,
        vars_from_env: true,
        rotate: Default::default(),
    };
    load_sources(files, &registry(), &opts).map_err(|e| e.to_string())
}

const BASE: &str = r#"
[vars]
db = "superset"
suffix = "${vars.db}_x"

[secrets]
pw = { generate = 24 }

[providers.db]
url = "db://127.0.0.1"

[db_database.main]
name = "${vars.db}"

[db_user.app]
user = "${db_database.main.name}"
password = "${secrets.pw}"
note = "for ${vars.suffix} on ${db_database.main.charset}"
"#;

#[test]
fn references_resolve_and_become_edges() {
    let l = load(&[BASE]).unwrap();
    let user = &l.desired.resources[&Address::new("db_user", "app")];
    assert_eq!(user.str("user"), Some("superset"));
    assert_eq!(user.str("note"), Some("for superset_x on utf8mb4"));
    assert!(matches!(user.get("password"), Some(Value::Sensitive(_))));
    assert!(user.depends_on.contains(&Address::new("db_database", "main")));
    assert_eq!(l.graph.order()[0], Address::new("db_database", "main"));
    assert_eq!(l.desired.deployment, "layer0");
}

#[test]
fn later_files_override_earlier_ones() {
    let l = load(&[BASE, "[deployment]\nname = \"prod\"\n[vars]\ndb = \"other\"\n"]).unwrap();
    assert_eq!(l.desired.resources[&Address::new("db_database", "main")].str("name"), Some("other"));
    assert_eq!(l.desired.deployment, "prod");
}

#[test]
fn a_secret_inside_a_string_makes_the_string_secret() {
    let l = load(&[BASE, "[db_user.app]\ndsn = \"u:${secrets.pw}@h\"\n"]).unwrap();
    let note = l.desired.resources[&Address::new("db_user", "app")].get("dsn").unwrap();
    assert!(matches!(note, Value::Sensitive(_)));
    // Shown with the secret part masked: the rest of the text is no secret.
    assert_eq!(format!("{note:?}"), r#""u:(sensitive)@h""#);
}

#[test]
fn sensitive_attributes_must_come_from_secrets() {
    let Err(e) = load(&[BASE, "[db_user.app]\npassword = \"literal\"\n"]) else { panic!("expected an error") };
    assert!(e.contains("`password` is sensitive, so its value must come from [secrets]"), "{e}");
    assert!(e.contains("layer1.toml:2:12"), "{e}");
}

#[test]
fn reference_cycles_name_the_whole_path() {
    let Err(e) = load(&[BASE, "[db_database.main]\nname = \"${db_user.app.user}\"\n"]) else {
        panic!("expected an error")
    };
    assert!(e.contains("reference cycle: db_database.main.name -> db_user.app.user -> db_database.main.name"), "{e}");
}

#[test]
fn resource_cycles_through_different_attributes_are_caught_by_the_graph() {
    let e = load(&[BASE, "[db_database.main]\ncharset = \"${db_user.app.user}x\"\n"]);
    let Err(e) = e else { panic!("expected an error") };
    assert!(e.contains("cycle"), "{e}");
    assert!(e.contains("db_database.main") && e.contains("db_user.app"), "{e}");
}

#[test]
fn every_error_is_reported_at_once() {
    let Err(e) = load(&["[db_database.a]\nnme = \"x\"\n[db_user.b]\nuser = 1\nlimits = [1, \"x\"]\n"]) else {
        panic!("expected an error")
    };
    assert!(e.contains("unknown attribute `nme`") && e.contains("did you mean `name`?"), "{e}");
    assert!(e.contains("`user` must be a string, not an integer"), "{e}");
    assert!(e.contains("`limits` must be a list of integers, not a list containing a string"), "{e}");
    assert!(e.contains("is missing `password`"), "{e}");
    assert!(e.contains("needs provider `db`"), "{e}");
}

#[test]
fn env_secrets_are_read_and_missing_ones_are_named() {
    let plan = |var: &str| format!("[secrets]\np = {{ env = \"{var}\" }}\n[vars]\nuses = \"${{secrets.p}}\"\n");
    let Err(e) = load(&[&plan("ASPECTS_TEST_SURELY_UNSET_VAR")]) else { panic!("expected an error") };
    assert!(e.contains("environment variable ASPECTS_TEST_SURELY_UNSET_VAR, which is not set"), "{e}");
    assert!(e.contains("export ASPECTS_TEST_SURELY_UNSET_VAR="), "{e}");
    // PATH is always set: the secret loads and its value is never part of any rendering.
    let l = load(&[&plan("PATH")]).unwrap();
    assert_eq!(l.secrets[0].value.expose(), std::env::var("PATH").unwrap());
}

#[test]
fn literal_dollar_brace_is_escaped() {
    let l = load(&[BASE, "[db_user.app]\nnote = \"cost $${x} $5\"\n"]).unwrap();
    assert_eq!(l.desired.resources[&Address::new("db_user", "app")].str("note"), Some("cost ${x} $5"));
}

#[test]
fn the_environment_overrides_a_declared_var() {
    // Unique name: tests in this binary share the process environment.
    let plan = "[vars]\nonly_here_7f3 = \"file\"\n[providers.db]\nurl = \"${vars.only_here_7f3}\"\n";
    assert_eq!(load(&[plan]).unwrap().desired.providers["db"].attrs["url"], Value::from("file"));
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("ASPECTS_VAR_only_here_7f3", "from-env") };
    assert_eq!(load(&[plan]).unwrap().desired.providers["db"].attrs["url"], Value::from("from-env"));
}

#[test]
fn a_plan_file_holding_a_secret_value_is_refused_without_echoing_it() {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("ASPECTS_TEST_PASTED_SECRET", "Pasted-Secret-123") };
    let plan = "[secrets]\np = { env = \"ASPECTS_TEST_PASTED_SECRET\" }\n[vars]\noops = \"Pasted-Secret-123\"\nuses = \"${secrets.p}\"\n";
    let Err(e) = load(&[plan]) else { panic!("expected an error") };
    assert!(e.contains("the plan file holds the value of secret `p`"), "{e}");
    assert!(e.contains("layer0.toml:4:9") && e.contains("line not shown: it holds a secret"), "{e}");
    assert!(!e.contains("Pasted-Secret-123"), "{e}");
}

#[test]
fn command_line_vars_override_and_must_be_declared() {
    let file = || vec![SourceFile { path: dir().join("v.toml"), text: BASE.to_owned() }];
    let l = load_with(file(), [("db".to_owned(), "from-flag".to_owned())].into()).unwrap();
    assert_eq!(l.desired.resources[&Address::new("db_database", "main")].str("name"), Some("from-flag"));
    let Err(e) = load_with(file(), [("dbb".to_owned(), "x".to_owned())].into()) else { panic!("expected an error") };
    assert!(
        e.contains("--var dbb=... names a variable the plan does not declare") && e.contains("did you mean `db`?"),
        "{e}"
    );
}

#[test]
fn attributes_remember_where_their_values_are_written() {
    let l = load(&[BASE, "[db_user.app]\n\nnote   = \"over\"\n"]).unwrap();
    let user = &l.desired.resources[&Address::new("db_user", "app")];
    let at = |f: &str, line: usize, col: usize| format!("{}:{line}:{col}", dir().join(f).display());
    assert_eq!(user.origin_of("user"), at("layer0.toml", 16, 8));
    // The overriding layer's value, not the table header or the base file.
    assert_eq!(user.origin_of("note"), at("layer1.toml", 3, 10));
    // Not written: a default, located at the table.
    let db = &l.desired.resources[&Address::new("db_database", "main")];
    assert!(!db.attr_origins.iter().any(|(name, _)| *name == "charset"));
    assert_eq!(db.origin_of("charset"), db.origin);
}

#[test]
fn resources_know_every_secret_they_derive_from() {
    let plan = r#"
[vars]
v = "${secrets.s1}"
plain = "x"

[secrets]
s1 = { generate = 24 }
s2 = { generate = 24 }
unused = { generate = 24 }

[providers.db]
url = "db://h"

[db_user.a]
user = "a"
password = "${secrets.s2}"
dsn = "${vars.v}"

[db_user.b]
user = "b"
password = "${secrets.s2}"
dsn = "db://b:${db_user.a.dsn}@h"

[db_user.c]
user = "${vars.plain}"
password = "${secrets.s2}"
dsn = "${db_user.b.dsn}"

[db_database.d]
name = "${db_user.c.user}"
"#;
    let l = load(&[plan]).unwrap();
    let secrets = |n: &str| {
        let a = Address::parse(n).unwrap();
        l.desired.resources[&a].secrets.iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(secrets("db_user.a"), ["s1", "s2"]);
    // Through another resource's attribute, and through that one's var: transitively.
    assert_eq!(secrets("db_user.c"), ["s1", "s2"]);
    // A plain attribute of a resource that holds secrets carries none of them.
    assert!(secrets("db_database.d").is_empty());
}

#[test]
fn warnings_are_located_and_do_not_fail_the_load() {
    let l = load(&[BASE, "[db_user.app]\nnote = \"TODO later\"\n"]).unwrap();
    assert_eq!(l.warnings.len(), 1);
    let w = l.render_warnings(false);
    assert!(w.starts_with("warning: `note`: a TODO was left in; finish the note\n"), "{w}");
    assert!(w.contains("layer1.toml:2:8"), "{w}");
    assert!(!w.contains("error"), "{w}");
    // With errors, they are rendered together and counted apart.
    let Err(e) = load(&[BASE, "[db_user.app]\nnote = \"TODO\"\nuser = 1\n"]) else { panic!("expected an error") };
    assert!(e.contains("warning: `note`") && e.contains("error: `user` must be a string"), "{e}");
    assert!(e.ends_with("1 error, 1 warning\n"), "{e}");
}

#[test]
fn thousands_of_alike_warnings_show_the_first_few_and_a_count() {
    let users: String = (0..3000)
        .map(|i| format!("[db_user.u{i}]\nuser = \"u{i}\"\npassword = \"${{secrets.pw}}\"\nnote = \"TODO {i}\"\n"))
        .collect();
    let l = load(&[BASE, &users]).unwrap();
    assert_eq!(l.warnings.len(), 3000);
    let short = l.render_warnings(false);
    assert_eq!(short.matches("warning: `note`: a TODO").count(), 5, "{short}");
    assert!(
        short.ends_with(
            "warning: 2995 more like the above about `note` (run with -v to see every one)\n\n3000 warnings\n"
        ),
        "{short}"
    );
    assert!(short.lines().count() < 60, "{short}");
    let all = l.render_warnings(true);
    assert_eq!(all.matches("warning: `note`: a TODO").count(), 3000);
    assert!(!all.contains("more like the above"));
    // A failed load groups them the same way.
    let Err(e) = load(&[BASE, &users, "[db_user.app]\nuser = 1\n"]) else { panic!("expected an error") };
    assert!(e.contains("error: `user` must be a string") && e.contains("2995 more like the above"), "{e}");
    assert!(e.ends_with("1 error, 3000 warnings\n"), "{e}");
}

#[test]
fn warnings_never_look_at_secret_values() {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("ASPECTS_TEST_TODO_SECRET", "has TODO inside") };
    let plan = "[secrets]\nt = { env = \"ASPECTS_TEST_TODO_SECRET\" }\n[db_user.app]\ndsn = \"x ${secrets.t}\"\n";
    let l = load(&[BASE, plan]).unwrap();
    assert!(l.warnings.is_empty(), "{}", l.render_warnings(false));
}

#[test]
fn secrets_go_only_into_attributes_that_carry_them() {
    let refused = [
        // Directly, built into a string, through a var, through another resource, inside a list,
        // and into a provider block.
        ("[db_user.app]\nuser = \"app_${secrets.pw}\"\n", "`user`", "secrets.pw", "layer1.toml:2:8"),
        (
            "[vars]\nv = \"x${secrets.pw}\"\n[db_database.main]\nname = \"${vars.v}\"\n",
            "`name`",
            "secrets.pw",
            "layer1.toml:4:8",
        ),
        (
            "[db_database.main]\nname = \"${db_user.app.dsn}\"\n[db_user.app]\ndsn = \"${secrets.pw}\"\n",
            "`name`",
            "secrets.pw",
            "layer1.toml:2:8",
        ),
        ("[db_user.app]\nlimits = [\"${secrets.pw}\"]\n", "`limits`", "secrets.pw", "layer1.toml:2:10"),
        ("[providers.db]\nurl = \"db://u:${secrets.pw}@h\"\n", "`url`", "secrets.pw", "layer1.toml:2:7"),
    ];
    for (overlay, attr, secret, at) in refused {
        let Err(e) = load(&[BASE, overlay]) else { panic!("expected an error for {overlay}") };
        assert!(
            e.contains(&format!("error: {attr} cannot hold a secret, but its value is built from {secret}")),
            "{e}"
        );
        assert!(e.contains(at) && e.contains("secrets go only into attributes that carry them"), "{e}");
    }
}

#[test]
fn two_resources_naming_one_object_are_refused_with_both_places() {
    let Err(e) = load(&[BASE, "[db_database.other]\nname = \"superset\"\n"]) else { panic!("expected an error") };
    assert!(e.contains("db_database.other is the same object as db_database.main (name = \"superset\")"), "{e}");
    assert!(e.contains("layer1.toml:1:14") && e.contains("declared at") && e.contains("layer0.toml:12:14"), "{e}");
    // A name starting with `_` is allowed, and checked like any other.
    assert!(load(&[BASE, "[db_database._spare]\nname = \"spare\"\n"]).is_ok());
    let Err(e) = load(&[BASE, "[db_database.\"_a b\"]\nname = \"ab\"\n"]) else { panic!("expected an error") };
    assert!(e.contains("resource name `_a b` is not valid"), "{e}");
}

#[test]
fn every_pasted_secret_value_is_found_in_one_pass() {
    // SAFETY: no other test reads or writes these variables.
    unsafe {
        std::env::set_var("ASPECTS_TEST_PASTED_A", "Outer-Secret-Inner-Value");
        std::env::set_var("ASPECTS_TEST_PASTED_B", "Inner-Value");
    }
    let plan = "[secrets]\na = { env = \"ASPECTS_TEST_PASTED_A\" }\nb = { env = \"ASPECTS_TEST_PASTED_B\" }\n\
                [vars]\nx = \"Outer-Secret-Inner-Value\"\nuses = \"${secrets.a} ${secrets.b}\"\n";
    let Err(e) = load(&[plan, "[vars]\ny = \"Inner-Value and Inner-Value\"\n"]) else { panic!("expected an error") };
    // b inside a's value is found too (overlapping), once per file.
    assert!(e.contains("secret `a`") && e.contains("layer0.toml:5:6"), "{e}");
    assert!(e.contains("layer0.toml:5:19") && e.contains("layer1.toml:2:6"), "{e}");
    assert_eq!(e.matches("holds the value of secret").count(), 3, "{e}");
    assert!(!e.contains("Inner-Value"), "{e}");
}

fn load_values(files: &[&str], secret_values: SecretValues) -> Result<aspects_config::Loaded, String> {
    let files = files
        .iter()
        .enumerate()
        .map(|(i, t)| SourceFile { path: dir().join(format!("layer{i}.toml")), text: (*t).to_owned() })
        .collect();
    let opts = LoadOptions {
        secrets_path: Some(dir().join("unread/.aspects/x.secrets.toml")),
        secret_values,
        vars: Default::default(),
        vars_from_env: false,
        rotate: Default::default(),
    };
    load_sources(files, &registry(), &opts).map_err(|e| e.to_string())
}

#[test]
fn validate_checks_secret_sources_but_reads_no_value() {
    let plan = "[secrets]\ne = { env = \"ASPECTS_TEST_SURELY_UNSET_VAR\" }\nf = { file = \"/surely/missing\" }\n\
                g = { generate = 24 }\n[providers.db]\nurl = \"db://h\"\npassword = \"${secrets.e}\"\n\
                [db_user.u]\nuser = \"u\"\npassword = \"${secrets.g}\"\ndsn = \"${secrets.f}\"\n";
    let l = load_values(&[plan], SecretValues::Unread).unwrap();
    assert_eq!(l.secrets.len(), 3);
    assert!(l.secrets.iter().all(|s| s.value.expose().is_empty() && s.state == aspects_config::SecretState::Current));
    assert!(!dir().join("unread").exists(), "nothing is read or written");
    // Malformed sources are still errors.
    let bad = "[secrets]\ne = { env = \"NOT A NAME\" }\nf = { file = \"\" }\ng = { generate = 4 }\n";
    let Err(e) = load_values(&[bad], SecretValues::Unread) else { panic!("expected an error") };
    assert!(e.contains("`NOT A NAME` is not an environment variable name"), "{e}");
    assert!(e.contains("`file` must not be empty") && e.contains("generate takes a length from 8 to 256"), "{e}");
    // plan needs the values: the same plan fails on the unset variable and the missing file.
    let Err(e) = load_values(&[plan], SecretValues::Existing) else { panic!("expected an error") };
    assert!(e.contains("ASPECTS_TEST_SURELY_UNSET_VAR, which is not set") && e.contains("/surely/missing"), "{e}");
}

#[test]
fn a_secret_nothing_uses_is_not_read() {
    let plan = "[secrets]\nunused = { env = \"ASPECTS_TEST_SURELY_UNSET_VAR\" }\n";
    let l = load(&[BASE, plan]).unwrap();
    assert_eq!(l.secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["pw"]);
}

#[test]
fn a_later_file_replaces_a_secret_source_whole_and_can_unset_an_optional_attribute() {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("ASPECTS_TEST_OVERLAY_PW", "from-the-overlay") };
    let base = BASE.replace("url = \"db://127.0.0.1\"", "url = \"db://127.0.0.1\"\npassword = \"${secrets.pw}\"");
    let l = load(&[&base]).unwrap();
    assert!(l.desired.providers["db"].attrs.contains_key("password"));
    assert_eq!(l.secrets[0].source.to_string(), "generate:24");
    let overlay = "[secrets]\npw = { env = \"ASPECTS_TEST_OVERLAY_PW\" }\n";
    let l = load(&[&base, overlay]).unwrap();
    assert_eq!(l.secrets[0].source.to_string(), "env:ASPECTS_TEST_OVERLAY_PW");
    assert_eq!(l.secrets[0].value.expose(), "from-the-overlay");
    let l = load(&[&base, "[providers.db]\npassword = false\n"]).unwrap();
    assert!(!l.desired.providers["db"].attrs.contains_key("password"), "password = false unsets it");
    // A required attribute cannot be unset that way, nor is `false` a string.
    let Err(e) = load(&[BASE, "[db_user.app]\nuser = false\n"]) else { panic!("expected an error") };
    assert!(e.contains("`user` must be a string, not a boolean"), "{e}");
}

#[test]
fn when_false_takes_a_resource_out_of_the_plan_and_its_secrets_out_of_reach() {
    let switch = r#"
[vars]
RUN_APP = true

[secrets]
only_app = { env = "ASPECTS_TEST_SURELY_UNSET_VAR" }

[db_user.app]
when = "${vars.RUN_APP}"
password = "${secrets.only_app}"
"#;
    // Switched on, the user needs its secret.
    let Err(e) = load(&[BASE, switch]) else { panic!("expected the unset secret to be reported") };
    assert!(e.contains("ASPECTS_TEST_SURELY_UNSET_VAR"), "{e}");
    // Off (from the command line, as a string like ASPECTS_VAR_RUN_APP=false): not in the plan,
    // not in the graph, and its secret is never read.
    let vars = [("RUN_APP".to_owned(), "False".to_owned())].into();
    let files = [BASE, switch]
        .iter()
        .enumerate()
        .map(|(i, t)| SourceFile { path: dir().join(format!("when{i}.toml")), text: (*t).to_owned() })
        .collect();
    let l = load_with(files, vars).unwrap();
    assert!(!l.desired.resources.contains_key(&Address::new("db_user", "app")));
    assert_eq!(l.graph.order(), [Address::new("db_database", "main")]);
    assert!(l.secrets.is_empty(), "{:?}", l.secrets.iter().map(|s| &s.name).collect::<Vec<_>>());
}

#[test]
fn a_reference_to_a_switched_off_resource_says_where_it_was_switched_off() {
    let plan =
        "[db_database.main]\nwhen = false\n\n[db_database.other]\nname = \"x\"\ndepends_on = [\"db_database.main\"]\n";
    let Err(e) = load(&[BASE, plan]) else { panic!("expected db_user.app's reference to fail") };
    assert!(e.contains("reference to `db_database.main`, which is switched off (when = false at"), "{e}");
    assert!(e.contains("layer1.toml:2:8"), "{e}");
    // db_user.app refers to it twice; depends_on only orders, so it is simply dropped.
    assert_eq!(e.matches("error:").count(), 2, "{e}");
    assert!(!e.contains("depends_on"), "{e}");
}

#[test]
fn when_must_be_a_boolean_from_vars() {
    for (value, expected) in [
        ("\"yes\"", "`when` of db_database.main must be true or false"),
        ("\"a = b\"", "`when` of db_database.main must be true or false"),
        ("\"${secrets.pw}\"", "`when` of db_database.main must be true or false"),
        ("\"${db_user.app.user}\"", "refers to a resource, which is not allowed here"),
        ("3", "`when` of db_database.main must be true or false"),
    ] {
        let Err(e) = load(&[BASE, &format!("[db_database.main]\nwhen = {value}\n")]) else {
            panic!("when = {value} must be refused")
        };
        assert!(e.contains(expected), "when = {value}: {e}");
        assert!(e.contains("layer1.toml:2:"), "when = {value}: {e}");
    }
}

#[test]
fn overrides_take_the_declared_type_of_booleans_and_integers() {
    let plan = "[vars]\nflag = true\nport = 8123\nname = \"x\"\n\n[providers.db]\nurl = \"db://h\"\n\n[db_database.main]\nname = \"${vars.name}\"\n\
                charset = \"${vars.port}-${vars.flag}\"\n";
    let with = |vars: &[(&str, &str)]| {
        let files = vec![SourceFile { path: dir().join("typed.toml"), text: plan.to_owned() }];
        load_with(files, vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    };
    let l = with(&[("flag", "FALSE"), ("port", "9000"), ("name", "true")]).unwrap();
    let db = &l.desired.resources[&Address::new("db_database", "main")];
    assert_eq!(db.str("charset"), Some("9000-false"));
    assert_eq!(db.str("name"), Some("true"), "a string var stays a string");
    let Err(e) = with(&[("flag", "yes"), ("port", "80a")]) else { panic!("expected both overrides refused") };
    assert!(e.contains("the override of `vars.flag` (--var or ASPECTS_VAR_flag) must be a boolean"), "{e}");
    assert!(e.contains("the override of `vars.port` (--var or ASPECTS_VAR_port) must be an integer"), "{e}");
    assert!(e.contains("typed.toml:2:8") && e.contains("typed.toml:3:8"), "placed at the declarations: {e}");
}

#[test]
fn when_compares_a_string_switch() {
    let plan = |source: &str| {
        format!(
            "[vars]\nsource = \"{source}\"\n\n[db_database.main]\nwhen = \"${{vars.source}} == ralph\"\n\n\
             [db_database.other]\nname = \"o\"\nwhen = \"${{vars.source}} != ralph\"\n"
        )
    };
    let on = |source: &str| {
        let base = BASE.replace("\n[db_user.app]", "\n[db_user.app]\nwhen = false");
        let l = load(&[&base, &plan(source)]).unwrap();
        l.desired.resources.keys().map(|a| a.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(on("ralph"), ["main"]);
    assert_eq!(on("vector"), ["other"]);
}

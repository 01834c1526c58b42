//! Properties over generated plan files: any input gives a result or located errors, never a
//! panic or a stack overflow, and a reference's error points at the reference, whatever escapes,
//! non-ASCII text, string delimiters or line endings come before it.
//!
//! `ASPECTS_PROPTEST_CASES=100000 cargo test -p aspects-config --test properties --release` runs
//! the long version; the default keeps the normal test run fast.

use std::path::PathBuf;

use aspects_config::{LoadError, LoadOptions, SecretValues, SourceFile, load_sources};
use aspects_core::Registry;
use proptest::prelude::*;
use proptest::test_runner::Config;

const HEAD: &str = "[providers.mysql]\nurl = \"mysql://root@127.0.0.1:3306\"\n\n[secrets]\npw = { generate = 24 }\n\n";
const MISSING: &str = "${vars.missing_ref_zz}";

fn cases() -> u32 {
    std::env::var("ASPECTS_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000)
}

fn load(text: String) -> Result<(), LoadError> {
    let dir = std::env::temp_dir().join(format!("aspects-properties-{}", std::process::id()));
    let opts = LoadOptions {
        // Never read or created: validate reads no secret.
        secrets_path: Some(dir.join("p.secrets.toml")),
        secret_values: SecretValues::Unread,
        vars: Default::default(),
        vars_from_env: false,
        rotate: Default::default(),
    };
    let registry = Registry::default().with(aspects_mysql::schema());
    let files = vec![SourceFile { path: PathBuf::from("p.toml"), text }];
    load_sources(files, &registry, &opts).map(drop)
}

/// A piece of string content as written inside a basic (`"`) string: text, escapes, non-ASCII.
fn plain_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _.:/-]{0,6}",
        prop::sample::select(vec![r#"\""#, r"\\", r"\t", r"\n", r"\r", r"\u00e9", r"\U0001F600", r"\b", r"\f"])
            .prop_map(str::to_owned),
        "[é漢字🎉ßа\u{200b}\u{202e}]{1,3}",
    ]
}

/// Plain pieces, dollar signs and references, good and bad.
fn basic_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => plain_piece(),
        1 => prop::sample::select(vec!["$${x}", "$", "$$", "${", "${}", "${vars}", "${vars.v1", "}"]).prop_map(str::to_owned),
        1 => reference(),
    ]
}

fn reference() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..6u8).prop_map(|i| format!("${{vars.v{i}}}")),
        (0..4u8).prop_map(|i| format!("${{mysql_database.d{i}.name}}")),
        (0..4u8).prop_map(|i| format!("${{mysql_user.u{i}.user}}")),
        Just("${secrets.pw}".to_owned()),
        Just("${secrets.nope}".to_owned()),
        Just("${ vars.v0 }".to_owned()),
        Just("${mysql_database.d0.nope}".to_owned()),
    ]
}

/// A string token in one of TOML's four forms (content adapted to what each form allows).
fn token() -> impl Strategy<Value = String> {
    (prop::collection::vec(basic_piece(), 0..6), 0..4u8).prop_map(|(pieces, form)| {
        let body = pieces.concat();
        // Literal strings have no escapes and cannot hold their own delimiter.
        let literal = || body.replace(['\'', '\\'], "");
        match form {
            0 => format!("\"{body}\""),
            1 => format!("'{}'", literal()),
            2 => format!("\"\"\"\n{}\n  \\\n  x\"\"\"", body.replace(' ', "\n")),
            _ => format!("'''\n{}'''", literal().replace(' ', "\n")),
        }
    })
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => token(),
        1 => (0..100i64).prop_map(|i| i.to_string()),
        1 => Just("true".to_owned()),
        1 => prop::collection::vec(token(), 0..3).prop_map(|t| format!("[{}]", t.join(", "))),
        1 => Just("1.5".to_owned()),
        1 => Just("{ a = 1 }".to_owned()),
    ]
}

/// A line that is probably not valid TOML, or not what the schema wants.
fn garbage() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        Just("password = Value123".to_owned()),
        Just("name = \"unterminated".to_owned()),
        Just("[unclosed".to_owned()),
        Just("[[array.of.tables]]".to_owned()),
        Just("name = \"\"\"never closed".to_owned()),
        Just("url = \"mysql://root:hunter2@h\"".to_owned()),
        Just("depends_on = [\"mysql_database.d0\", 3]".to_owned()),
        Just("provider = \"mysql.lms\"".to_owned()),
        (1..300usize).prop_map(|d| format!("deep = {}1{}", "[".repeat(d), "]".repeat(d))),
        (1..300usize).prop_map(|d| format!("deep = {}1{}", "{ a = ".repeat(d), " }".repeat(d))),
    ]
}

/// `[vars]` c0 = "${vars.c1}", c1 = "${vars.c2}", ... `len` long.
fn var_chain(len: usize) -> String {
    (0..len).map(|i| format!("c{i} = \"${{vars.c{}}}\"\n", i + 1)).chain([format!("c{len} = \"end\"\n")]).collect()
}

/// Databases whose names are the next one's plus a digit, `len` long.
fn resource_chain(len: usize) -> String {
    let mut s: String = (0..len)
        .map(|i| format!("[mysql_database.r{i}]\nname = \"${{mysql_database.r{}.name}}{}\"\n", i + 1, i % 10))
        .collect();
    s.push_str(&format!("[mysql_database.r{len}]\nname = \"end\"\n"));
    s
}

fn plan() -> impl Strategy<Value = String> {
    let var = (0..8u8, value()).prop_map(|(i, v)| format!("v{i} = {v}\n"));
    let database = (0..4u8, value(), prop::option::of(value())).prop_map(|(i, name, charset)| {
        let charset = charset.map(|c| format!("charset = {c}\n")).unwrap_or_default();
        format!("[mysql_database.d{i}]\nname = {name}\n{charset}")
    });
    let user = (0..4u8, value())
        .prop_map(|(i, user)| format!("[mysql_user.u{i}]\nuser = {user}\npassword = \"${{secrets.pw}}\"\n"));
    let grant = (0..4u8, value(), value())
        .prop_map(|(i, user, on)| format!("[mysql_grant.g{i}]\nuser = {user}\non = {on}\nprivileges = [\"SELECT\"]\n"));
    (
        prop::collection::vec(var, 0..6),
        prop::collection::vec(garbage(), 0..3),
        prop::collection::vec(prop_oneof![database, user, grant], 0..6),
        prop::collection::vec(garbage(), 0..2),
        prop::option::of(0..150usize),
        prop::option::of(0..150usize),
        any::<bool>(),
    )
        .prop_map(|(vars, var_garbage, resources, resource_garbage, vchain, rchain, crlf)| {
            let mut s = format!("{HEAD}[vars]\n{}", vars.concat());
            s.extend(var_garbage.iter().map(|g| format!("{g}\n")));
            s.push_str(&vchain.map(var_chain).unwrap_or_default());
            s.push_str(&resources.concat());
            s.extend(resource_garbage.iter().map(|g| format!("{g}\n")));
            s.push_str(&rchain.map(resource_chain).unwrap_or_default());
            if crlf { s.replace('\n', "\r\n") } else { s }
        })
}

proptest! {
    #![proptest_config(Config { failure_persistence: None, ..Config::with_cases(cases()) })]

    /// Never a panic, and every error renders (with its location) without one either.
    #[test]
    fn any_plan_loads_or_gets_located_errors(text in plan()) {
        if let Err(e) = load(text) {
            let out = e.to_string();
            prop_assert!(out.starts_with("error: ") || out.starts_with("warning: "), "{}", out);
        }
    }

    /// The error about a reference points at its `${`, wherever the string puts it.
    #[test]
    fn a_reference_error_points_at_the_reference(
        before in prop::collection::vec(plain_piece(), 0..6),
        after in "[a-z é]{0,4}",
        form in 0..4u8,
        crlf in any::<bool>(),
    ) {
        let before = before.concat();
        let literal = |s: &str| s.replace(['\'', '\\'], "");
        let token = match form {
            0 => format!("\"{before}{MISSING}{after}\""),
            1 => format!("'{}{MISSING}{after}'", literal(&before)),
            2 => format!("\"\"\"\n{}{MISSING}\n{after}\"\"\"", before.replace(' ', "\n")),
            _ => format!("'''\n{}{MISSING}{after}'''", literal(&before).replace(' ', "\n")),
        };
        let mut text = format!("{HEAD}[vars]\nv = {token}\n");
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        let at = text.find(MISSING).unwrap();
        let line = text[..at].matches('\n').count() + 1;
        let col = text[..at].rsplit('\n').next().unwrap().chars().count() + 1;
        let e = load(text.clone()).expect_err("the reference is unknown");
        let d = e.diagnostics.iter().find(|d| d.message.contains("vars.missing_ref_zz"));
        let d = d.ok_or_else(|| TestCaseError::fail(format!("no error about the reference: {e}")))?;
        let loc = d.location.as_ref().unwrap();
        prop_assert_eq!(e.sources.line_col(loc), (line, col), "{}\n{}", text, e);
        prop_assert_eq!(&text[loc.span.clone()], MISSING);
        let out = e.to_string();
        prop_assert!(out.contains(&format!("--> p.toml:{line}:{col}\n")), "{}", out);
        // The caret sits under the `${` (checked where every character is one column wide).
        let shown = text[..at].rsplit('\n').next().unwrap();
        if shown.is_ascii() {
            let caret = format!("| {}{}\n", " ".repeat(col - 1), "^".repeat(MISSING.len()));
            prop_assert!(out.contains(&caret), "{}", out);
        }
    }
}

#[test]
fn a_chain_of_8000_vars_or_resources_is_one_located_error_not_a_crash() {
    for chain in [format!("[vars]\n{}", var_chain(8000)), resource_chain(8000)] {
        let e = load(format!("{HEAD}{chain}")).expect_err("too deep");
        let out = e.to_string();
        assert!(out.contains("references nested more than 64 deep"), "{out}");
        assert!(out.contains("--> p.toml:"), "{out}");
        assert_eq!(e.diagnostics.len(), 1, "one error for one chain: {out}");
    }
}

#[test]
fn chains_as_long_as_real_plans_use_resolve() {
    load(format!("{HEAD}[vars]\n{}{}", var_chain(20), resource_chain(20))).unwrap();
}

#[test]
fn deeply_nested_values_load_or_fail_without_a_crash() {
    for d in [1_000, 100_000] {
        for (open, close) in [("[", "]"), ("{ a = ", " }")] {
            let text = format!("{HEAD}[vars]\ndeep = {}1{}\n", open.repeat(d), close.repeat(d));
            if let Err(e) = load(text) {
                assert!(e.to_string().starts_with("error: "), "{e}");
            }
        }
    }
}

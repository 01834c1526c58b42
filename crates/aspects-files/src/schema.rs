//! The `files` system as plan files see it: `[providers.files]` and the kind `file`.

use std::collections::BTreeMap;

use aspects_core::schema::{AttrsError, check_max_concurrency};
use aspects_core::{AttrSchema, AttrType, KindSchema, SystemSchema, Value};

pub const SYSTEM: &str = "files";
pub const FILE: &str = "file";
pub const RALPH_AUTH: &str = "ralph_auth";
pub const DEFAULT_MODE: &str = "0644";

pub fn schema() -> SystemSchema {
    SystemSchema {
        system: SYSTEM,
        provider_attrs: vec![
            AttrSchema::new(
                "root",
                AttrType::String,
                "Absolute folder every file lives under: relative paths resolve inside it, and nothing outside \
                 it is ever written. Default `/`.",
            )
            .default("/")
            .check(check_absolute),
            AttrSchema::new(
                "state_dir",
                AttrType::String,
                "Absolute folder for the ownership records and the lock (0700). Default: `.aspects` inside root \
                 (`/var/lib/aspects` when root is `/`), on the same file system as the files it describes.",
            )
            .check(check_absolute),
            AttrSchema::new(
                "templates",
                AttrType::String,
                "Folder of template files (`template = \"ralph/auth.json.j2\"`, `{% include %}`), relative to the \
                 plan file that sets it.",
            ),
            AttrSchema::new("max_concurrency", AttrType::Int, "Files written at once during apply.")
                .default(4)
                .check(check_max_concurrency),
        ],
        kinds: vec![file_kind(), ralph_auth_kind()],
    }
}

/// What every file kind has: where it lives, its mode and owner, the hook.
fn file_attrs(mode: &'static str, source: Vec<AttrSchema>) -> Vec<AttrSchema> {
    let mut attrs = vec![
        AttrSchema::new(
            "path",
            AttrType::String,
            "Where the file lives: relative to the provider's root, or absolute inside it.",
        )
        .identity()
        .check(check_path),
    ];
    attrs.extend(source);
    attrs.extend([
        AttrSchema::new("mode", AttrType::String, "Permission bits in octal, e.g. \"0640\".")
            .default(mode)
            .check(check_mode),
        AttrSchema::new("owner", AttrType::String, "User name owning the file (default: left as created)."),
        AttrSchema::new("group", AttrType::String, "Group name owning the file (default: left as created)."),
        AttrSchema::new(
            "on_change",
            AttrType::List(Box::new(AttrType::String)),
            "A command (program and arguments, no shell) run once after the content changed, e.g. a restart. \
             It gets no secret: read them from the file.",
        )
        .check(check_argv),
    ]);
    attrs
}

fn file_kind() -> KindSchema {
    KindSchema {
        kind: FILE,
        attrs: file_attrs(
            DEFAULT_MODE,
            vec![
                AttrSchema::new(
                    "content",
                    AttrType::String,
                    "An inline Jinja template (Tutor's syntax: `{{ NAME }}`, filters, `{% if %}`), rendered with `context`.",
                ),
                AttrSchema::new(
                    "template",
                    AttrType::String,
                    "A template file under the provider's `templates` folder, rendered with `context`.",
                )
                .check(check_relative),
                AttrSchema::new(
                    "context",
                    AttrType::Map,
                    "The template's variables, under Tutor's names: `{ RALPH_DATABASE = \"${vars.RALPH_DATABASE}\" }`. \
                     Values may be secrets; they are masked wherever they appear in the rendered content.",
                )
                .embeds_secrets(),
            ],
        ),
        data_bearing: false,
        rank: 0,
        doc: "A file rendered from a template, written atomically; removing it from the plan deletes it.",
        identity_key: None,
        check: Some(one_source),
    }
}

fn ralph_auth_kind() -> KindSchema {
    KindSchema {
        kind: RALPH_AUTH,
        attrs: file_attrs(
            "0600",
            vec![
                AttrSchema::new(
                    "users",
                    AttrType::List(Box::new(AttrType::Map)),
                    "Ralph's users: `{ username, password = \"${secrets.X}\", scopes = [...], agent = { mbox = \"mailto:...\" } }`. \
                     Hashed with bcrypt here; a hash that still verifies is kept.",
                )
                .required()
                .embeds_secrets(),
                AttrSchema::new("bcrypt_cost", AttrType::Int, "bcrypt cost of new hashes (4 to 31).")
                    .default(12)
                    .check(check_cost),
            ],
        ),
        data_bearing: false,
        rank: 0,
        doc: "Ralph's auth.json (HTTP Basic users); restart Ralph from on_change, as it reads the file once.",
        identity_key: None,
        check: Some(crate::ralph::check_users),
    }
}

fn check_cost(v: &Value) -> Result<(), String> {
    match v {
        Value::Int(n) if (4..=31).contains(n) => Ok(()),
        other => Err(format!("{other} is not a bcrypt cost; use 4 to 31 (Ralph's own is 12)")),
    }
}

fn one_source(attrs: &BTreeMap<String, Value>) -> Result<(), AttrsError> {
    match (attrs.contains_key("content"), attrs.contains_key("template")) {
        (true, false) | (false, true) => Ok(()),
        (both, _) => Err(AttrsError {
            attr: both.then_some("template"),
            message: if both { "sets both `content` and `template`" } else { "sets neither `content` nor `template`" }
                .to_owned(),
            hint: "write the template inline as content = \"...\" or name a file as template = \"x.j2\", not both"
                .to_owned(),
        }),
    }
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| format!("expected a string, found {}", v.type_name()))
}

fn check_absolute(v: &Value) -> Result<(), String> {
    let p = string(v)?;
    if !p.starts_with('/') {
        return Err(format!("{p:?} is not an absolute path; write it from `/`"));
    }
    no_parent(p)
}

/// `..` could leave the root however the rest of the path reads; NUL cannot be in a path.
fn no_parent(p: &str) -> Result<(), String> {
    if p.contains('\0') {
        return Err("the path contains a NUL byte".to_owned());
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("{p:?} contains `..`; write the path without it"));
    }
    Ok(())
}

fn check_path(v: &Value) -> Result<(), String> {
    let p = string(v)?;
    if p.is_empty() || p.ends_with('/') || p.split('/').next_back() == Some(".") {
        return Err(format!("{p:?} does not name a file"));
    }
    no_parent(p)
}

fn check_relative(v: &Value) -> Result<(), String> {
    let p = string(v)?;
    if p.starts_with('/') {
        return Err(format!("{p:?} is absolute; name the template relative to the provider's `templates` folder"));
    }
    no_parent(p)
}

/// The mode as a number, from octal text of 3 or 4 digits.
pub fn parse_mode(s: &str) -> Option<u32> {
    ((3..=4).contains(&s.len())).then(|| u32::from_str_radix(s, 8).ok()).flatten()
}

fn check_mode(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    parse_mode(s).map(|_| ()).ok_or_else(|| format!("{s:?} is not an octal mode such as \"0644\""))
}

fn check_argv(v: &Value) -> Result<(), String> {
    match v.as_list() {
        Some([]) => Err("the command is empty; leave on_change out instead".to_owned()),
        Some([first, ..]) if first.as_str().is_some_and(|p| p.contains(char::is_whitespace)) => Err(format!(
            "the program {first} contains a space: on_change is a list, [\"program\", \"arg\", ...], never a shell line"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_and_malformed_values_are_refused() {
        let s = schema();
        for bad in ["../etc/passwd", "a/../../b", "dir/", "", "a/."] {
            assert!(s.check_attr(FILE, "path", &Value::from(bad)).is_err(), "{bad}");
        }
        assert!(s.check_attr(FILE, "path", &Value::from("ralph/auth.json")).is_ok());
        assert!(s.check_attr(FILE, "template", &Value::from("/etc/x.j2")).is_err());
        assert!(s.check_attr(FILE, "mode", &Value::from("0999")).is_err());
        assert_eq!(parse_mode("640"), Some(0o640));
        let argv = Value::List(vec![Value::from("systemctl restart ralph")]);
        assert!(s.check_attr(FILE, "on_change", &argv).unwrap_err().contains("never a shell line"));
    }
}

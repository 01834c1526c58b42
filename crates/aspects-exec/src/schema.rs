//! The `exec` system as plan files see it: `[providers.exec]` and the kind `exec`.

use std::collections::BTreeMap;

use aspects_core::schema::{AttrsError, check_max_concurrency, identity_string};
use aspects_core::{AttrSchema, AttrType, KindSchema, SystemSchema, Value};

pub const SYSTEM: &str = "exec";
pub const EXEC: &str = "exec";
/// The computed attribute that carries the check's verdict into the plan.
pub const STATUS: &str = "status";
/// What `status` says of a step whose check passes.
pub const UP_TO_DATE: &str = "up to date";
pub const DEFAULT_TIMEOUT: i64 = 600;

pub fn schema() -> SystemSchema {
    SystemSchema {
        system: SYSTEM,
        provider_attrs: vec![
            AttrSchema::new(
                "working_dir",
                AttrType::String,
                "Folder the steps run in, relative to the plan file that sets it. Default: that plan file's folder.",
            ),
            env_attr("Environment variables every step gets (a step's own `env` wins)."),
            timeout_attr("Seconds a command or check may run before it is killed (with its children).")
                .default(DEFAULT_TIMEOUT),
            AttrSchema::new(
                "lock_dir",
                AttrType::String,
                "Folder of the apply lock (`exec-<deployment>.lock`), relative to the plan file that sets it. \
                 Default: `.aspects` beside that plan file, where the secrets file lives.",
            ),
            AttrSchema::new("max_concurrency", AttrType::Int, "Steps run at once during apply.")
                .default(1)
                .check(check_max_concurrency),
        ],
        kinds: vec![exec_kind()],
    }
}

/// Process arguments are world-readable (`ps`, `/proc/PID/cmdline`); the environment is not.
const ARGV_SECRET: &str = "arguments are visible to every user of the machine: pass the secret in `env` \
                           (env = { TOKEN = \"${secrets.NAME}\" }) and let the program read $TOKEN";

fn env_attr(doc: &'static str) -> AttrSchema {
    AttrSchema::new("env", AttrType::Map, doc).embeds_secrets().check(check_env)
}

fn timeout_attr(doc: &'static str) -> AttrSchema {
    AttrSchema::new("timeout", AttrType::Int, doc).check(check_timeout)
}

fn exec_kind() -> KindSchema {
    KindSchema {
        kind: EXEC,
        attrs: vec![
            AttrSchema::new(
                "command",
                AttrType::List(Box::new(AttrType::String)),
                "What the step runs: program and arguments, no shell (write [\"sh\", \"-c\", \"...\"] for one). \
                 Never a secret: arguments are visible to every user of the machine; pass secrets in `env`.",
            )
            .required()
            .check(check_argv)
            .secret_hint(ARGV_SECRET),
            AttrSchema::new(
                "check",
                AttrType::List(Box::new(AttrType::String)),
                "Whether the step is needed, run at plan time and again after the command: exit 0 = up to date, \
                 1 = needed, anything else = an error. It must not change anything.",
            )
            .check(check_argv)
            .secret_hint(ARGV_SECRET),
            env_attr(
                "Environment variables of the command and the check, on top of the provider's `env`. \
                 Values may be secrets: this is the only way a secret reaches a step.",
            ),
            timeout_attr("Seconds the command or the check may run (default: the provider's `timeout`)."),
            AttrSchema::new(
                "working_dir",
                AttrType::String,
                "Folder the step runs in, relative to the plan file that sets it (default: the provider's).",
            ),
            AttrSchema::new(
                STATUS,
                AttrType::String,
                "Computed, not written: the check's verdict, shown in plans (`needed (check exited 1: ...)`).",
            )
            .check(|_| Err("`status` is computed from the step's check; leave it out".to_owned())),
        ],
        data_bearing: false,
        rank: 0,
        doc: "A command run when its check says it is needed; nothing is undone when it leaves the plan.",
        identity_key: Some(identity),
        check: Some(needs_check),
    }
}

/// Two steps that run the same command under the same check, environment and folder are one.
fn identity(attrs: &BTreeMap<String, Value>) -> String {
    identity_string(
        ["command", "check", "env", "working_dir"]
            .into_iter()
            .filter_map(|k| attrs.get_key_value(k))
            .map(|(k, v)| (k.as_str(), v)),
    )
}

/// A step without a check would run on every apply: nothing else can tell whether it is needed.
fn needs_check(attrs: &BTreeMap<String, Value>) -> Result<(), AttrsError> {
    if attrs.contains_key("check") {
        return Ok(());
    }
    Err(AttrsError {
        attr: None,
        message: "a step needs a `check`: aspects keeps no record of what ran, so only the check can tell whether \
                  the command is needed"
            .to_owned(),
        hint: "add check = [\"program\", \"arg\"] that exits 0 when the step is done and 1 when it is needed \
               (e.g. [\"test\", \"-e\", \"marker\"] with a command that creates the marker)"
            .to_owned(),
    })
}

fn check_argv(v: &Value) -> Result<(), String> {
    let Some(list) = v.as_list() else { return Ok(()) };
    match list {
        [] => Err("the list is empty; name a program: [\"program\", \"arg\", ...]".to_owned()),
        [first, ..] if first.as_str().is_some_and(|p| p.is_empty() || p.contains(char::is_whitespace)) => Err(format!(
            "the program {first} is empty or contains a space: write a list, [\"program\", \"arg\", ...], never a \
             shell line (use [\"sh\", \"-c\", \"...\"] for one)"
        )),
        _ if list.iter().filter_map(Value::as_str).any(|a| a.contains('\0')) => {
            Err("an argument contains a NUL byte".to_owned())
        }
        _ => Ok(()),
    }
}

fn check_timeout(v: &Value) -> Result<(), String> {
    match v {
        Value::Int(n) if (1..=86_400).contains(n) => Ok(()),
        Value::Int(n) => Err(format!("timeout = {n} is out of range; use 1 to 86400 seconds")),
        other => Err(format!("expected an integer, found {}", other.type_name())),
    }
}

/// Environment names as POSIX shells take them; values are strings, numbers, booleans or secrets.
fn check_env(v: &Value) -> Result<(), String> {
    let Value::Map(map) = v else { return Ok(()) };
    for (name, value) in map {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("{name:?} is not an environment variable name; use letters, digits and `_`"));
        }
        if matches!(value, Value::List(_) | Value::Map(_) | Value::Json(_)) {
            return Err(format!("{name} is {}; an environment value is a string", value.type_name()));
        }
        if value.as_str().is_some_and(|s| s.contains('\0')) {
            return Err(format!("{name} contains a NUL byte"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_steps_are_refused() {
        let s = schema();
        let argv = |items: &[&str]| Value::List(items.iter().map(|i| Value::from(*i)).collect());
        assert!(s.check_attr(EXEC, "command", &argv(&[])).is_err());
        assert!(s.check_attr(EXEC, "command", &argv(&["superset db upgrade"])).unwrap_err().contains("shell line"));
        assert!(s.check_attr(EXEC, "check", &argv(&["test", "-e", "x"])).is_ok());
        let env = |k: &str| Value::Map([(k.to_owned(), Value::from("v"))].into());
        assert!(s.check_attr(EXEC, "env", &env("1X")).is_err());
        assert!(s.check_attr(EXEC, "env", &env("SUPERSET_CONFIG_PATH")).is_ok());
        assert!(s.check_attr(EXEC, "timeout", &Value::Int(0)).is_err());
        assert!(s.check_attr(EXEC, STATUS, &Value::from(UP_TO_DATE)).is_err());
        assert!(needs_check(&BTreeMap::new()).is_err());
    }
}

//! What each resource kind looks like: its attributes, their types, which ones identify the
//! object, which ones force replacement and which ones are write-only. Providers declare these;
//! the config loader validates plan files against them and the diff reads them.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::value::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum AttrType {
    String,
    Int,
    Bool,
    List(Box<AttrType>),
    Map,
    Json,
    Sql,
}

impl AttrType {
    fn plural(&self) -> String {
        match self {
            AttrType::String => "strings".into(),
            AttrType::Int => "integers".into(),
            AttrType::Bool => "booleans".into(),
            AttrType::List(inner) => format!("lists of {}", inner.plural()),
            AttrType::Map => "tables".into(),
            AttrType::Json => "JSON documents".into(),
            AttrType::Sql => "SQL texts".into(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            AttrType::String => "a string".into(),
            AttrType::Int => "an integer".into(),
            AttrType::Bool => "a boolean".into(),
            AttrType::List(inner) => format!("a list of {}", inner.plural()),
            AttrType::Map => "a table".into(),
            AttrType::Json => "a JSON document".into(),
            AttrType::Sql => "SQL text".into(),
        }
    }
}

/// How a change to an attribute reaches the live object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateMode {
    InPlace,
    /// The object must be destroyed and created again.
    Replace,
}

/// Validates a resolved value; `Err` says what is wrong and how to write it instead.
pub type Check = fn(&Value) -> Result<(), String>;

/// Looks at a resolved value that is valid but probably not what was meant; `Some` says why and
/// what to write instead.
pub type Warn = fn(&Value) -> Option<String>;

#[derive(Clone, Debug)]
pub struct AttrSchema {
    pub name: &'static str,
    pub ty: AttrType,
    pub required: bool,
    pub default: Option<Value>,
    /// Part of the object's identity in the target (a MySQL user's `user` and `host`).
    pub identity: bool,
    pub update: UpdateMode,
    /// Must come from `[secrets]`; never printed.
    pub sensitive: bool,
    /// Cannot be read back; the provider verifies it instead (passwords).
    pub write_only: bool,
    /// Not a secret itself, but may hold secrets among its values (a template's context): the
    /// provider keeps them masked wherever they end up (`Value::Text` spans).
    pub embeds_secrets: bool,
    /// What to write instead when a secret reaches this attribute, which cannot hold one (a
    /// command line: pass it in the environment). `None`: the general advice.
    pub secret_hint: Option<&'static str>,
    /// Provider-specific validation of a resolved value; the message says what is wrong and how
    /// to write it instead. Runs at load time, so errors carry file:line:col.
    pub check: Option<Check>,
    /// Provider-specific warning about a valid value; runs at load time like `check`.
    pub warn: Option<Warn>,
    pub doc: &'static str,
}

impl AttrSchema {
    pub fn new(name: &'static str, ty: AttrType, doc: &'static str) -> Self {
        Self {
            name,
            ty,
            required: false,
            default: None,
            identity: false,
            update: UpdateMode::InPlace,
            sensitive: false,
            write_only: false,
            embeds_secrets: false,
            secret_hint: None,
            check: None,
            warn: None,
            doc,
        }
    }
    pub fn check(mut self, f: Check) -> Self {
        self.check = Some(f);
        self
    }
    pub fn warn(mut self, f: Warn) -> Self {
        self.warn = Some(f);
        self
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub fn default(mut self, v: impl Into<Value>) -> Self {
        self.default = Some(v.into());
        self
    }
    /// Identity attributes are required and changing one replaces the object.
    pub fn identity(mut self) -> Self {
        self.identity = true;
        self.required = true;
        self.update = UpdateMode::Replace;
        self
    }
    pub fn forces_replace(mut self) -> Self {
        self.update = UpdateMode::Replace;
        self
    }
    /// May hold secrets among its values (see [`AttrSchema::embeds_secrets`]).
    pub fn embeds_secrets(mut self) -> Self {
        self.embeds_secrets = true;
        self
    }
    /// Where a secret should go instead (see [`AttrSchema::secret_hint`]).
    pub fn secret_hint(mut self, hint: &'static str) -> Self {
        self.secret_hint = Some(hint);
        self
    }
    /// A secret that can be verified but not read back.
    pub fn write_only_secret(mut self) -> Self {
        self.sensitive = true;
        self.write_only = true;
        self
    }
}

/// The canonical identity of a resource of one kind, from its resolved attributes.
pub type IdentityKey = fn(&BTreeMap<String, Value>) -> String;

/// A rule across a resource's attributes (exactly one of two, one only with another), run by the
/// loader once each attribute passed its own checks.
pub type KindCheck = fn(&BTreeMap<String, Value>) -> Result<(), AttrsError>;

/// What a [`KindCheck`] refused: the attribute to point at (`None`: the resource's header), what
/// is wrong and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrsError {
    pub attr: Option<&'static str>,
    pub message: String,
    pub hint: String,
}

#[derive(Clone, Debug, Default)]
pub struct KindSchema {
    pub kind: &'static str,
    pub attrs: Vec<AttrSchema>,
    /// Holds user data: never destroyed without `--allow-destroy`.
    pub data_bearing: bool,
    /// Position in the system's dependency order; deletes run in reverse.
    pub rank: u8,
    pub doc: &'static str,
    /// How the target compares identities (a MySQL host is case-insensitive, `on` has several
    /// spellings). Two resources of this kind on one provider with equal keys are one object.
    /// `None`: the identity attributes as written.
    pub identity_key: Option<IdentityKey>,
    pub check: Option<KindCheck>,
}

impl KindSchema {
    pub fn attr(&self, name: &str) -> Option<&AttrSchema> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The canonical identity of a resource of this kind, for finding two that are one object.
    pub fn identity_key(&self, attrs: &BTreeMap<String, Value>) -> String {
        match self.identity_key {
            Some(key) => key(attrs),
            None => identity_string(
                self.attrs.iter().filter(|a| a.identity).filter_map(|a| attrs.get(a.name).map(|v| (a.name, v))),
            ),
        }
    }
}

/// `name = "x", host = "%"`: identity attributes as messages show them.
pub fn identity_string<'a>(attrs: impl IntoIterator<Item = (&'a str, &'a Value)>) -> String {
    // Into one buffer: the loader builds one per resource.
    let mut out = String::new();
    for (i, (k, v)) in attrs.into_iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}{k} = {v}");
    }
    out
}

/// One system (mysql, clickhouse ...): the attributes of its `[providers.X]` block and its kinds.
#[derive(Clone, Debug)]
pub struct SystemSchema {
    pub system: &'static str,
    pub provider_attrs: Vec<AttrSchema>,
    pub kinds: Vec<KindSchema>,
}

impl SystemSchema {
    /// Runs the load-time check of one attribute (`kind` = "provider" for the provider block):
    /// what the loader does for every value, for providers' own tests. `Ok` when it has none.
    pub fn check_attr(&self, kind: &str, attr: &str, value: &Value) -> Result<(), String> {
        let attrs = match kind {
            "provider" => &self.provider_attrs,
            _ => &self.kinds.iter().find(|k| k.kind == kind).unwrap_or_else(|| panic!("no kind {kind}")).attrs,
        };
        let a = attrs.iter().find(|a| a.name == attr).unwrap_or_else(|| panic!("no attribute {kind}.{attr}"));
        a.check.map_or(Ok(()), |check| check(value))
    }
}

/// Invisible characters that make two names look alike or reorder text (bidi controls,
/// zero-width characters): refused in every name a provider checks.
pub fn invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{feff}' | '\u{00ad}')
}

/// `lock_lease_seconds`, for providers whose target has no advisory lock and whose apply lock is
/// a lease (ClickHouse, Superset): 2 to 3600 seconds.
pub fn lock_lease_attr(default: i64) -> AttrSchema {
    AttrSchema::new(
        "lock_lease_seconds",
        AttrType::Int,
        "How long the apply lock survives its holder without a heartbeat (a killed apply blocks others this \
         long); renewed every quarter lease while an apply holds it.",
    )
    .default(default)
    .check(|v| match v {
        Value::Int(n) if (2..=3600).contains(n) => Ok(()),
        Value::Int(n) => Err(format!("lock_lease_seconds = {n} is out of range; use 2 to 3600")),
        other => Err(format!("expected an integer, found {}", other.type_name())),
    })
}

/// The check of every provider's `max_concurrency`: 1 to 64.
pub fn check_max_concurrency(v: &Value) -> Result<(), String> {
    match v {
        Value::Int(n) if (1..=64).contains(n) => Ok(()),
        Value::Int(n) => Err(format!("max_concurrency = {n} is out of range; use 1 to 64")),
        other => Err(format!("expected an integer, found {}", other.type_name())),
    }
}

/// Every system the binary knows. Built at the CLI edge from the provider crates.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    systems: BTreeMap<&'static str, SystemSchema>,
}

impl Registry {
    pub fn with(mut self, system: SystemSchema) -> Self {
        self.systems.insert(system.system, system);
        self
    }

    pub fn system(&self, name: &str) -> Option<&SystemSchema> {
        self.systems.get(name)
    }

    pub fn systems(&self) -> impl Iterator<Item = &SystemSchema> {
        self.systems.values()
    }

    pub fn kind(&self, kind: &str) -> Option<&KindSchema> {
        self.systems.values().flat_map(|s| &s.kinds).find(|k| k.kind == kind)
    }

    /// The system that declares `kind` (`file` and `ralph_auth` belong to `files`), whose
    /// `[providers.X]` block serves it by default.
    pub fn system_of(&self, kind: &str) -> Option<&'static str> {
        self.systems.values().find(|s| s.kinds.iter().any(|k| k.kind == kind)).map(|s| s.system)
    }

    pub fn kind_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.systems.values().flat_map(|s| s.kinds.iter().map(|k| k.kind))
    }
}

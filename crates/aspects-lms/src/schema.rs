//! The `lms` system as plan files see it: the `[providers.lms]` block and the four kinds, with the
//! load-time checks that keep malformed names, URLs and choices from reaching the LMS database.

use std::collections::BTreeMap;

use aspects_core::{AttrSchema, AttrType, AttrsError, KindSchema, SystemSchema, Value};
use aspects_sql::names::{check_db_name, check_url, no_control, string};

pub const SYSTEM: &str = "lms";
pub const USER: &str = "lms_user";
pub const APPLICATION: &str = "lms_oauth_application";
pub const ROUTER: &str = "lms_router_configuration";
pub const FLAG: &str = "lms_waffle_flag";

/// A schema of its own on the LMS's server: Django's migrations only create tables in the LMS's
/// database, so nothing they ever add can collide with these records (a table inside `openedx`
/// could: any installed app may name its tables freely).
pub const DEFAULT_META_DATABASE: &str = "aspects_lms_meta";

/// The one attribute that identifies an object of each kind (what the LMS looks it up by).
pub fn key_attr(kind: &str) -> &'static str {
    match kind {
        USER => "username",
        ROUTER => "route_url",
        _ => "name",
    }
}

/// The identity a record stores.
pub fn identity(kind: &str, attrs: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let key = key_attr(kind);
    BTreeMap::from([(key.to_owned(), attrs.get(key).cloned().unwrap_or_else(|| Value::from("")))])
}

pub fn schema() -> SystemSchema {
    SystemSchema {
        system: SYSTEM,
        provider_attrs: [
            aspects_sql::names::provider_attrs(
                "The LMS database, without a password: `mysql://USER@HOST:PORT/openedx`.",
                check_lms_url,
                DEFAULT_META_DATABASE,
            ),
            vec![
                AttrSchema {
                    sensitive: true,
                    ..AttrSchema::new(
                        "fernet_key",
                        AttrType::String,
                        "The first entry of the LMS's FERNET_KEYS (its SECRET_KEY when unset), from `[secrets]`: \
                     RouterConfiguration's credentials are encrypted with it. Needed by lms_router_configuration.",
                    )
                },
                AttrSchema::new(
                    "hash_client_secrets",
                    AttrType::Bool,
                    "Store OAuth client secrets hashed (django-oauth-toolkit >= 2). edx-platform pins 1.x, which \
                 stores them in plain text. Either stored form is verified.",
                )
                .default(false),
            ],
        ]
        .concat(),
        kinds: vec![user_kind(), flag_kind(), application_kind(), router_kind()],
    }
}

fn user_kind() -> KindSchema {
    KindSchema {
        kind: USER,
        attrs: vec![
            AttrSchema::new("username", AttrType::String, "The LMS username.").identity().check(check_username),
            AttrSchema::new("email", AttrType::String, "The user's email address.").required().check(check_email),
            AttrSchema::new(
                "password",
                AttrType::String,
                "The password, from `[secrets]`: stored as Django's pbkdf2_sha256 hash made locally, verified \
                 against the stored hash, never read. Without it a new user gets an unusable password and an \
                 existing one keeps the password it has.",
            )
            .write_only_secret(),
            AttrSchema::new("name", AttrType::String, "The full name on the user's profile (auth_userprofile).")
                .default("")
                .check(check_text),
            AttrSchema::new("is_staff", AttrType::Bool, "Staff flag; left as it is when not given."),
            AttrSchema::new("is_superuser", AttrType::Bool, "Superuser flag; left as it is when not given."),
            AttrSchema::new(
                "is_active",
                AttrType::Bool,
                "Active flag (a service account is active unless the plan says otherwise).",
            )
            .default(true),
        ],
        data_bearing: true,
        rank: 0,
        doc: "An LMS user and its profile, as edx-platform's `manage_user` makes them. Removing one deactivates \
              it and makes its password unusable (LMS rows refer to users, and edx-platform never deletes them); \
              that locks it out, so removals need --allow-destroy.",
        identity_key: None,
        check: None,
    }
}

fn flag_kind() -> KindSchema {
    let flag = |name, doc| AttrSchema::new(name, AttrType::Bool, doc).default(false);
    KindSchema {
        kind: FLAG,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "The flag's name.").identity().check(check_flag_name),
            AttrSchema::new(
                "everyone",
                AttrType::Bool,
                "On (true) or off (false) for everyone; when not given, the other criteria decide.",
            ),
            AttrSchema::new("percent", AttrType::String, "Percentage of users it is on for, 0.0 to 99.9.")
                .check(check_percent),
            flag("testing", "Can be switched by a query parameter (waffle's testing mode)."),
            flag("superusers", "On for superusers."),
            flag("staff", "On for staff."),
            flag("authenticated", "On for authenticated users."),
            flag("rollout", "Rollout mode."),
            AttrSchema::new("languages", AttrType::String, "Comma-separated language codes it is on for.")
                .default("")
                .check(check_text),
            AttrSchema::new("note", AttrType::String, "What the flag is for.").default("").check(check_text),
        ],
        data_bearing: false,
        rank: 0,
        doc: "A django-waffle flag, as `waffle_flag NAME --create` sets it. A running LMS caches flags, so a \
              change shows once its cache entry expires.",
        identity_key: None,
        check: None,
    }
}

fn application_kind() -> KindSchema {
    KindSchema {
        kind: APPLICATION,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "The application's name (one application per name).")
                .identity()
                .check(check_app_name),
            AttrSchema::new("user", AttrType::String, "The username owning it (an lms_user).")
                .required()
                .check(check_username),
            AttrSchema::new("client_id", AttrType::String, "The OAuth client id.").required().check(check_client_id),
            AttrSchema::new(
                "client_secret",
                AttrType::String,
                "The OAuth client secret, from `[secrets]`; verified, never shown.",
            )
            .write_only_secret()
            .required(),
            AttrSchema::new("redirect_uris", AttrType::List(Box::new(AttrType::String)), "Allowed redirect URIs.")
                .default(Value::List(Vec::new()))
                .check(check_redirect_uris),
            AttrSchema::new("client_type", AttrType::String, "`confidential` or `public`.")
                .default("confidential")
                .check(check_client_type),
            AttrSchema::new(
                "authorization_grant_type",
                AttrType::String,
                "`authorization-code`, `implicit`, `password`, `client-credentials` or `openid-hybrid`.",
            )
            .default("authorization-code")
            .check(check_grant_type),
            AttrSchema::new("skip_authorization", AttrType::Bool, "Skip the user's consent screen.").default(false),
            AttrSchema::new("algorithm", AttrType::String, "OIDC signing algorithm: ``, `RS256` or `HS256`.")
                .default("")
                .check(check_algorithm),
            AttrSchema::new(
                "scopes",
                AttrType::List(Box::new(AttrType::String)),
                "Scopes granted through edx-platform's ApplicationAccess (`create_dot_application --scopes`); left \
                 as they are when not given.",
            )
            .check(check_scopes),
        ],
        data_bearing: false,
        rank: 1,
        doc: "A django-oauth-toolkit application, as `create_dot_application --update` makes it: client id, \
              secret, redirect URIs, grant and client type are updated when they differ.",
        identity_key: None,
        check: None,
    }
}

fn router_kind() -> KindSchema {
    KindSchema {
        kind: ROUTER,
        attrs: vec![
            AttrSchema::new(
                "route_url",
                AttrType::String,
                "Where the LMS sends events, e.g. `http://ralph:8100/xAPI/`.",
            )
            .identity()
            .check(check_route_url),
            AttrSchema::new("backend_name", AttrType::String, "`xAPI` or `Caliper`.")
                .default("xAPI")
                .check(check_backend),
            AttrSchema::new("enabled", AttrType::Bool, "Whether the LMS routes events there.").default(true),
            AttrSchema::new("auth_scheme", AttrType::String, "`Basic`, `Bearer` or `` (none).")
                .default("Basic")
                .check(check_auth_scheme),
            AttrSchema::new("username", AttrType::String, "Basic auth user (stored encrypted).").check(check_text),
            AttrSchema::new("password", AttrType::String, "Basic auth password, from `[secrets]` (stored encrypted).")
                .write_only_secret(),
            AttrSchema::new("auth_key", AttrType::String, "Bearer token, from `[secrets]` (stored encrypted).")
                .write_only_secret(),
            AttrSchema::new("configurations", AttrType::Json, "Routing configuration (stored encrypted).")
                .default(Value::Json(std::sync::Arc::new(serde_json::Value::Null))),
            AttrSchema::new("changed_by", AttrType::String, "The username recorded as making the change.")
                .check(check_username),
        ],
        data_bearing: false,
        rank: 1,
        doc: "An edx-event-routing-backends RouterConfiguration (a ConfigurationModel): a change appends a row, \
              the newest row per route_url is current, removing it appends a disabled row. The LMS caches \
              routers for up to 10 minutes.",
        identity_key: None,
        check: Some(check_router),
    }
}

/// Basic needs a user and a password, Bearer a key: what ERB sends with each scheme.
fn check_router(attrs: &BTreeMap<String, Value>) -> Result<(), AttrsError> {
    let scheme = attrs.get("auth_scheme").and_then(Value::as_str).unwrap_or("Basic");
    let needs = |attr: &'static str, hint: &str| {
        if attrs.contains_key(attr) {
            Ok(())
        } else {
            Err(AttrsError {
                attr: Some("auth_scheme"),
                message: format!("auth_scheme = \"{scheme}\" needs `{attr}`"),
                hint: hint.to_owned(),
            })
        }
    };
    match scheme {
        "Basic" => needs("username", "add `username` and `password`, or set auth_scheme = \"Bearer\" with `auth_key`")
            .and_then(|_| needs("password", "add `password = \"${secrets.NAME}\"`")),
        "Bearer" => needs("auth_key", "add `auth_key = \"${secrets.NAME}\"`"),
        _ => Ok(()),
    }
}

pub fn check_lms_url(v: &Value) -> Result<(), String> {
    check_url(v)?;
    let url = url::Url::parse(string(v)?).map_err(|e| e.to_string())?;
    match url.path().trim_matches('/') {
        "" => Err("name the LMS's database in the URL: `mysql://USER@HOST:PORT/openedx`".into()),
        db => check_db_name(&Value::from(db)),
    }
}

/// Django's username validator (`[\w.@+-]+`, at most 150 characters).
fn check_username(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    if s.is_empty() || s.chars().count() > 150 {
        return Err(format!("username {s:?} must be 1 to 150 characters long"));
    }
    match s.chars().find(|c| !(c.is_alphanumeric() || "_.@+-".contains(*c))) {
        Some(c) => Err(format!("username {s:?} contains {c:?}; Django allows letters, digits and _ . @ + - only")),
        None => Ok(()),
    }
}

fn check_email(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    no_control("the email", s)?;
    match s.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && s.len() <= 254 && !s.contains(' ') => {
            Ok(())
        }
        _ => Err(format!("{s:?} is not an email address (user@domain, at most 254 characters)")),
    }
}

fn check_text(v: &Value) -> Result<(), String> {
    no_control("the text", string(v)?)
}

fn bounded(what: &str, v: &Value, max: usize) -> Result<(), String> {
    let s = string(v)?;
    no_control(what, s)?;
    if s.is_empty() || s.chars().count() > max {
        return Err(format!("{what} {s:?} must be 1 to {max} characters long"));
    }
    Ok(())
}

fn check_flag_name(v: &Value) -> Result<(), String> {
    bounded("the flag name", v, 100)
}

fn check_app_name(v: &Value) -> Result<(), String> {
    bounded("the application name", v, 255)
}

fn check_client_id(v: &Value) -> Result<(), String> {
    bounded("the client id", v, 100)?;
    if string(v)?.contains(char::is_whitespace) {
        return Err("the client id must not contain spaces".into());
    }
    Ok(())
}

fn check_percent(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    match s.parse::<f64>() {
        Ok(p) if (0.0..100.0).contains(&p) && s.split_once('.').is_none_or(|(_, d)| d.len() <= 1) => Ok(()),
        _ => Err(format!("percent {s:?} must be a number from 0.0 to 99.9 with at most one decimal, e.g. \"12.5\"")),
    }
}

/// `12`, `12.50` -> `12.5`, as the LMS's decimal(3,1) column stores it.
pub fn canonical_percent(s: &str) -> String {
    s.parse::<f64>().map_or_else(|_| s.to_owned(), |p| format!("{p:.1}"))
}

fn one_of(what: &str, v: &Value, allowed: &[&str]) -> Result<(), String> {
    let s = string(v)?;
    if allowed.contains(&s) {
        return Ok(());
    }
    Err(format!(
        "{what} {s:?} is not one of {}",
        allowed.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
    ))
}

fn check_client_type(v: &Value) -> Result<(), String> {
    one_of("client_type", v, &["confidential", "public"])
}

fn check_grant_type(v: &Value) -> Result<(), String> {
    one_of(
        "authorization_grant_type",
        v,
        &["authorization-code", "implicit", "password", "client-credentials", "openid-hybrid"],
    )
}

fn check_algorithm(v: &Value) -> Result<(), String> {
    one_of("algorithm", v, &["", "RS256", "HS256"])
}

fn check_backend(v: &Value) -> Result<(), String> {
    one_of("backend_name", v, &["xAPI", "Caliper"])
}

fn check_auth_scheme(v: &Value) -> Result<(), String> {
    one_of("auth_scheme", v, &["Basic", "Bearer", ""])
}

fn check_uri(what: &str, s: &str) -> Result<(), String> {
    no_control(what, s)?;
    match url::Url::parse(s) {
        Ok(u) if u.has_host() && !s.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("{what} {s:?} is not an absolute URL such as `https://host/path`")),
    }
}

fn list(v: &Value) -> Result<&[Value], String> {
    match v {
        Value::List(items) => Ok(items),
        other => Err(format!("expected a list, found {}", other.type_name())),
    }
}

fn check_redirect_uris(v: &Value) -> Result<(), String> {
    list(v)?.iter().try_for_each(|u| check_uri("the redirect URI", string(u)?))
}

fn check_route_url(v: &Value) -> Result<(), String> {
    check_uri("the route URL", string(v)?)?;
    if string(v)?.chars().count() > 255 {
        return Err("the route URL must be at most 255 characters long".into());
    }
    Ok(())
}

fn check_scopes(v: &Value) -> Result<(), String> {
    let scopes = list(v)?;
    for s in scopes {
        let s = string(s)?;
        if s.is_empty() || s.contains([',', ' ']) || s.chars().any(char::is_control) {
            return Err(format!("scope {s:?} must be a non-empty word without commas or spaces"));
        }
    }
    let joined: usize = scopes.iter().filter_map(Value::as_str).map(|s| s.len() + 1).sum();
    if joined > 826 {
        return Err("the scopes are longer than the 825 characters ApplicationAccess stores".into());
    }
    Ok(())
}

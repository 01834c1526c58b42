//! The `superset` system as plan files see it: the `[providers.superset]` block and the kinds,
//! with the load-time checks that keep names from reaching Superset malformed. Whether a
//! permission exists is judged at plan time against Superset's own catalogue (`check` in
//! client.rs), before any write.

use std::collections::BTreeMap;

use aspects_core::schema::{check_max_concurrency, invisible, lock_lease_attr};
use aspects_core::{AttrSchema, AttrType, KindSchema, SystemSchema, Value, identity_string};

pub const SYSTEM: &str = "superset";
pub const ROLE: &str = "superset_role";
pub const USER: &str = "superset_user";
pub const DATABASE: &str = "superset_database";
pub const ASSETS: &str = "superset_assets";
pub const RLS: &str = "superset_rls_filter";
pub const EMBEDDED: &str = "superset_embedded_dashboard";

pub const DEFAULT_MAX_CONCURRENCY: i64 = 4;
pub const DEFAULT_LOCK_LEASE: i64 = 30;

pub use aspects_core::value::{str_attr, str_list};

pub fn schema() -> SystemSchema {
    SystemSchema {
        system: SYSTEM,
        provider_attrs: vec![
            AttrSchema::new(
                "url",
                AttrType::String,
                "Superset's address without credentials, e.g. `http://127.0.0.1:8088`.",
            )
            .required()
            .check(check_url),
            AttrSchema::new("username", AttrType::String, "The Superset user aspects logs in as (an Admin).")
                .required()
                .check(check_name),
            AttrSchema {
                sensitive: true,
                ..AttrSchema::new("password", AttrType::String, "That user's password, from `[secrets]`.").required()
            },
            AttrSchema::new("max_concurrency", AttrType::Int, "Requests this provider sends at once during apply.")
                .default(DEFAULT_MAX_CONCURRENCY)
                .check(check_max_concurrency),
            lock_lease_attr(DEFAULT_LOCK_LEASE),
            AttrSchema::new(
                "metadata_url",
                AttrType::String,
                "Superset's metadata database (MySQL or MariaDB, as Aspects runs it) without a password, e.g. \
                 `mysql://superset@mysql:3306/superset`: only `superset_embedded_dashboard` needs it, because \
                 Superset's API cannot choose an embedded dashboard's UUID.",
            )
            .check(check_metadata_url),
            AttrSchema {
                sensitive: true,
                ..AttrSchema::new("metadata_password", AttrType::String, "That login's password, from `[secrets]`.")
            },
        ],
        kinds: vec![role_kind(), user_kind(), database_kind(), assets_kind(), rls_kind(), embedded_kind()],
    }
}

fn role_kind() -> KindSchema {
    KindSchema {
        kind: ROLE,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "Role name, e.g. `Instructor`.").identity().check(check_role),
            AttrSchema::new(
                "permissions",
                AttrType::List(Box::new(AttrType::String)),
                "The role's exact permission set, each `PERMISSION on VIEW` as Superset lists them (e.g. \
                 \"can_read on Dashboard\", \"menu_access on SQL Lab\"); permissions beyond these are removed.",
            )
            .default(Value::List(Vec::new()))
            .check(check_permissions),
        ],
        data_bearing: false,
        rank: 0,
        doc: "A role and its exact permission set (Tutor's `fab import-roles` only ever adds).",
        identity_key: None,
        check: None,
    }
}

fn user_kind() -> KindSchema {
    KindSchema {
        kind: USER,
        attrs: vec![
            AttrSchema::new("username", AttrType::String, "The login name.").identity().check(check_name),
            AttrSchema::new("first_name", AttrType::String, "First name (Superset requires one).")
                .required()
                .check(check_text),
            AttrSchema::new("last_name", AttrType::String, "Last name (Superset requires one).")
                .required()
                .check(check_text),
            AttrSchema::new("email", AttrType::String, "E-mail address, unique in Superset.")
                .required()
                .check(check_email),
            AttrSchema::new("active", AttrType::Bool, "Whether the user may log in.").default(true),
            AttrSchema::new("roles", AttrType::List(Box::new(AttrType::String)), "The user's exact roles, by name.")
                .required()
                .check(check_roles),
            AttrSchema::new(
                "password",
                AttrType::String,
                "The password, from `[secrets]`: verified by logging in as the user (never read back), set again \
                 when the login fails, changed by `aspects rotate`.",
            )
            .write_only_secret()
            .required(),
        ],
        data_bearing: false,
        rank: 1,
        doc: "A database-authenticated user: names, e-mail, active flag, roles and password.",
        identity_key: None,
        check: None,
    }
}

fn database_kind() -> KindSchema {
    KindSchema {
        kind: DATABASE,
        attrs: vec![
            AttrSchema::new("uuid", AttrType::String, "The connection's UUID (what asset bundles refer to).")
                .identity()
                .check(check_uuid),
            AttrSchema::new("database_name", AttrType::String, "The name Superset shows, unique in Superset.")
                .required()
                .check(check_text),
            AttrSchema {
                sensitive: true,
                ..AttrSchema::new(
                    "sqlalchemy_uri",
                    AttrType::String,
                    "The SQLAlchemy URI with the password from `[secrets]` inside it, e.g. \
                     \"clickhousedb+connect://ch_report:${secrets.CH_REPORT}@clickhouse:8123/xapi\". Plans show it \
                     with the password masked; rotating that secret updates the connection.",
                )
                .required()
            },
            AttrSchema::new("expose_in_sqllab", AttrType::Bool, "Offered in SQL Lab.").default(true),
            AttrSchema::new("allow_run_async", AttrType::Bool, "Queries run asynchronously (needs Celery).")
                .default(false),
            AttrSchema::new("allow_dml", AttrType::Bool, "SQL Lab may run statements other than SELECT.")
                .default(false),
        ],
        data_bearing: false,
        rank: 0,
        doc: "A database connection. Superset tests the connection on every create and update, so the database \
              must be reachable from Superset when it is applied.",
        identity_key: None,
        check: None,
    }
}

fn assets_kind() -> KindSchema {
    KindSchema {
        kind: ASSETS,
        attrs: vec![
            AttrSchema::new(
                "name",
                AttrType::String,
                "Names this bundle: its fingerprints live in the CSS template `aspects assets: DEPLOYMENT/NAME`.",
            )
            .identity()
            .check(check_name),
            AttrSchema::new(
                "directory",
                AttrType::String,
                "Folder of Superset v1 YAML assets (databases, datasets, charts, dashboards; the kind is read from \
                 each file, as Aspects does), relative to the plan file. Each file is a Jinja template.",
            )
            .required()
            .check(check_folder),
            AttrSchema::new(
                "templates",
                AttrType::String,
                "Folder that `{% include %}` names start from (Tutor: the plugin's `templates` folder), relative to \
                 the plan file. Default: `directory`.",
            )
            .check(check_folder),
            AttrSchema::new(
                "context",
                AttrType::Map,
                "The templates' variables, under Tutor's names: `{ DBT_PROFILE_TARGET_DATABASE = \"reporting\" }`. \
                 A database password may come from a secret inside a URI: it is sent in the import's `passwords` \
                 field, never inside the bundle.",
            )
            .embeds_secrets(),
            AttrSchema::new(
                "locales",
                AttrType::List(Box::new(AttrType::String)),
                "Aspects' SUPERSET_DASHBOARD_LOCALES: each dataset, chart and dashboard is also imported once per \
                 locale, as Aspects expands them.",
            )
            .default(Value::List(Vec::new()))
            .check(check_locales),
            AttrSchema::new(
                "owners",
                AttrType::List(Box::new(AttrType::String)),
                "Aspects' SUPERSET_OWNERS: usernames that own every chart and dashboard of the bundle, exactly. \
                 Empty (the default): owners stay as Superset's import leaves them.",
            )
            .default(Value::List(Vec::new()))
            .check(check_owners),
            AttrSchema::new(
                "assets",
                AttrType::Json,
                "Computed, not written: every asset of the rendered bundle by kind, UUID and title, compared by key \
                 and path.",
            ),
        ],
        // Deleting the bundle deletes its database connections too.
        data_bearing: true,
        rank: 2,
        doc: "A directory of Superset v1 YAML assets, rendered with Jinja and imported; assets this bundle \
              imported and no longer holds are deleted (database connections only with the whole bundle).",
        identity_key: None,
        check: None,
    }
}

fn rls_kind() -> KindSchema {
    let list = || AttrType::List(Box::new(AttrType::String));
    KindSchema {
        kind: RLS,
        attrs: vec![
            AttrSchema::new("name", AttrType::String, "The filter's name, unique in Superset.")
                .identity()
                .check(check_name),
            AttrSchema::new(
                "filter_type",
                AttrType::String,
                "`Regular` (applies to the roles) or `Base` (to everyone else).",
            )
            .default("Regular")
            .check(check_filter_type),
            AttrSchema::new(
                "tables",
                list(),
                "The datasets it filters, as `SCHEMA.TABLE`, or `SCHEMA.*` for every dataset of a schema (Aspects' \
                 way), including those the plan's asset bundles import.",
            )
            .required()
            .check(check_tables),
            AttrSchema::new("exclude", list(), "Table names `SCHEMA.*` patterns leave out, e.g. [\"user_pii\"].")
                .default(Value::List(Vec::new()))
                .check(check_table_names),
            AttrSchema::new("roles", list(), "The roles it applies to (or, for `Base`, does not), by name.")
                .default(Value::List(Vec::new()))
                .check(check_role_list),
            AttrSchema::new(
                "group_key",
                AttrType::String,
                "Filters with one group key are OR-ed together, others AND-ed.",
            )
            .default(""),
            AttrSchema::new(
                "clause",
                AttrType::String,
                "The SQL WHERE clause, Superset's own Jinja included (`{{ can_view_courses(current_username(), \
                 \"course_key\") }}`): kept as written.",
            )
            .required()
            .check(check_clause),
            AttrSchema::new("description", AttrType::String, "Shown in Superset's list.").default(""),
        ],
        data_bearing: false,
        rank: 3,
        doc: "A row-level security filter: its exact tables, roles and clause (Tutor's script adds roles, never \
              removes them).",
        identity_key: None,
        check: None,
    }
}

fn embedded_kind() -> KindSchema {
    let list = || AttrType::List(Box::new(AttrType::String));
    KindSchema {
        kind: EMBEDDED,
        attrs: vec![
            AttrSchema::new(
                "uuid",
                AttrType::String,
                "The embedded UUID the LMS asks for (Aspects' SUPERSET_EMBEDDABLE_DASHBOARDS).",
            )
            .identity()
            .check(check_uuid),
            AttrSchema::new("dashboard", AttrType::String, "The dashboard's slug, e.g. `course-dashboard`.")
                .required()
                .check(check_slug),
            AttrSchema::new(
                "allowed_domains",
                list(),
                "Domains allowed to embed it (empty: any), e.g. [\"https://lms.example.com\"].",
            )
            .default(Value::List(Vec::new()))
            .check(check_domains),
            AttrSchema::new(
                "locales",
                list(),
                "Also embed each locale copy of the dashboard (slug `<slug>-<locale>`), under the UUID Aspects derives \
                 for it (uuid5 of the base UUID), as the LMS expects.",
            )
            .default(Value::List(Vec::new()))
            .check(check_locales),
        ],
        data_bearing: false,
        rank: 3,
        doc: "A dashboard embedded under a fixed UUID. Written in Superset's metadata database (`metadata_url`): \
              Superset's API only makes random ones.",
        identity_key: None,
        check: None,
    }
}

/// The identity attributes of a resource of `kind`.
pub fn identity(kind: &str, attrs: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let name = identity_attr(kind);
    [(name.to_owned(), Value::from(str_attr(attrs, name)))].into()
}

pub fn identity_attr(kind: &str) -> &'static str {
    match kind {
        USER => "username",
        DATABASE | EMBEDDED => "uuid",
        _ => "name",
    }
}

/// Whether objects of `kind` are named within a deployment (an asset bundle: its markers carry
/// the deployment's name; the assets in it have one owner, checked per asset).
pub fn deployment_scoped(kind: &str) -> bool {
    kind == ASSETS
}

/// `name = "x"`, as messages show an identity.
pub fn describe(kind: &str, id: &BTreeMap<String, Value>) -> String {
    format!("{kind} {}", identity_string(id.iter().map(|(k, v)| (k.as_str(), v))))
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| format!("expected a string, found {}", v.type_name()))
}

/// Text Superset stores and shows: no control or invisible characters, 1 to `max` characters.
fn text(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.trim().is_empty() || s.chars().count() > max {
        return Err(format!("{what} {s:?} must be 1 to {max} characters long"));
    }
    match s.chars().find(|c| c.is_control() || invisible(*c)) {
        Some(c) => {
            Err(format!("{what} {s:?} contains U+{:04X} (a control or invisible character); remove it", u32::from(c)))
        }
        None => Ok(()),
    }
}

fn check_text(v: &Value) -> Result<(), String> {
    text("the text", string(v)?, 250)
}

fn check_name(v: &Value) -> Result<(), String> {
    text("the name", string(v)?, 250)
}

/// Role names are at most 64 characters in Flask-AppBuilder.
fn check_role(v: &Value) -> Result<(), String> {
    text("the role name", string(v)?, 64)
}

fn check_roles(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of role names, found {}", v.type_name()))?;
    if list.is_empty() {
        return Err("Superset requires at least one role per user; name one, e.g. [\"Gamma\"]".into());
    }
    list.iter().try_for_each(check_role)
}

fn check_email(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    text("the e-mail address", s, 320)?;
    match s.split_once('@') {
        Some((user, domain)) if !user.is_empty() && !domain.is_empty() && !s.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("{s:?} is not an e-mail address (user@domain)")),
    }
}

/// `PERMISSION on VIEW`: the permission is a word (`can_read`, `menu_access`), the view any text.
pub fn split_permission(s: &str) -> Option<(&str, &str)> {
    let (permission, view) = s.split_once(" on ")?;
    let word = !permission.is_empty() && permission.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (word && !view.trim().is_empty()).then_some((permission, view))
}

fn check_permissions(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of permissions, found {}", v.type_name()))?;
    for p in list {
        let s = string(p)?;
        text("the permission", s, 500)?;
        if split_permission(s).is_none() {
            return Err(format!("{s:?} is not `PERMISSION on VIEW`; write e.g. \"can_read on Dashboard\""));
        }
    }
    Ok(())
}

/// A folder path (the operator's: relative to the plan file, or absolute).
fn check_folder(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    if s.is_empty() || s.contains('\0') {
        return Err("the folder path is empty or contains a NUL byte".into());
    }
    Ok(())
}

/// Locales as Aspects writes them (`en`, `fr_CA`, `es-419`): they end up in UUIDs, slugs and
/// role names.
fn check_locales(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of locales, found {}", v.type_name()))?;
    for l in list {
        let s = string(l)?;
        let ok = (2..=16).contains(&s.len())
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(format!("{s:?} is not a locale; write e.g. \"fr_CA\" or \"es-419\""));
        }
    }
    Ok(())
}

/// A MySQL URL without a password; the password goes in `metadata_password`.
pub(crate) fn check_metadata_url(v: &Value) -> Result<(), String> {
    aspects_sql::names::check_url_beside(v, "metadata_password")
}

fn check_owners(v: &Value) -> Result<(), String> {
    v.as_list()
        .ok_or_else(|| format!("expected a list of usernames, found {}", v.type_name()))?
        .iter()
        .try_for_each(check_name)
}

fn check_filter_type(v: &Value) -> Result<(), String> {
    match string(v)? {
        "Regular" | "Base" => Ok(()),
        other => Err(format!("{other:?} is not a filter type; write \"Regular\" or \"Base\"")),
    }
}

fn check_role_list(v: &Value) -> Result<(), String> {
    v.as_list()
        .ok_or_else(|| format!("expected a list of role names, found {}", v.type_name()))?
        .iter()
        .try_for_each(check_role)
}

/// `SCHEMA.TABLE` or `SCHEMA.*`; the schema cannot hold a dot, the table may.
fn check_tables(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of datasets, found {}", v.type_name()))?;
    for t in list {
        let s = string(t)?;
        text("the dataset", s, 500)?;
        match s.split_once('.') {
            Some((schema, table))
                if !schema.is_empty() && (table == "*" || !table.is_empty() && !table.contains('*')) => {}
            _ => return Err(format!("{s:?} is not SCHEMA.TABLE or SCHEMA.*; write e.g. \"event_sink.course_names\"")),
        }
    }
    Ok(())
}

fn check_table_names(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of table names, found {}", v.type_name()))?;
    list.iter().try_for_each(|t| text("the table name", string(t)?, 250))
}

/// A clause may span lines; it must not be empty or hold NUL or invisible characters.
fn check_clause(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    if s.trim().is_empty() {
        return Err("the clause is empty; write a SQL condition, e.g. \"course_key = 'x'\"".into());
    }
    match s.chars().find(|c| (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || invisible(*c)) {
        Some(c) => {
            Err(format!("the clause contains U+{:04X} (a control or invisible character); remove it", u32::from(c)))
        }
        None => Ok(()),
    }
}

/// Slugs as Superset makes them: letters, digits, `-` and `_`.
fn check_slug(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    if s.is_empty() || s.len() > 255 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!(
            "{s:?} is not a dashboard slug; write letters, digits, `-` and `_`, e.g. \"course-dashboard\""
        ));
    }
    Ok(())
}

/// Superset keeps the list comma-separated: a domain cannot hold a comma.
fn check_domains(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of domains, found {}", v.type_name()))?;
    for d in list {
        let s = string(d)?;
        text("the domain", s, 250)?;
        if s.contains(',') || s.contains(char::is_whitespace) {
            return Err(format!("{s:?} is not a domain; write one origin per item, e.g. \"https://lms.example.com\""));
        }
    }
    Ok(())
}

fn check_uuid(v: &Value) -> Result<(), String> {
    let s = string(v)?;
    let groups: Vec<&str> = s.split('-').collect();
    let lens = groups.iter().map(|g| g.len()).collect::<Vec<_>>();
    if lens == [8, 4, 4, 4, 12] && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit())) {
        Ok(())
    } else {
        Err(format!("{s:?} is not a UUID; write it as 8-4-4-4-12 hexadecimal digits"))
    }
}

/// `http(s)://HOST[:PORT][/PATH]` with no credentials in it. The error never quotes the URL.
fn check_url(v: &Value) -> Result<(), String> {
    let text = string(v)?;
    let form = "write it as `http://HOST:8088`, with `username` and `password` beside it";
    let url = url::Url::parse(text).map_err(|e| format!("cannot read the URL: {e}; {form}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("this is not a Superset HTTP URL; {form}"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(format!("the URL must hold no credentials and no query; {form}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, attr: &str, v: impl Into<Value>) -> Result<(), String> {
        schema().check_attr(kind, attr, &v.into())
    }

    fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::from(*s)).collect())
    }

    #[test]
    fn hostile_input_is_refused() {
        assert_eq!(check(ROLE, "name", "Instructor - fr_CA"), Ok(()));
        for bad in ["", " ", "a\0b", "ad\u{202e}min", &"x".repeat(65)] {
            assert!(check(ROLE, "name", bad).is_err(), "{bad:?}");
        }
        assert_eq!(check(ROLE, "permissions", list(&["can_read on Dashboard", "menu_access on SQL Lab"])), Ok(()));
        for bad in ["can_read", "can read on Chart", " on Chart", "can_read on  "] {
            assert!(check(ROLE, "permissions", list(&[bad])).is_err(), "{bad:?}");
        }
        assert!(check(USER, "roles", list(&[])).unwrap_err().contains("at least one role"));
        assert!(check(USER, "email", "no-at-sign").is_err());
        assert!(check(USER, "email", "a b@c").is_err());
        assert_eq!(check(DATABASE, "uuid", "21174b6c-4d40-4958-8161-d6c3cf5e77b6"), Ok(()));
        assert!(check(DATABASE, "uuid", "21174b6c-4d40-4958-8161").is_err());
        assert_eq!(check("provider", "url", "http://127.0.0.1:8088"), Ok(()));
        let err = check("provider", "url", "http://admin:hunter2@h:8088").unwrap_err();
        assert!(err.contains("no credentials") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn permissions_split_at_the_first_on() {
        assert_eq!(
            split_permission("datasource_access on [db].[t on x]"),
            Some(("datasource_access", "[db].[t on x]"))
        );
        assert_eq!(split_permission("can_read"), None);
    }
}

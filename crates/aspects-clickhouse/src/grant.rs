//! `clickhouse_role` and `clickhouse_grant`: roles, the privileges of a user or role on one
//! object, and the roles granted to a user or role.
//!
//! Grants are compared as rows of `system.grants` / `system.role_grants`, never as `SHOW GRANTS`
//! text. The server canonicalises both sides: the desired privilege names go through its parser
//! (`formatQuerySingleLine`: `UPDATE` is `ALTER UPDATE`), and both the desired names and the
//! live `access_type`s are expanded into the leaf privileges `system.privileges` says they hold,
//! kept to those the object's level can carry (the server itself stores `ALTER` on a database as
//! `ALTER TABLE, ALTER DATABASE, ALTER VIEW`). Equal leaf sets are no change, whatever the
//! spelling. A plan reads grants in six queries whatever their number: privileges, the desired
//! statements, the grantees (users, roles: one SQL cannot change is refused), `system.grants`
//! and `system.role_grants`. A grant with `columns` is compared column by column, on the rows
//! `system.grants` keeps per column.
//!
//! A managed grantee (a `clickhouse_user` or `clickhouse_role` of the plan) holds exactly what the
//! plan grants it: privileges on other objects, column privileges no grant names, partial revokes and roles the
//! plan does not declare are shown as `clickhouse_grant` orphans ("privileges beyond the plan")
//! and taken away by apply (a partial revoke is lifted).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use aspects_core::schema::AttrsError;
use aspects_core::{Address, AttrSchema, AttrType, Change, KindSchema, Live, Orphan, Resource, Value};
use aspects_engine::provider::ProviderError;

use crate::client::{Handle, array_param, code, col, ident};
use crate::ownership;
use crate::schema::{self, GRANT, ROLE, USER, check_name, str_attr, str_list, string};
use crate::user::{check_manageable, refuse};

pub fn role_kind() -> KindSchema {
    KindSchema {
        kind: ROLE,
        attrs: vec![AttrSchema::new("name", AttrType::String, "Role name.").identity().check(check_name)],
        data_bearing: false,
        rank: 1,
        doc: "A role: privileges and other roles are granted to it with clickhouse_grant.",
        identity_key: Some(|a| schema::key(ROLE, a)),
        check: None,
    }
}

/// Privileges and role grants are one kind, as `GRANT` is one statement in ClickHouse; a resource
/// is either `privileges` on `on`, or `roles` (every role the grantee holds, so one granted by
/// hand is found and revoked).
pub fn grant_kind() -> KindSchema {
    KindSchema {
        kind: GRANT,
        attrs: vec![
            optional(AttrSchema::new("user", AttrType::String, "Grantee user (or give `role`).").check(check_name)),
            optional(AttrSchema::new("role", AttrType::String, "Grantee role (or give `user`).").check(check_name)),
            optional(
                AttrSchema::new(
                    "on",
                    AttrType::String,
                    "`*.*`, `db.*` or `db.table` as in GRANT (backticks around a name holding a dot); with `privileges`.",
                )
                .check(check_on),
            ),
            optional(
                AttrSchema::new(
                    "columns",
                    AttrType::List(Box::new(AttrType::String)),
                    "Columns of the table `on` names: `privileges` are held on these columns only, as \
                     `GRANT SELECT(a, b) ON db.t` (each column compared on its own).",
                )
                .check(check_columns),
            ),
            AttrSchema::new(
                "privileges",
                AttrType::List(Box::new(AttrType::String)),
                "Exactly the privileges held on `on`, as GRANT names them (`SELECT`, `ALTER UPDATE`, `dictGet`): \
                 missing ones are granted, others revoked.",
            )
            .check(check_privileges),
            AttrSchema::new("grant_option", AttrType::Bool, "WITH GRANT OPTION on every privilege.").default(false),
            AttrSchema::new(
                "roles",
                AttrType::List(Box::new(AttrType::String)),
                "Exactly the roles the grantee holds (instead of `privileges` and `on`): others are revoked.",
            )
            .check(check_roles),
            AttrSchema::new("admin_option", AttrType::Bool, "WITH ADMIN OPTION on every role.").default(false),
        ],
        data_bearing: false,
        rank: 2,
        doc: "The privileges of a user or role on one object, or the roles it holds, converged exactly.",
        identity_key: Some(|a| schema::key(GRANT, a)),
        check: Some(check_grant),
    }
}

/// An identity attribute a resource may leave out (`check_grant` says which it needs).
fn optional(attr: AttrSchema) -> AttrSchema {
    AttrSchema { required: false, ..attr.identity() }
}

/// `user` or `role`, and `on` for privileges (none for role grants), and the columns of a column
/// grant (sorted, once each).
pub fn identity(attrs: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let (attr, name) = grantee(attrs);
    let mut id = BTreeMap::from([(attr.to_owned(), Value::from(name))]);
    if let Some(on) = attrs.get("on").and_then(Value::as_str) {
        let on = Target::parse(on).map_or_else(|_| on.to_owned(), |t| t.to_string());
        id.insert("on".into(), Value::Str(on));
    }
    let columns = columns_of(attrs);
    if !columns.is_empty() {
        id.insert("columns".into(), list(columns));
    }
    // What only an orphan carries (the row it stands for): kept, or removing it would revoke
    // the grantee's privileges on the whole object instead.
    for key in ["column", "partial_revoke"] {
        id.extend(attrs.get(key).map(|v| (key.to_owned(), v.clone())));
    }
    id
}

/// The columns of a column grant, sorted, once each; none for a grant on a whole object.
fn columns_of(attrs: &BTreeMap<String, Value>) -> Vec<String> {
    let mut columns: Vec<String> = str_list(attrs.get("columns")).into_iter().map(str::to_owned).collect();
    columns.sort();
    columns.dedup();
    columns
}

/// The privilege list of a GRANT: `SELECT, INSERT`, or on columns `SELECT(a, b), INSERT(a, b)`.
fn privilege_sql(r: &Resource) -> String {
    let columns = columns_of(&r.attrs);
    let on = if columns.is_empty() {
        String::new()
    } else {
        format!("({})", columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "))
    };
    str_list(r.attrs.get("privileges")).iter().map(|p| format!("{p}{on}")).collect::<Vec<_>>().join(", ")
}

/// (`"user"` or `"role"`, name).
pub(crate) fn grantee(attrs: &BTreeMap<String, Value>) -> (&'static str, &str) {
    if attrs.contains_key("role") { ("role", str_attr(attrs, "role")) } else { ("user", str_attr(attrs, "user")) }
}

fn check_grant(attrs: &BTreeMap<String, Value>) -> Result<(), AttrsError> {
    let has = |k: &str| attrs.contains_key(k);
    let err = |attr: Option<&'static str>, message: &str, hint: &str| {
        Err(AttrsError { attr, message: message.to_owned(), hint: hint.to_owned() })
    };
    let both = "write `privileges = [...]` with `on = \"db.*\"`, or `roles = [...]`, in one resource";
    match (has("user"), has("role")) {
        (true, true) => return err(Some("role"), "names both a user and a role", "one grantee per resource"),
        (false, false) => return err(None, "names no grantee", "give `user = \"NAME\"` or `role = \"NAME\"`"),
        _ => {}
    }
    match (has("privileges"), has("on"), has("roles")) {
        (true, true, false) | (false, false, true) => {}
        (_, _, true) => return err(Some("roles"), "sets `roles` beside `privileges` or `on`", both),
        (true, false, _) => return err(Some("privileges"), "sets `privileges` without `on`", both),
        (false, true, _) => return err(Some("on"), "sets `on` without `privileges`", both),
        (false, false, false) => return err(None, "grants nothing", both),
    }
    if has("columns")
        && !attrs.get("on").and_then(Value::as_str).is_some_and(|on| Target::parse(on).is_ok_and(|t| t.table.is_some()))
    {
        return err(
            Some("columns"),
            "sets `columns` on a grant that is not on one table",
            "write `on = \"db.table\"` with `columns`, and `privileges`",
        );
    }
    if attrs.get("admin_option") == Some(&Value::Bool(true)) && !has("roles") {
        return err(Some("admin_option"), "sets `admin_option` on privileges", "use `grant_option` for privileges");
    }
    if attrs.get("grant_option") == Some(&Value::Bool(true)) && has("roles") {
        return err(Some("grant_option"), "sets `grant_option` on roles", "use `admin_option` for roles");
    }
    Ok(())
}

fn check_on(v: &Value) -> Result<(), String> {
    Target::parse(string(v)?).map(drop)
}

/// Words that would carry a privilege list into another clause.
const CLAUSE_WORDS: &[&str] = &["ON", "TO", "FROM", "WITH", "GRANT", "REVOKE", "OPTION", "EXCEPT"];

/// A privilege as GRANT names it: words of letters, digits and `_` (the server judges the name).
fn check_privileges(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of privileges, found {}", v.type_name()))?;
    if list.is_empty() {
        return Err("the list is empty; give at least one privilege (a grant of nothing is no grant)".into());
    }
    for p in list {
        let p = string(p)?;
        let words: Vec<&str> = p.split(' ').collect();
        let word = |w: &&str| {
            w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !CLAUSE_WORDS.iter().any(|k| k.eq_ignore_ascii_case(w))
        };
        if !words.iter().all(word) {
            return Err(format!(
                "{p:?} is not a privilege name (words of letters, digits and `_`, e.g. \"ALTER UPDATE\"; column lists \
                 and clauses are not taken)"
            ));
        }
    }
    Ok(())
}

fn check_columns(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of column names, found {}", v.type_name()))?;
    if list.is_empty() {
        return Err("the list is empty; leave `columns` out to grant on the whole table".into());
    }
    list.iter().try_for_each(check_name)
}

fn check_roles(v: &Value) -> Result<(), String> {
    let list = v.as_list().ok_or_else(|| format!("expected a list of role names, found {}", v.type_name()))?;
    list.iter().try_for_each(check_name)
}

/// The object of a privilege: `*.*`, `db.*` or `db.table`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub database: Option<String>,
    pub table: Option<String>,
}

impl Target {
    /// Two parts split at a dot outside backticks; `*` for every database or table.
    pub fn parse(text: &str) -> Result<Target, String> {
        let form = "write `*.*`, `db.*` or `db.table` (a name holding a dot in backticks)";
        let mut parts = Vec::new();
        let (mut part, mut quoted, mut chars) = (String::new(), None::<bool>, text.chars());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('`', None) if part.is_empty() => quoted = Some(true),
                ('`', Some(true)) => quoted = Some(false),
                ('\\', Some(true)) => part.extend(chars.next()),
                ('.', None | Some(false)) => {
                    parts.push((std::mem::take(&mut part), quoted.is_some()));
                    quoted = None;
                }
                (_, Some(false)) => return Err(format!("{text:?}: text after a closing backtick; {form}")),
                (c, _) => part.push(c),
            }
        }
        if quoted == Some(true) {
            return Err(format!("{text:?}: a backtick is not closed; {form}"));
        }
        parts.push((part, quoted.is_some()));
        let [(db, db_quoted), (table, table_quoted)] =
            <[_; 2]>::try_from(parts).map_err(|p: Vec<_>| format!("{text:?} has {} parts; {form}", p.len()))?;
        let name = |n: String, quoted: bool| -> Result<Option<String>, String> {
            if n == "*" && !quoted {
                return Ok(None);
            }
            check_name(&Value::Str(n.clone()))?;
            Ok(Some(n))
        };
        let (database, table) = (name(db, db_quoted)?, name(table, table_quoted)?);
        if database.is_none() && table.is_some() {
            return Err(format!("{text:?}: a table in every database cannot be granted; {form}"));
        }
        Ok(Target { database, table })
    }

    fn sql(&self) -> String {
        match (&self.database, &self.table) {
            (None, _) => "*.*".into(),
            (Some(d), None) => format!("{}.*", ident(d)),
            (Some(d), Some(t)) => format!("{}.{}", ident(d), ident(t)),
        }
    }

    /// The privilege levels (`system.privileges.level`) an object of this kind can carry.
    fn holds(&self, level: &str) -> bool {
        let table = ["TABLE", "DICTIONARY", "VIEW", "COLUMN"];
        match (&self.database, &self.table) {
            (None, _) => true,
            (Some(_), None) => level == "DATABASE" || table.contains(&level),
            (Some(_), Some(_)) => table.contains(&level),
        }
    }

    /// `other` is this object or inside it.
    fn covers(&self, other: &Target) -> bool {
        match (&self.database, &self.table) {
            (None, _) => true,
            (Some(d), None) => other.database.as_ref() == Some(d),
            (Some(_), Some(_)) => self == other,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = |n: &str| {
            let simple = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if simple { n.to_owned() } else { ident(n) }
        };
        match (&self.database, &self.table) {
            (None, _) => write!(f, "*.*"),
            (Some(d), None) => write!(f, "{}.*", plain(d)),
            (Some(d), Some(t)) => write!(f, "{}.{}", plain(d), plain(t)),
        }
    }
}

/// The privilege tree of the server (`system.privileges`), to expand names into leaves.
pub struct Privileges {
    children: BTreeMap<String, Vec<String>>,
    level: BTreeMap<String, String>,
}

impl Privileges {
    /// The leaf privileges `name` holds that `on` can carry.
    fn leaves(&self, name: &str, on: &Target) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![name.to_owned()];
        while let Some(p) = stack.pop() {
            match self.children.get(&p) {
                Some(kids) => stack.extend(kids.iter().cloned()),
                None if on.holds(self.level.get(&p).map_or("", String::as_str)) => {
                    out.insert(p);
                }
                None => {}
            }
        }
        out
    }

    fn all_leaves<'a>(&self, names: impl IntoIterator<Item = &'a str>, on: &Target) -> BTreeSet<String> {
        names.into_iter().flat_map(|n| self.leaves(n, on)).collect()
    }
}

/// A `(kind attr, name)` grantee.
type Grantee = (&'static str, String);

/// One row of `system.grants`.
#[derive(Clone, Debug)]
struct Row {
    grantee: Grantee,
    access: String,
    target: Target,
    column: Option<String>,
    partial: bool,
    grant_option: bool,
}

/// What one grantee holds on one object or column (plain rows only: no partial revoke).
#[derive(Default)]
struct Held {
    access: BTreeSet<String>,
    leaves: BTreeSet<String>,
    with_option: BTreeSet<String>,
}

/// The live grants of some grantees: rows, and role name -> admin option per grantee.
pub(crate) struct Grants {
    /// Whose grants these are (all of them, including grantees that hold nothing).
    grantees: BTreeSet<Grantee>,
    rows: Vec<Row>,
    roles: BTreeMap<Grantee, BTreeMap<String, bool>>,
}

impl Grants {
    /// What `g` holds on `on` itself (`column` none) or on one of its columns.
    fn held(&self, p: &Privileges, g: &Grantee, on: &Target, column: Option<&str>) -> Option<Held> {
        let mut held: Option<Held> = None;
        for r in self
            .rows
            .iter()
            .filter(|r| &r.grantee == g && &r.target == on && r.column.as_deref() == column && !r.partial)
        {
            let h = held.get_or_insert_with(Held::default);
            let leaves = p.leaves(&r.access, on);
            if r.grant_option {
                h.with_option.extend(leaves.iter().cloned());
            }
            h.leaves.extend(leaves);
            h.access.insert(r.access.clone());
        }
        held
    }
}

fn flag(row: &serde_json::Map<String, serde_json::Value>, name: &str) -> bool {
    matches!(col(row, name).as_str(), "1" | "true")
}

fn nullable(row: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    row.get(name).filter(|v| !v.is_null()).map(|_| col(row, name))
}

fn list(items: impl IntoIterator<Item = String>) -> Value {
    Value::List(items.into_iter().map(Value::Str).collect())
}

fn grantee_of(r: &Resource) -> Grantee {
    let (attr, name) = grantee(&r.attrs);
    (attr, name.to_owned())
}

fn target_of(r: &Resource) -> Result<Target, ProviderError> {
    Target::parse(str_attr(&r.attrs, "on"))
        .map_err(|e| ProviderError::new(format!("{} ({}): {e}", r.address, r.origin)))
}

fn who((attr, name): &Grantee) -> String {
    format!("{attr} {}", ident(name))
}

impl Handle {
    pub(crate) async fn read_roles(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let found = self.roles(desired.iter().map(|r| str_attr(&r.attrs, "name"))).await?;
        desired
            .iter()
            .map(|r| {
                let name = str_attr(&r.attrs, "name");
                check_manageable(r, &format!("role {}", ident(name)), found.get(name))?;
                Ok(found.contains_key(name).then(|| Live {
                    attrs: BTreeMap::from([("name".to_owned(), Value::from(name))]),
                    ..Live::default()
                }))
            })
            .collect()
    }

    async fn privileges(&self) -> Result<Privileges, ProviderError> {
        let rows = self
            .rows("SELECT privilege, level, parent_group FROM system.privileges", &[])
            .await
            .map_err(|e| self.err(&e, "reading the privilege tree"))?;
        let mut p = Privileges { children: BTreeMap::new(), level: BTreeMap::new() };
        for r in &rows {
            let name = col(r, "privilege");
            if let Some(parent) = nullable(r, "parent_group") {
                p.children.entry(parent).or_default().push(name.clone());
            }
            p.level.insert(name, col(r, "level"));
        }
        Ok(p)
    }

    /// Everything the grantees hold: two queries.
    async fn grants(&self, grantees: &BTreeSet<Grantee>) -> Result<Grants, ProviderError> {
        let names = |kind: &str| array_param(grantees.iter().filter(|g| g.0 == kind).map(|g| g.1.as_str()));
        let (users, roles) = (names("user"), names("role"));
        let params = [("users", users.as_str()), ("roles", roles.as_str())];
        let whose =
            "has({users:Array(String)}, ifNull(user_name, '')) OR has({roles:Array(String)}, ifNull(role_name, ''))";
        let of = |r: &serde_json::Map<String, serde_json::Value>| -> Grantee {
            match nullable(r, "user_name") {
                Some(u) => ("user", u),
                None => ("role", col(r, "role_name")),
            }
        };
        let rows = self
            .rows(
                &format!(
                    "SELECT user_name, role_name, access_type, database, table, column, is_partial_revoke, grant_option \
                     FROM system.grants WHERE {whose}"
                ),
                &params,
            )
            .await
            .map_err(|e| self.err(&e, "reading grants"))?;
        let rows = rows
            .iter()
            .map(|r| Row {
                grantee: of(r),
                access: col(r, "access_type"),
                target: Target { database: nullable(r, "database"), table: nullable(r, "table") },
                column: nullable(r, "column"),
                partial: flag(r, "is_partial_revoke"),
                grant_option: flag(r, "grant_option"),
            })
            .collect();
        let granted = self
            .rows(
                &format!(
                    "SELECT user_name, role_name, granted_role_name, with_admin_option FROM system.role_grants WHERE {whose}"
                ),
                &params,
            )
            .await
            .map_err(|e| self.err(&e, "reading role grants"))?;
        let mut roles: BTreeMap<Grantee, BTreeMap<String, bool>> = BTreeMap::new();
        for r in &granted {
            roles.entry(of(r)).or_default().insert(col(r, "granted_role_name"), flag(r, "with_admin_option"));
        }
        Ok(Grants { grantees: grantees.clone(), rows, roles })
    }

    /// The desired privileges of each privilege grant in the server's spelling (one query); a
    /// name the parser refuses, or that the object cannot carry, fails the plan here (naming the
    /// first resource with that list).
    async fn desired_privileges(
        &self,
        p: &Privileges,
        desired: &[&Resource],
    ) -> Result<Vec<(Target, BTreeSet<String>)>, ProviderError> {
        // Each distinct privilege list is asked about once per object level (on a stand-in
        // object of that level): the query stays small however many grants repeat a list.
        let mut asked: BTreeMap<(String, u8), usize> = BTreeMap::new();
        let mut items = Vec::new();
        let mut index = Vec::with_capacity(desired.len());
        for r in desired {
            let privileges = str_list(r.attrs.get("privileges")).join(", ");
            let on = target_of(r)?;
            let (level, stand_in) = match (&on.database, &on.table) {
                (None, _) => (0, "*.*"),
                (Some(_), None) => (1, "d.*"),
                (Some(_), Some(_)) => (2, "d.t"),
            };
            let next = items.len();
            let i = *asked.entry((privileges.clone(), level)).or_insert(next);
            if i == next {
                items.push((*r, format!("GRANT {privileges} ON {stand_in} TO g")));
            }
            index.push(i);
        }
        let answers = self.canonical(&items).await?;
        let canonical = index.into_iter().map(|i| answers[i].clone());
        desired
            .iter()
            .zip(canonical)
            .map(|(r, text)| {
                let on = target_of(r)?;
                let names = text.strip_prefix("GRANT ").and_then(|t| t.split(" ON ").next()).unwrap_or_default();
                let leaves = p.all_leaves(names.split(", "), &on);
                if leaves.is_empty() {
                    return Err(ProviderError::new(format!(
                        "{} ({}): none of these privileges can be granted on {on}",
                        r.address, r.origin
                    ))
                    .with_hint("grant global privileges on `*.*`; nothing was written"));
                }
                let whole: Vec<&str> = leaves
                    .iter()
                    .filter(|l| p.level.get(*l).map(String::as_str) != Some("COLUMN"))
                    .map(String::as_str)
                    .collect();
                if r.attrs.contains_key("columns") && !whole.is_empty() {
                    return Err(ProviderError::new(format!(
                        "{} ({}): {} cannot be granted on columns",
                        r.address,
                        r.origin,
                        whole.join(", ")
                    ))
                    .with_hint("grant them in a resource without `columns`; nothing was written"));
                }
                Ok((on, leaves))
            })
            .collect()
    }

    /// Seven queries for every grant of the plan: records (in `read`), privileges, desired
    /// statements, grantee users and roles, grants, role grants.
    pub(crate) async fn read_grants(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let p = self.privileges().await?;
        let privilege_grants: Vec<&Resource> = desired.iter().filter(|r| r.attrs.contains_key("on")).collect();
        let mut wanted = self.desired_privileges(&p, &privilege_grants).await?.into_iter();
        let grantees: BTreeSet<Grantee> = desired.iter().map(grantee_of).collect();
        let named = |kind: &'static str| grantees.iter().filter(move |g| g.0 == kind).map(|g| g.1.as_str());
        let (users, roles) = (self.users(named("user")).await?, self.roles(named("role")).await?);
        for r in desired {
            let g = grantee_of(r);
            let found = if g.0 == "user" { users.get(&g.1) } else { roles.get(&g.1) };
            refuse(r, found.and_then(|e| e.read_only_storage(&who(&g))))?;
        }
        let live = self.grants(&grantees).await?;
        Ok(desired
            .iter()
            .map(|r| {
                let g = grantee_of(r);
                let mut attrs = identity(&r.attrs);
                // Columns in the plan's order: the rows matched them, whatever the order.
                attrs.extend(r.attrs.get("columns").map(|c| ("columns".to_owned(), c.clone())));
                if let Some((on, leaves)) = r.attrs.contains_key("on").then(|| wanted.next()).flatten() {
                    let columns = columns_of(&r.attrs);
                    let (held, exact, access) = if columns.is_empty() {
                        let held = live.held(&p, &g, &on, None)?;
                        let exact = held.leaves == leaves;
                        let access = held.access.iter().cloned().collect::<Vec<_>>();
                        (held, exact, access)
                    } else {
                        // Each column on its own; what differs is shown with its column, `INSERT(a)`.
                        let per: Vec<(&String, Option<Held>)> =
                            columns.iter().map(|c| (c, live.held(&p, &g, &on, Some(c)))).collect();
                        let exact = per.iter().all(|(_, h)| h.as_ref().is_some_and(|h| h.leaves == leaves));
                        let mut all = Held::default();
                        let mut access = Vec::new();
                        for (c, h) in per.iter().filter_map(|(c, h)| Some((c, h.as_ref()?))) {
                            all.leaves.extend(h.leaves.iter().cloned());
                            all.with_option.extend(h.with_option.iter().cloned());
                            access.extend(h.access.iter().map(|a| format!("{a}({c})")));
                        }
                        if all.leaves.is_empty() {
                            return None;
                        }
                        (all, exact, access)
                    };
                    let option = r.attrs.get("grant_option") == Some(&Value::Bool(true));
                    let privileges = if exact {
                        r.attrs.get("privileges").cloned().unwrap_or(Value::List(Vec::new()))
                    } else {
                        list(access)
                    };
                    // Some privileges with the option and some without read as the opposite of the plan.
                    let live_option = if held.with_option.is_empty() {
                        false
                    } else if held.with_option == held.leaves {
                        true
                    } else {
                        !option
                    };
                    attrs.insert("privileges".into(), privileges);
                    attrs.insert("grant_option".into(), Value::Bool(live_option));
                } else {
                    let held = live.roles.get(&g)?;
                    let want: BTreeSet<&str> = str_list(r.attrs.get("roles")).into_iter().collect();
                    let admin = r.attrs.get("admin_option") == Some(&Value::Bool(true));
                    let roles = if held.keys().map(String::as_str).collect::<BTreeSet<_>>() == want {
                        r.attrs.get("roles").cloned().unwrap_or(Value::List(Vec::new()))
                    } else {
                        list(held.keys().cloned())
                    };
                    let live_admin = if held.values().all(|a| *a == admin) { admin } else { !admin };
                    attrs.insert("roles".into(), roles);
                    attrs.insert("admin_option".into(), Value::Bool(live_admin));
                }
                // The option of the other form is not the server's to have: as the plan says.
                for other in ["grant_option", "admin_option"] {
                    if let (false, Some(v)) = (attrs.contains_key(other), r.attrs.get(other)) {
                        attrs.insert(other.to_owned(), v.clone());
                    }
                }
                Some(Live { attrs, ..Live::default() })
            })
            .collect())
    }

    /// What the plan's users and roles hold beyond its grants, as orphans (three queries, none
    /// without managed grantees). Remembers the plan's grants, so that a revoke on a wider object
    /// can give back what the plan grants inside it, and what the grantees held, those of the
    /// grants that `leaving` the plan included: apply revokes from that reading (two queries for
    /// any number of revokes, not two per revoke).
    pub(crate) async fn grant_extras(
        &self,
        desired: &[Resource],
        leaving: BTreeSet<Grantee>,
    ) -> Result<Vec<Orphan>, ProviderError> {
        let grants: Vec<Resource> = desired.iter().filter(|r| r.address.kind == GRANT).cloned().collect();
        *self.planned_grants.lock().unwrap_or_else(|e| e.into_inner()) = grants.clone();
        let managed: BTreeSet<Grantee> = desired
            .iter()
            .filter_map(|r| match r.address.kind.as_str() {
                USER => Some(("user", str_attr(&r.attrs, "name").to_owned())),
                ROLE => Some(("role", str_attr(&r.attrs, "name").to_owned())),
                _ => None,
            })
            .collect();
        let read: BTreeSet<Grantee> = managed.union(&leaving).cloned().collect();
        if read.is_empty() {
            return Ok(Vec::new());
        }
        let live = Arc::new(self.grants(&read).await?);
        *self.plan_grants.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
        if managed.is_empty() {
            return Ok(Vec::new());
        }
        let planned: BTreeSet<String> = grants.iter().map(|r| ownership::key(GRANT, &identity(&r.attrs))).collect();
        let records = self.records(Some(GRANT)).await?;
        // Grants another deployment records are its business; this one's stale records are
        // reported by the ownership scan already.
        let known: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
        // Key -> (identity, address name, what is held, whether it is roles).
        type Extra = (BTreeMap<String, Value>, String, Vec<String>, bool);
        let mut beyond: BTreeMap<String, Extra> = BTreeMap::new();
        let mut note = |id: BTreeMap<String, Value>, name: String, held: Vec<String>, roles: bool| {
            let k = ownership::key(GRANT, &id);
            if !planned.contains(&k) && !known.contains(k.as_str()) {
                beyond.entry(k).or_insert_with(|| (id, name, Vec::new(), roles)).2.extend(held);
            }
        };
        // Columns the plan grants on: their rows are compared by those grants, not extras.
        let planned_columns: BTreeSet<(Grantee, Target, String)> = grants
            .iter()
            .filter_map(|r| Some((r, target_of(r).ok()?)))
            .flat_map(|(r, t)| columns_of(&r.attrs).into_iter().map(move |c| (grantee_of(r), t.clone(), c)))
            .collect();
        let planned_column = |row: &Row| {
            row.column
                .as_ref()
                .is_some_and(|c| planned_columns.contains(&(row.grantee.clone(), row.target.clone(), c.clone())))
        };
        for row in live.rows.iter().filter(|r| managed.contains(&r.grantee) && !planned_column(r)) {
            let (attr, g) = (row.grantee.0, row.grantee.1.as_str());
            let mut id = BTreeMap::from([
                (attr.to_owned(), Value::from(g)),
                ("on".to_owned(), Value::Str(row.target.to_string())),
            ]);
            let mut name = format!("{attr} {g} on {}", row.target);
            if let Some(c) = &row.column {
                id.insert("column".into(), Value::from(c.as_str()));
                name += &format!("({c})");
            }
            let mut access = row.access.clone();
            if row.partial {
                id.insert("partial_revoke".into(), Value::Bool(true));
                name = format!("{attr} {g} revoked on {}", &name[name.find(" on ").unwrap_or(0) + 4..]);
                if row.grant_option {
                    access = format!("GRANT OPTION FOR {access}");
                }
            }
            note(id, name, vec![access], false);
        }
        for (g, roles) in live.roles.iter().filter(|(g, _)| managed.contains(*g)) {
            let id = BTreeMap::from([(g.0.to_owned(), Value::from(g.1.as_str()))]);
            note(id, format!("{} {} roles", g.0, g.1), roles.keys().cloned().collect(), true);
        }
        Ok(beyond
            .into_values()
            .map(|(identity, name, held, roles)| {
                // What is held goes into the identity too: the revoke needs no second read.
                let mut identity = identity;
                identity.insert(if roles { "roles" } else { "privileges" }.into(), list(held));
                let attrs = identity.clone();
                Orphan {
                    address: Address::new(GRANT, name),
                    identity,
                    attrs,
                    provider: self.provider.clone(),
                    reason: "privileges beyond the plan".into(),
                    adopted: false,
                }
            })
            .collect())
    }

    /// `CREATE ROLE`, failing if it exists (so success proves this deployment made it).
    pub(crate) fn create_role_sql(&self, r: &Resource) -> String {
        format!("CREATE ROLE {}{}", ident(str_attr(&r.attrs, "name")), self.on_cluster())
    }

    /// Grants what the resource declares, then revokes what the plan found the grantee holding
    /// beyond it there (`change`: the values before, for an update). Working from the plan's
    /// reading keeps an apply to one read of the access tables, at plan time.
    pub(crate) async fn converge_grant(&self, r: &Resource, change: Option<&Change>) -> Result<(), ProviderError> {
        let before =
            |name: &str| change.and_then(|c| c.attrs.iter().find(|a| a.name == name)).and_then(|a| a.before.as_ref());
        let was_on = |name: &str| before(name) == Some(&Value::Bool(true));
        let g = grantee_of(r);
        let to = ident(&g.1);
        let on = self.on_cluster();
        let doing = format!("granting to {}", who(&g));
        if !r.attrs.contains_key("on") {
            let want: Vec<&str> = str_list(r.attrs.get("roles"));
            let roles = want.iter().map(|n| ident(n)).collect::<Vec<_>>().join(", ");
            let admin = r.attrs.get("admin_option") == Some(&Value::Bool(true));
            if !want.is_empty() {
                let with = if admin { " WITH ADMIN OPTION" } else { "" };
                self.execute(&format!("GRANT{on} {roles} TO {to}{with}"), &[], &doing).await?;
            }
            let held = str_list(before("roles"));
            let extra: Vec<String> = held.iter().filter(|k| !want.contains(k)).map(|k| ident(k)).collect();
            if !extra.is_empty() {
                self.execute(&format!("REVOKE{on} {} FROM {to}", extra.join(", ")), &[], &doing).await?;
            }
            if was_on("admin_option") && !admin && !want.is_empty() {
                self.execute(&format!("REVOKE{on} ADMIN OPTION FOR {roles} FROM {to}"), &[], &doing).await?;
            }
            return Ok(());
        }
        let target = target_of(r)?;
        let option = r.attrs.get("grant_option") == Some(&Value::Bool(true));
        let with = if option { " WITH GRANT OPTION" } else { "" };
        let privileges = privilege_sql(r);
        self.execute(&format!("GRANT{on} {privileges} ON {} TO {to}{with}", target.sql()), &[], &doing).await?;
        let mut revoked = false;
        if let Some(held) = before("privileges") {
            let p = self.privileges().await?;
            let (_, want) = self.desired_privileges(&p, &[r]).await?.remove(0);
            let extra: Vec<String> = if r.attrs.contains_key("columns") {
                // The plan's reading spells what a column holds beyond the plan `INSERT(a)`.
                str_list(Some(held))
                    .into_iter()
                    .filter_map(|h| h.strip_suffix(')')?.split_once('('))
                    .flat_map(|(access, c)| {
                        let extra = p.leaves(access, &target).into_iter().filter(|l| !want.contains(l));
                        extra.map(move |l| format!("{l}({})", ident(c))).collect::<Vec<_>>()
                    })
                    .collect()
            } else {
                p.all_leaves(str_list(Some(held)), &target).difference(&want).cloned().collect()
            };
            if !extra.is_empty() {
                self.execute(&format!("REVOKE{on} {} ON {} FROM {to}", extra.join(", "), target.sql()), &[], &doing)
                    .await?;
                revoked = true;
            }
        }
        if was_on("grant_option") && !option {
            let sql = format!("REVOKE{on} GRANT OPTION FOR {privileges} ON {} FROM {to}", target.sql());
            self.execute(&sql, &[], &doing).await?;
            revoked = true;
        }
        if revoked {
            self.restore_inside(&g, &target, Some(r)).await?;
        }
        Ok(())
    }

    /// Takes away a grant: the privileges on its object (or the partial revoke, lifted), or
    /// every role it holds. What is held comes with an orphan the plan found beyond it, and is
    /// read for a grant that left the plan. A grantee that is gone holds nothing: done.
    pub(crate) async fn revoke(&self, id: &BTreeMap<String, Value>) -> Result<(), ProviderError> {
        let (attr, name) = grantee(id);
        let g: Grantee = (attr, name.to_owned());
        let to = ident(name);
        let on = self.on_cluster();
        let doing = format!("revoking from {}", who(&g));
        let target = id.get("on").and_then(Value::as_str).map(Target::parse).transpose().map_err(ProviderError::new)?;
        // An orphan's one column, or a column grant's columns.
        let column = id.get("column").and_then(Value::as_str);
        let columns = columns_of(id);
        let partial = id.get("partial_revoke") == Some(&Value::Bool(true));
        let found = id.get("privileges").or_else(|| id.get("roles"));
        // (privilege or role, with the grant option, on this column)
        let held: Vec<(String, bool, Option<String>)> = match (found, &target) {
            (Some(list), _) => str_list(Some(list))
                .into_iter()
                .map(|a| match a.strip_prefix("GRANT OPTION FOR ") {
                    Some(a) => (a.to_owned(), true, column.map(str::to_owned)),
                    None => (a.to_owned(), false, column.map(str::to_owned)),
                })
                .collect(),
            (None, None) => {
                let live = self.grants_at_plan(&g).await?;
                live.roles.get(&g).map(|r| r.keys().map(|k| (k.clone(), false, None)).collect()).unwrap_or_default()
            }
            (None, Some(t)) => {
                let live = self.grants_at_plan(&g).await?;
                let on_column = |c: Option<&str>| match c {
                    Some(c) if !columns.is_empty() => columns.iter().any(|w| w == c),
                    c => c == column,
                };
                live.rows
                    .iter()
                    .filter(|r| {
                        r.grantee == g && &r.target == t && on_column(r.column.as_deref()) && r.partial == partial
                    })
                    .map(|r| (r.access.clone(), r.grant_option, r.column.clone()))
                    .collect()
            }
        };
        if held.is_empty() {
            return Ok(());
        }
        let statements: Vec<String> = match &target {
            None => {
                let roles: Vec<String> = held.iter().map(|(r, ..)| ident(r)).collect();
                vec![format!("REVOKE{on} {} FROM {to}", roles.join(", "))]
            }
            Some(t) => {
                let spelled = |a: &str, c: &Option<String>| match c {
                    Some(c) => format!("{a}({})", ident(c)),
                    None => a.to_owned(),
                };
                let object = format!("ON {}", t.sql());
                let list = |option: bool| {
                    held.iter().filter(|(_, o, _)| *o == option).map(|(a, _, c)| spelled(a, c)).collect::<Vec<_>>()
                };
                let mut out = Vec::new();
                if !partial {
                    let all: Vec<String> = held.iter().map(|(a, _, c)| spelled(a, c)).collect();
                    out.push(format!("REVOKE{on} {} {object} FROM {to}", all.join(", ")));
                }
                // A partial revoke is lifted by granting again what it withholds.
                for (option, with) in [(false, ""), (true, " WITH GRANT OPTION")] {
                    let l = list(option);
                    if partial && !l.is_empty() {
                        out.push(format!("GRANT{on} {} {object} TO {to}{with}", l.join(", ")));
                    }
                }
                out
            }
        };
        for sql in statements {
            let result = self.query(&sql, &[]).await;
            aspects_engine::fault::after_write();
            match result {
                Err(e) if matches!(e.code, code::UNKNOWN_USER | code::UNKNOWN_ROLE) => return Ok(()),
                other => other.map(drop).map_err(|e| self.err(&e, &doing))?,
            }
        }
        if let (Some(t), false) = (&target, partial) {
            self.restore_inside(&g, t, None).await?;
        }
        Ok(())
    }

    /// What `g` held when the plan read it, or now if the plan did not read its grants.
    async fn grants_at_plan(&self, g: &Grantee) -> Result<Arc<Grants>, ProviderError> {
        let read = self.plan_grants.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match read {
            Some(live) if live.grantees.contains(g) => Ok(live),
            _ => Ok(Arc::new(self.grants(&BTreeSet::from([g.clone()])).await?)),
        }
    }

    /// A REVOKE on an object also takes the privileges away inside it: grants the plan makes to
    /// the same grantee on objects within (other than `except`) again.
    async fn restore_inside(
        &self,
        g: &Grantee,
        wider: &Target,
        except: Option<&Resource>,
    ) -> Result<(), ProviderError> {
        let planned = self.planned_grants.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for r in planned.iter().filter(|r| r.attrs.contains_key("on") && grantee_of(r) == *g) {
            let inside = Target::parse(str_attr(&r.attrs, "on")).is_ok_and(|t| wider.covers(&t));
            if inside && except.is_none_or(|e| e.address != r.address) {
                let option =
                    if r.attrs.get("grant_option") == Some(&Value::Bool(true)) { " WITH GRANT OPTION" } else { "" };
                let sql = format!(
                    "GRANT{} {} ON {} TO {}{option}",
                    self.on_cluster(),
                    privilege_sql(r),
                    target_of(r)?.sql(),
                    ident(&g.1)
                );
                self.execute(&sql, &[], &format!("granting to {} again", who(g))).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(attr: &str, v: impl Into<Value>) -> Result<(), String> {
        schema::schema().check_attr(GRANT, attr, &v.into())
    }

    #[test]
    fn targets_parse_and_print() {
        let t = |s: &str| Target::parse(s).map(|t| (t.to_string(), t.sql()));
        assert_eq!(t("*.*").unwrap(), ("*.*".into(), "*.*".into()));
        assert_eq!(t("xapi.*").unwrap(), ("xapi.*".into(), "`xapi`.*".into()));
        assert_eq!(t("system.query_log").unwrap(), ("system.query_log".into(), "`system`.`query_log`".into()));
        assert!(t("`a.b`.`t``x`").is_err());
        assert_eq!(t("`a.b`.t-1").unwrap(), ("`a.b`.`t-1`".into(), "`a.b`.`t-1`".into()));
        // Names always reach SQL quoted: a quote or semicolon in one is only a strange name.
        assert_eq!(t("a.b'; DROP").unwrap().1, "`a`.`b'; DROP`");
        for bad in ["xapi", "a.b.c", "*.t", "a.", "`a.b", "a\0.b"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        let (all, db, t1) =
            (Target::parse("*.*").unwrap(), Target::parse("a.*").unwrap(), Target::parse("a.t").unwrap());
        assert!(all.covers(&db) && db.covers(&t1) && !t1.covers(&db) && !db.covers(&Target::parse("b.t").unwrap()));
    }

    #[test]
    fn privileges_and_forms_are_checked_before_any_read() {
        let privs = |v: &[&str]| Value::List(v.iter().map(|s| Value::from(*s)).collect());
        assert_eq!(check("privileges", privs(&["SELECT", "ALTER UPDATE", "dictGet"])), Ok(()));
        for bad in ["SELECT ON *.* TO evil", "SELECT(a)", "SELECT; DROP", "", "ALL  x", "INSERT WITH"] {
            assert!(check("privileges", privs(&[bad])).is_err(), "{bad:?}");
        }
        assert!(check("privileges", privs(&[])).unwrap_err().contains("empty"));
        let attrs = |pairs: &[(&str, Value)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let ok = attrs(&[("user", "u".into()), ("on", "a.*".into()), ("privileges", privs(&["SELECT"]))]);
        assert_eq!(check_grant(&ok), Ok(()));
        let roles = attrs(&[("role", "r".into()), ("roles", privs(&["a"]))]);
        assert_eq!(check_grant(&roles), Ok(()));
        let both = attrs(&[("user", "u".into()), ("role", "r".into()), ("roles", privs(&["a"]))]);
        assert_eq!(check_grant(&both).unwrap_err().attr, Some("role"));
        let mixed = attrs(&[("user", "u".into()), ("on", "a.*".into()), ("roles", privs(&["a"]))]);
        assert_eq!(check_grant(&mixed).unwrap_err().attr, Some("roles"));
        assert_eq!(identity(&ok).get("on"), Some(&Value::from("a.*")));
        assert_eq!(identity(&roles).len(), 1);
        // Columns: of one table only, named like any object, quoted in the statement, and part
        // of the identity in one order.
        let columns = |on: &str, cols: &[&str]| {
            attrs(&[
                ("user", "u".into()),
                ("on", on.into()),
                ("privileges", privs(&["SELECT"])),
                ("columns", privs(cols)),
            ])
        };
        assert_eq!(check_grant(&columns("a.t", &["b", "a"])), Ok(()));
        assert_eq!(check_grant(&columns("a.*", &["b"])).unwrap_err().attr, Some("columns"));
        assert!(check("columns", privs(&[])).unwrap_err().contains("empty"));
        assert!(check("columns", privs(&["a\u{0}b"])).is_err());
        let r = Resource {
            address: Address::new(GRANT, "g"),
            attrs: columns("a.t", &["b", "a", "we`ird"]),
            ..Resource::default()
        };
        assert_eq!(privilege_sql(&r), "SELECT(`a`, `b`, `we\\`ird`)");
        assert_eq!(identity(&r.attrs), identity(&columns("a.t", &["we`ird", "a", "b", "a"])));
    }

    #[test]
    fn leaves_follow_the_tree_and_the_level() {
        let p = Privileges {
            children: BTreeMap::from([
                ("ALTER".into(), vec!["ALTER TABLE".into(), "ALTER USER".into()]),
                ("ALTER TABLE".into(), vec!["ALTER UPDATE".into()]),
            ]),
            level: [("ALTER UPDATE", "COLUMN"), ("ALTER USER", "GLOBAL"), ("SELECT", "COLUMN")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
        };
        let db = Target::parse("d.*").unwrap();
        assert_eq!(p.leaves("ALTER", &db), BTreeSet::from(["ALTER UPDATE".to_owned()]));
        assert_eq!(p.leaves("ALTER", &Target::parse("*.*").unwrap()).len(), 2);
        assert_eq!(p.all_leaves(["ALTER TABLE", "SELECT"], &db).len(), 2);
    }
}

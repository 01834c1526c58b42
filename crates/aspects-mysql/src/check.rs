//! Plan-time checks: what this server would refuse in a normalised desired resource, judged with
//! what it told us at connect time. Load-time checks (no server) live in `schema`.

use aspects_core::{KindSchema, Resource, Value};
use aspects_engine::provider::Invalid;

use crate::connect::Handle;
use crate::password;
use crate::privileges::{ALL, GRANT_OPTION};
use crate::schema::{DATABASE, GRANT, USER, str_attr, str_list};
use crate::sql::{self, Level, On};

/// Up to three known names close to `name`, as a hint.
fn close<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Option<String> {
    let mut near: Vec<&str> =
        known.filter(|k| strsim::jaro_winkler(k, name) > 0.9).map(String::as_str).take(3).collect();
    near.sort_unstable();
    (!near.is_empty()).then(|| format!("did you mean {}?", near.join(" or ")))
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Global => "globally (`*.*`)",
        Level::Database => "on a database (`db.*`)",
        Level::Table => "on a table (`db.table`)",
    }
}

impl Handle {
    pub(crate) fn check(&self, kind: &KindSchema, r: &Resource) -> Vec<Invalid> {
        let a = &r.attrs;
        let mut out = Vec::new();
        match kind.kind {
            DATABASE => {
                let charset = str_attr(a, "charset");
                let collation = a.get("collation").and_then(Value::as_str);
                if !self.charsets.contains_key(charset) {
                    let mut e =
                        Invalid::new("charset", format!("{charset:?} is not a character set this server knows"));
                    e.hint = close(charset, self.charsets.keys())
                        .or_else(|| Some("`SHOW CHARACTER SET` lists them; utf8mb4 suits most uses".into()));
                    out.push(e);
                } else if let Some(collation) = collation {
                    let of_charset = || {
                        let default = &self.charsets[charset];
                        format!("use a collation of {charset} (its default is {default}), or the charset it belongs to")
                    };
                    match self.collations.get(collation) {
                        None => {
                            let known = self.collations.iter().filter(|(_, cs)| *cs == charset).map(|(c, _)| c);
                            let hint = close(collation, known).unwrap_or_else(of_charset);
                            out.push(
                                Invalid::new(
                                    "collation",
                                    format!("{collation:?} is not a collation this server knows"),
                                )
                                .with_hint(hint),
                            );
                        }
                        Some(belongs) if belongs != charset => out.push(
                            Invalid::new(
                                "collation",
                                format!("collation {collation} belongs to character set {belongs}, not {charset}"),
                            )
                            .with_hint(of_charset()),
                        ),
                        Some(_) => {}
                    }
                }
            }
            USER | GRANT => {
                let (user, host) = (str_attr(a, "user"), str_attr(a, "host"));
                if (user, host) == (self.current.0.as_str(), self.current.1.as_str()) {
                    out.push(
                        Invalid::new(
                            "user",
                            format!(
                                "{} is the account this provider connects as; managing it could revoke the \
                                 provider's own privileges",
                                sql::account(user, host)
                            ),
                        )
                        .with_hint("remove this resource, or connect as another admin account in [providers.mysql]"),
                    );
                }
                let plugin = str_attr(a, "plugin");
                if kind.kind == USER && !self.auth_plugins.contains(plugin) {
                    let hint = match (plugin, self.flavour.mariadb) {
                        (password::ED25519, true) => "load it first: INSTALL SONAME 'auth_ed25519'",
                        (password::ED25519, false) => "ed25519 is MariaDB's; on MySQL use caching_sha2_password",
                        (password::NATIVE, false) => {
                            "MySQL 8.4 loads mysql_native_password only with --mysql-native-password=ON; \
                             use caching_sha2_password (the default there)"
                        }
                        (_, false) => "use caching_sha2_password, MySQL 8's default",
                        _ => "use a plugin this server has: mysql_native_password, or ed25519 on MariaDB",
                    };
                    out.push(
                        Invalid::new("plugin", format!("this server has no active {plugin} plugin")).with_hint(hint),
                    );
                }
                if kind.kind == GRANT
                    && let Ok(on) = On::parse(str_attr(a, "on"))
                {
                    out.extend(self.check_levels(&on, str_list(a.get("privileges"))));
                    out.extend(self.check_meta(&on));
                }
            }
            _ => {}
        }
        out
    }

    /// A grant on the meta database would let its grantee forge ownership records. Database and
    /// table parts are matched by MySQL's wildcard rules (ignoring case, to err towards refusing);
    /// `*.*` is not refused: a global grant reaches everything anyway, and says so.
    fn check_meta(&self, on: &On) -> Option<Invalid> {
        let (On::Database(db) | On::Table(db, _)) = on else { return None };
        sql::pattern_matches(db, &self.db.meta).then(|| {
            Invalid::new(
                "on",
                format!(
                    "on = \"{on}\" reaches the meta database `{}`, where ownership records live: its grantee could \
                     forge them",
                    self.db.meta
                ),
            )
            .with_hint(
                "grant on the application's own databases (`_` and `%` in `on` are wildcards; `database = \"NAME\"` names exactly one), \
                 or keep the records elsewhere with `meta_database` in [providers.mysql]",
            )
        })
    }

    /// Every privilege must exist at the level `on` names (FILE is global only).
    fn check_levels<'a>(&self, on: &On, privileges: impl IntoIterator<Item = &'a str>) -> Vec<Invalid> {
        let level = on.level();
        let allowed = self.levels.get(level);
        privileges
            .into_iter()
            .filter(|p| *p != ALL && *p != GRANT_OPTION && !allowed.contains(*p))
            .map(|p| {
                let at: Vec<&str> = [Level::Global, Level::Database, Level::Table]
                    .into_iter()
                    .filter(|l| self.levels.get(*l).contains(p))
                    .map(level_name)
                    .collect();
                if at.is_empty() {
                    Invalid::new("privileges", format!("{p} is not a privilege this server knows")).with_hint(
                        "`SHOW PRIVILEGES` lists what this server grants; dynamic privileges are MySQL 8 only",
                    )
                } else {
                    Invalid::new(
                        "privileges",
                        format!("{p} cannot be granted {} as `on = \"{on}\"` asks", level_name(level)),
                    )
                    .with_hint(format!("{p} can be granted {}: use another mysql_grant for it", at.join(" or ")))
                }
            })
            .collect()
    }
}

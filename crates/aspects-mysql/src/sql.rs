//! Account quoting and the grant target syntax, on top of the shared quoting of [`aspects_sql::quote`]
//! (every name that reaches SQL text goes through one of these functions).

use std::fmt;

pub use aspects_sql::quote::{ident, literal};

/// `'user'@'host'` as an account name in a statement.
pub fn account(user: &str, host: &str) -> String {
    format!("{}@{}", literal(user), literal(host))
}

/// How `information_schema.*_PRIVILEGES.GRANTEE` spells an account: quotes around each part and
/// nothing inside escaped (a user `o'k` is `'o'k'@'%'`). The schema rejects `'@'` inside names,
/// which is what would make this ambiguous.
pub fn grantee(user: &str, host: &str) -> String {
    format!("'{user}'@'{host}'")
}

/// What a grant applies to: the `on` attribute of `mysql_grant`. The database part of `db.*`
/// is MySQL's own pattern, exactly as `GRANT ... ON db.*` takes it (`_` and `%` match any
/// character, `\_` a literal underscore), so `on` and what the server stores map one to one:
/// a grant someone made on another pattern is another object, never merged into ours.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum On {
    Global,
    Database(String),
    Table(String, String),
}

/// The privilege level of an [`On`], which decides what `ALL` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Global,
    Database,
    Table,
}

pub const ON_FORMS: &str = "write `*.*` (every database), `db.*` (one database) or `db.table` (one table); \
     quote a name that contains dots, spaces or backticks in backticks, doubling a backtick inside: \"`my.db`.*\"";

impl On {
    /// Parses `*.*`, `db.*` or `db.table`, each name bare or in backticks.
    pub fn parse(s: &str) -> Result<On, String> {
        let (db, rest) = part(s).map_err(|e| format!("cannot read `on = {s:?}`: {e}; {ON_FORMS}"))?;
        let rest = rest
            .strip_prefix('.')
            .ok_or_else(|| format!("`on = {s:?}` has no `.` between database and table; {ON_FORMS}"))?;
        let (table, tail) = part(rest).map_err(|e| format!("cannot read `on = {s:?}`: {e}; {ON_FORMS}"))?;
        if !tail.is_empty() {
            return Err(format!("`on = {s:?}` has extra text {tail:?} after the table; {ON_FORMS}"));
        }
        match (db, table) {
            (None, None) => Ok(On::Global),
            (Some(db), None) => Ok(On::Database(db)),
            (Some(db), Some(table)) => Ok(On::Table(db, table)),
            (None, Some(_)) => {
                Err(format!("`on = {s:?}` names a table in every database, which MySQL cannot grant; {ON_FORMS}"))
            }
        }
    }

    pub fn level(&self) -> Level {
        match self {
            On::Global => Level::Global,
            On::Database(_) => Level::Database,
            On::Table(..) => Level::Table,
        }
    }

    /// The target as it goes into GRANT/REVOKE text.
    pub fn sql(&self) -> String {
        match self {
            On::Global => "*.*".into(),
            On::Database(db) => format!("{}.*", ident(db)),
            On::Table(db, t) => format!("{}.{}", ident(db), ident(t)),
        }
    }
}

/// The canonical spelling: names bare when they are plain words, otherwise in backticks. Desired
/// and live `on` both take this form, so they compare as strings.
impl fmt::Display for On {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn name(n: &str) -> String {
            if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                n.to_owned()
            } else {
                ident(n)
            }
        }
        match self {
            On::Global => f.write_str("*.*"),
            On::Database(db) => write!(f, "{}.*", name(db)),
            On::Table(db, t) => write!(f, "{}.{}", name(db), name(t)),
        }
    }
}

/// Whether a database pattern of a grant (`_` one character, `%` any run, `\` escaping the next
/// character) matches `name`, ignoring case: used to refuse what reaches the meta database, so
/// it errs towards matching. (No crate handles the escapes; this is MySQL's LIKE, iteratively.)
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    let (mut i, mut j) = (0, 0);
    // Where the last `%` was, and how much of the name it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some('%') => {
                star = Some((i + 1, j));
                i += 1;
                continue;
            }
            Some('_') => {
                i += 1;
                j += 1;
                continue;
            }
            Some('\\') if p.get(i + 1) == Some(&n[j]) => {
                i += 2;
                j += 1;
                continue;
            }
            Some(c) if *c != '\\' && *c == n[j] => {
                i += 1;
                j += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((si, sj)) => {
                star = Some((si, sj + 1));
                i = si;
                j = sj + 1;
            }
            None => return false,
        }
    }
    p[i..].iter().all(|c| *c == '%')
}

/// One name of an `on` target: `*` (None), a backtick-quoted name or a bare one. Returns the
/// unconsumed rest.
fn part(s: &str) -> Result<(Option<String>, &str), String> {
    if let Some(rest) = s.strip_prefix('*') {
        return Ok((None, rest));
    }
    if let Some(body) = s.strip_prefix('`') {
        let mut name = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '`' {
                name.push(c);
                continue;
            }
            if body[i + 1..].starts_with('`') {
                name.push('`');
                chars.next();
                continue;
            }
            if name.is_empty() {
                return Err("a quoted name is empty".into());
            }
            return Ok((Some(name), &body[i + 1..]));
        }
        return Err("a backtick is not closed".into());
    }
    let end = s.find(['.', '`', '*']).unwrap_or(s.len());
    let name = &s[..end];
    if name.is_empty() {
        return Err("a name is missing".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{name:?} contains spaces or control characters and is not in backticks"));
    }
    Ok((Some(name.to_owned()), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_quote_each_part() {
        assert_eq!(account("o'k", "%"), r"'o''k'@'%'");
    }

    #[test]
    fn grantee_is_unescaped() {
        assert_eq!(grantee("a'b`c", "h%"), "'a'b`c'@'h%'");
    }

    #[test]
    fn on_parses_the_three_forms() {
        assert_eq!(On::parse("*.*"), Ok(On::Global));
        assert_eq!(On::parse("db.*"), Ok(On::Database("db".into())));
        assert_eq!(On::parse("db.t"), Ok(On::Table("db".into(), "t".into())));
        assert_eq!(On::parse("`my.db`.*"), Ok(On::Database("my.db".into())));
        assert_eq!(On::parse("`a``b`.`c d`"), Ok(On::Table("a`b".into(), "c d".into())));
        for bad in ["", "*", "db", "*.t", "db.*.x", "`db.*", "``.*", "my db.*", "db.", ".t"] {
            let err = On::parse(bad).unwrap_err();
            assert!(err.contains("`db.*`"), "{bad}: {err}");
        }
    }

    #[test]
    fn on_canonical_form_quotes_only_when_needed() {
        assert_eq!(On::parse("`db`.*").unwrap().to_string(), "db.*");
        assert_eq!(On::parse("`my.db`.`t`").unwrap().to_string(), "`my.db`.t");
        assert_eq!(On::parse("`a``b`.*").unwrap().to_string(), "`a``b`.*");
        let on = On::parse("`my.db`.`t`").unwrap();
        assert_eq!(On::parse(&on.to_string()), Ok(on));
    }

    #[test]
    fn patterns_match_like_mysql_grants_do() {
        for (pattern, name) in [
            ("aspects_meta", "aspects_meta"),
            ("aspects\\_meta", "aspects_meta"),
            ("aspects%", "aspects_meta"),
            ("%", "aspects_meta"),
            ("a%s_m%a", "aspects_meta"),
            ("ASPECTS_META", "aspects_meta"),
            ("aspects_meta%", "aspects_meta"),
        ] {
            assert!(pattern_matches(pattern, name), "{pattern} should match {name}");
        }
        for (pattern, name) in [
            ("aspects\\_meta", "aspectsXmeta"),
            ("aspects_meta_", "aspects_meta"),
            ("aspects", "aspects_meta"),
            ("%x", "aspects_meta"),
            ("", "aspects_meta"),
        ] {
            assert!(!pattern_matches(pattern, name), "{pattern} should not match {name}");
        }
    }

    #[test]
    fn on_sql_keeps_the_database_pattern_verbatim() {
        assert_eq!(On::Database("my_db".into()).sql(), "`my_db`.*");
        assert_eq!(On::Database(r"my\_db".into()).sql(), r"`my\_db`.*");
        assert_eq!(On::Table("my_db".into(), "t_1".into()).sql(), "`my_db`.`t_1`");
        assert_eq!(On::Global.sql(), "*.*");
    }
}

//! Quoting. Names are never bound as parameters in DDL (MySQL does not allow it), so every name
//! that reaches SQL text goes through one of these functions. Their escaping assumes the
//! session's `sql_mode` (see [`SESSION_SQL_MODE`]), which every [`crate::Sql`] connection sets:
//! backslash escapes on, `ANSI_QUOTES` off.

/// The session mode every connection sets, so that literal escaping below is well defined
/// (no `NO_BACKSLASH_ESCAPES`) and, on MariaDB, a GRANT never silently creates a passwordless
/// user (`NO_AUTO_CREATE_USER`; MySQL 8 removed that mode and never auto-creates).
pub const SESSION_SQL_MODE: &str = "SET SESSION sql_mode = IF(VERSION() LIKE '%MariaDB%', \
     'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_CREATE_USER', \
     'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION')";

/// An identifier in backticks; a backtick inside is doubled. Backslashes are literal there.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal: `'` doubled, `\` escaped, and the bytes the client library escapes
/// (NUL, newline, carriage return, Ctrl-Z) written as escapes so the text stays one line.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_double_backticks() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(ident(r"a\b'c"), r"`a\b'c`");
    }

    #[test]
    fn literals_double_quotes_and_escape_backslashes() {
        assert_eq!(literal(r"it's a \ test"), r"'it''s a \\ test'");
        assert_eq!(literal("a\0b\nc\r\x1a"), r"'a\0b\nc\r\Z'");
    }
}

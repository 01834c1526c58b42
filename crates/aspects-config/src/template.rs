//! `${...}` references inside strings. `$${` writes a literal `${`.

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Lit(String),
    /// A reference: its dotted path, and the byte offset and length of `${...}` in the string.
    Ref {
        path: Vec<String>,
        offset: usize,
        len: usize,
    },
}

/// Splits a string into literal text and references. The error is (byte offset, message).
pub fn parse(s: &str) -> Result<Vec<Part>, (usize, String)> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    let mut pos = 0;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            lit.push_str("${");
            rest = tail;
            pos += i + 3;
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err((pos + i, "unterminated reference: `${` without a closing `}`".into()));
            };
            let inner = body[..end].trim();
            let path: Vec<String> = inner.split('.').map(str::to_owned).collect();
            let valid = |seg: &String| {
                !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            };
            if !path.iter().all(valid) {
                return Err((pos + i, format!("`${{{inner}}}` is not a reference")));
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Ref { path, offset: pos + i, len: end + 3 });
            rest = &body[end + 1..];
            pos += i + 2 + end + 1;
        } else {
            lit.push('$');
            rest = &after[1..];
            pos += i + 1;
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str, offset: usize, len: usize) -> Part {
        Part::Ref { path: path.split('.').map(str::to_owned).collect(), offset, len }
    }

    #[test]
    fn literals_references_and_escapes() {
        assert_eq!(parse("plain").unwrap(), vec![Part::Lit("plain".into())]);
        assert_eq!(parse("${vars.a}").unwrap(), vec![r("vars.a", 0, 9)]);
        assert_eq!(
            parse("x${ secrets.b }y$5$${z}").unwrap(),
            vec![Part::Lit("x".into()), r("secrets.b", 1, 14), Part::Lit("y$5${z}".into())]
        );
        assert_eq!(parse("${a.b}${c.d}").unwrap(), vec![r("a.b", 0, 6), r("c.d", 6, 6)]);
    }

    #[test]
    fn malformed_references() {
        assert_eq!(parse("ab${vars.x").unwrap_err().0, 2);
        assert!(parse("${vars x}").unwrap_err().1.contains("not a reference"));
        assert!(parse("${}").is_err());
    }
}

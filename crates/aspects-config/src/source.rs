//! Source files and diagnostics: every error names `file:line:col`, shows the line, and says
//! what to do.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// A byte span in one of the loaded files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: usize,
    pub span: Range<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    pub files: Vec<SourceFile>,
}

impl SourceMap {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, loc: &Location) -> (usize, usize) {
        let text = &self.files[loc.file].text;
        let offset = loc.span.start.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, text[line_start..offset].chars().count() + 1)
    }

    /// `path:line:col`
    pub fn describe(&self, loc: &Location) -> String {
        let (line, col) = self.line_col(loc);
        format!("{}:{line}:{col}", self.files[loc.file].path.display())
    }
}

/// Errors stop the run; warnings are printed and the run goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub location: Option<Location>,
    pub hint: Option<String>,
    /// The source line holds something secret: point at it, never print it.
    pub hide_source: bool,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, location: Option<Location>) -> Self {
        Self { severity: Severity::Error, message: message.into(), location, hint: None, hide_source: false }
    }

    pub fn warning(message: impl Into<String>, location: Option<Location>) -> Self {
        Self { severity: Severity::Warning, ..Self::new(message, location) }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// All the problems found in one load, rendered against their sources.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
    pub sources: SourceMap,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Report { diagnostics: &self.diagnostics, sources: &self.sources }.fmt(f)
    }
}

/// Diagnostics rendered against their sources, each with its severity.
pub struct Report<'a> {
    pub diagnostics: &'a [Diagnostic],
    pub sources: &'a SourceMap,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{}: {}", d.severity, d.message)?;
            if let Some(loc) = &d.location {
                let (line, col) = self.sources.line_col(loc);
                let file = &self.sources.files[loc.file];
                let gutter = line.to_string().len();
                writeln!(f, "{:gutter$}--> {}:{line}:{col}", "", file.path.display())?;
                if let Some(src) = file.text.lines().nth(line - 1) {
                    let width = file.text[loc.span.clone()].lines().next().map_or(1, |l| l.chars().count().max(1));
                    let width = width.min(src.chars().count().saturating_sub(col - 1).max(1));
                    writeln!(f, "{:gutter$} |", "")?;
                    if d.hide_source {
                        writeln!(f, "{line} | (line not shown: it holds a secret)")?;
                    } else if has_url_password(src) {
                        writeln!(f, "{line} | (line not shown: it holds a password in a URL)")?;
                    } else {
                        writeln!(f, "{line} | {src}")?;
                        writeln!(f, "{:gutter$} | {:>pad$}{}", "", "", "^".repeat(width), pad = col - 1)?;
                    }
                }
            }
            if let Some(h) = &d.hint {
                let gutter = d.location.as_ref().map_or(1, |l| self.sources.line_col(l).0.to_string().len());
                writeln!(f, "{:gutter$} = hint: {h}", "")?;
            }
        }
        let errors = self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let warnings = self.diagnostics.len() - errors;
        match (errors, warnings) {
            (0, 0..=1) | (1, 0) => Ok(()),
            (0, w) => writeln!(f, "\n{w} warnings"),
            (e, 0) => writeln!(f, "\n{e} errors"),
            (e, w) => writeln!(f, "\n{e} error{}, {w} warning{}", plural(e), plural(w)),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `scheme://user:password@host`: such a line is never echoed, even in an error about it.
fn has_url_password(line: &str) -> bool {
    line.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', '"', '\'', ' ']).next().unwrap_or_default();
        authority.split_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

/// "did you mean `x`?" when one candidate is close enough.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_detected() {
        assert!(has_url_password(r#"url = "mysql://root:pw@127.0.0.1:3306""#));
        assert!(!has_url_password(r#"url = "mysql://root@127.0.0.1:3306""#));
        assert!(!has_url_password(r#"url = "http://host:8123/x@y""#));
    }
}

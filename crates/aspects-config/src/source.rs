//! Source files and diagnostics: every error names `file:line:col`, shows the line with a caret
//! under the problem, and says what to do. Rendering is codespan-reporting's; this module decides
//! which line may be shown (never one that holds a secret) and where the caret goes.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use aspects_core::Redactor;
use codespan_reporting::diagnostic::{Diagnostic as Rendered, Label, Severity as RenderedSeverity};
use codespan_reporting::files::{Error as FilesError, Files, Location as FileLocation};
use codespan_reporting::term::{self, Chars, Config};

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

/// The loaded files, each with an index of where its lines start, built once: a location is a
/// binary search, not a scan from the top of the file (a plan of 9,000 resources asks 9,000 times).
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    pub files: Vec<SourceFile>,
    line_starts: Vec<Vec<usize>>,
    /// Each file's path as printed (formatted once: every resource and attribute names its origin).
    names: Vec<String>,
}

impl SourceMap {
    pub fn new(files: Vec<SourceFile>) -> Self {
        let line_starts = files.iter().map(|f| codespan_reporting::files::line_starts(&f.text).collect()).collect();
        let names = files.iter().map(|f| f.path.display().to_string()).collect();
        Self { files, line_starts, names }
    }

    /// 0-based line index and the byte range of that line (without its line break).
    fn line_of(&self, file: usize, offset: usize) -> (usize, Range<usize>) {
        let text = &self.files[file].text;
        let starts = &self.line_starts[file];
        let index = starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let start = starts[index];
        let end = starts.get(index + 1).map_or(text.len(), |&next| next);
        let line = &text[start..end];
        let trimmed = line.strip_suffix('\n').map_or(line, |l| l.strip_suffix('\r').unwrap_or(l));
        (index, start..start + trimmed.len())
    }

    /// A byte offset clamped into the file and moved back onto a character boundary.
    fn clamp(&self, file: usize, offset: usize) -> usize {
        let text = &self.files[file].text;
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// 1-based line and column (in characters) of a location's start.
    pub fn line_col(&self, loc: &Location) -> (usize, usize) {
        let offset = self.clamp(loc.file, loc.span.start);
        let (index, line) = self.line_of(loc.file, offset);
        let col = self.files[loc.file].text[line.start..offset.max(line.start)].chars().count();
        (index + 1, col + 1)
    }

    /// `path:line:col`
    pub fn describe(&self, loc: &Location) -> String {
        let (line, col) = self.line_col(loc);
        format!("{}:{line}:{col}", self.names[loc.file])
    }

    /// One diagnostic as the user sees it: `error:` (or `warning:`), `--> file:line:col`, the
    /// source line with a caret under the span, `= hint:`. A line that may hold a secret is
    /// pointed at but not shown, and the message and hint are scrubbed of every known secret.
    pub fn render(&self, d: &Diagnostic, redactor: &Redactor) -> String {
        let severity = match d.severity {
            Severity::Error => RenderedSeverity::Error,
            Severity::Warning => RenderedSeverity::Warning,
        };
        let mut report = Rendered::new(severity).with_message(redactor.scrub(&d.message));
        if let Some(h) = &d.hint {
            report = report.with_note(format!("hint: {}", redactor.scrub(h)));
        }
        let snippet = d.location.as_ref().map(|loc| self.snippet(loc, d.hide_source, redactor));
        if let Some(s) = &snippet {
            let label = Label::primary((), s.caret.clone());
            report = report.with_label(match s.hidden {
                Some(why) => label.with_message(format!("line not shown: {why}")),
                None => label,
            });
        }
        let config = Config { chars: Chars::ascii(), ..Config::default() };
        let files = snippet.unwrap_or_default();
        // Only fails when a label points outside the one line the snippet holds, which
        // `snippet` rules out; the message alone is still worth printing then.
        term::emit_into_string(&config, &files, &report).unwrap_or_else(|_| format!("error: {}\n", d.message))
    }

    fn snippet(&self, loc: &Location, hide: bool, redactor: &Redactor) -> Snippet<'_> {
        let file = &self.files[loc.file];
        let start = self.clamp(loc.file, loc.span.start);
        let (index, line) = self.line_of(loc.file, start);
        let (line_number, column) = self.line_col(loc);
        let text = &file.text[line.clone()];
        let hidden = if hide || redactor.holds_secret(text) {
            Some("it holds a secret")
        } else if has_url_password(text) {
            Some("it holds a password in a URL")
        } else if may_hold_secret(text, self.in_secrets_table(loc.file, index)) {
            Some("it may hold a secret")
        } else {
            None
        };
        // The caret stays on the first line of the span, as the line is all that is shown (a
        // span starting on a line break marks the end of the line).
        let from = start.clamp(line.start, line.end);
        let to = self.clamp(loc.file, loc.span.end.clamp(from, line.end));
        let (from, to) = (from - line.start, to.max(from) - line.start);
        Snippet {
            name: self.names[loc.file].clone(),
            line_number,
            column,
            text: if hidden.is_some() { "" } else { text },
            caret: if hidden.is_some() { 0..0 } else { from..to },
            hidden,
        }
    }

    /// Whether a line sits under a `[secrets]` (or `[secrets.x]`) header: found by looking back
    /// to the nearest header, as a syntax error comes before any table is known.
    fn in_secrets_table(&self, file: usize, line_index: usize) -> bool {
        let text = &self.files[file].text;
        let starts = &self.line_starts[file];
        (0..=line_index)
            .rev()
            .map(|i| text[starts[i]..starts.get(i + 1).map_or(text.len(), |&e| e)].trim_start())
            .find(|l| l.starts_with('['))
            .is_some_and(|header| {
                let name = header.trim_start_matches('[').split([']', '.']).next().unwrap_or_default();
                name.trim().trim_matches(['"', '\'']) == "secrets"
            })
    }
}

/// The one line a diagnostic shows, as codespan-reporting's file database: line and column
/// come from the real file, the text may be withheld.
#[derive(Default)]
struct Snippet<'a> {
    name: String,
    line_number: usize,
    column: usize,
    text: &'a str,
    caret: Range<usize>,
    hidden: Option<&'static str>,
}

impl<'a> Files<'a> for Snippet<'a> {
    type FileId = ();
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, (): ()) -> Result<&'a str, FilesError> {
        Ok(&self.name)
    }

    fn source(&'a self, (): ()) -> Result<&'a str, FilesError> {
        Ok(self.text)
    }

    fn line_index(&'a self, (): (), _byte: usize) -> Result<usize, FilesError> {
        Ok(0)
    }

    fn line_number(&'a self, (): (), line_index: usize) -> Result<usize, FilesError> {
        Ok(self.line_number + line_index)
    }

    fn location(&'a self, (): (), _byte: usize) -> Result<FileLocation, FilesError> {
        Ok(FileLocation { line_number: self.line_number, column_number: self.column })
    }

    fn line_range(&'a self, (): (), line_index: usize) -> Result<Range<usize>, FilesError> {
        match line_index {
            0 => Ok(0..self.text.len()),
            given => Err(FilesError::LineTooLarge { given, max: 0 }),
        }
    }
}

/// Errors stop the run; warnings are printed and the run goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub location: Option<Location>,
    pub hint: Option<String>,
    /// The source line holds something secret: point at it, never print it.
    pub hide_source: bool,
    /// Warnings of one check share a group (what they are about, e.g. "`on`"): past the first
    /// few, the rest of a group are counted rather than shown, unless every one is asked for.
    pub group: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, location: Option<Location>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            location,
            hint: None,
            hide_source: false,
            group: None,
        }
    }

    pub fn warning(message: impl Into<String>, location: Option<Location>) -> Self {
        Self { severity: Severity::Warning, ..Self::new(message, location) }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Point at the line without showing it.
    pub fn hide_source(mut self) -> Self {
        self.hide_source = true;
        self
    }
}

/// All the problems found in one load, rendered against their sources with every secret value
/// known at that point (the secrets file's, and those read from their sources) masked.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
    pub sources: SourceMap,
    pub redactor: Redactor,
}

impl LoadError {
    pub fn new(diagnostics: Vec<Diagnostic>, sources: SourceMap) -> Self {
        Self { diagnostics, sources, redactor: Redactor::default() }
    }

    /// The diagnostics rendered; `all` shows every warning of a long group (`Display` does not).
    pub fn report(&self, all: bool) -> Report<'_> {
        Report { diagnostics: &self.diagnostics, sources: &self.sources, redactor: &self.redactor, all }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.report(false).fmt(f)
    }
}

/// How many diagnostics of one group are shown before the rest are only counted.
pub const SHOWN_PER_GROUP: usize = 5;

/// Diagnostics rendered against their sources, each with its severity, secrets masked.
pub struct Report<'a> {
    pub diagnostics: &'a [Diagnostic],
    pub sources: &'a SourceMap,
    pub redactor: &'a Redactor,
    /// Every diagnostic; otherwise a group shows its first [`SHOWN_PER_GROUP`] and a count (a
    /// plan of thousands of resources can warn thousands of times about the same thing).
    pub all: bool,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Groups in the order they first appear, with how many each holds.
        let mut groups: Vec<(&str, usize)> = Vec::new();
        // Each rendered diagnostic ends with a blank line, which separates them.
        for d in self.diagnostics {
            if let Some(group) = d.group.as_deref().filter(|_| !self.all) {
                let at = groups.iter().position(|(g, _)| *g == group).unwrap_or_else(|| {
                    groups.push((group, 0));
                    groups.len() - 1
                });
                groups[at].1 += 1;
                if groups[at].1 > SHOWN_PER_GROUP {
                    continue;
                }
            }
            f.write_str(&self.sources.render(d, self.redactor))?;
        }
        for (group, n) in groups.into_iter().filter(|(_, n)| *n > SHOWN_PER_GROUP) {
            writeln!(
                f,
                "warning: {} more like the above about {group} (run with -v to see every one)\n",
                n - SHOWN_PER_GROUP
            )?;
        }
        let errors = self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let warnings = self.diagnostics.len() - errors;
        match (errors, warnings) {
            (0, 0..=1) | (1, 0) => Ok(()),
            (0, w) => writeln!(f, "{w} warnings"),
            (e, 0) => writeln!(f, "{e} errors"),
            (e, w) => writeln!(f, "{e} error{}, {w} warning{}", plural(e), plural(w)),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A URL with a password in any spelling: `user:password@`, `user%3Apassword@`, or a query
/// parameter `password` / `pass` / `pwd` / `passwd`. Such a line is never echoed, even in an
/// error about it.
fn has_url_password(line: &str) -> bool {
    line.split("://").skip(1).any(|rest| {
        let url = rest.split(['"', '\'', ' ']).next().unwrap_or_default();
        let authority = url.split(['/', '?', '#']).next().unwrap_or_default();
        let in_userinfo = authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':') || userinfo.to_ascii_lowercase().contains("%3a"));
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let in_query = query.split(['&', ';']).any(|pair| {
            let name = pair.split('=').next().unwrap_or_default().to_ascii_lowercase();
            ["password", "pass", "pwd", "passwd"].contains(&name.as_str())
        });
        in_userinfo || in_query
    })
}

/// Key names whose value is a secret more often than not.
const SECRET_KEY_WORDS: [&str; 7] = ["password", "passwd", "pwd", "secret", "token", "key", "credential"];

/// A line that may hold a secret value even though no secret is known yet (a syntax error comes
/// before the secrets are read): it assigns a password-like key anything but references, or it
/// gives a `[secrets]` entry anything but its `{ source = ... }` table.
fn may_hold_secret(line: &str, in_secrets_table: bool) -> bool {
    let Some((key, value)) = line.split_once('=') else {
        // No assignment: a header, a comment, or the tail of a multi-line value.
        return in_secrets_table && !line.trim_start().starts_with(['[', '#']) && !line.trim().is_empty();
    };
    let value = value.trim();
    if in_secrets_table {
        return !value.starts_with('{');
    }
    let key = key.rsplit('.').next().unwrap_or_default().trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    SECRET_KEY_WORDS.iter().any(|w| key.contains(w)) && !only_references(value)
}

/// `"${secrets.NAME}"` (optionally followed by a comment): names a secret, holds none.
fn only_references(value: &str) -> bool {
    let code = value.split_once('#').map_or(value, |(code, _)| code).trim();
    let Some(inner) = code.strip_prefix('"').and_then(|c| c.strip_suffix('"')) else {
        return false;
    };
    let mut rest = inner;
    while !rest.is_empty() {
        let Some(body) = rest.strip_prefix("${") else { return false };
        let Some(end) = body.find('}') else { return false };
        rest = &body[end + 1..];
    }
    !inner.is_empty()
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
    use aspects_core::Secret;

    fn map(text: &str) -> SourceMap {
        SourceMap::new(vec![SourceFile { path: "p.toml".into(), text: text.into() }])
    }

    fn render(text: &str, span: Range<usize>, redactor: &Redactor) -> String {
        let d = Diagnostic::new("bad", Some(Location { file: 0, span })).hint("fix it");
        map(text).render(&d, redactor)
    }

    #[test]
    fn url_passwords_are_detected() {
        assert!(has_url_password(r#"url = "mysql://root:pw@127.0.0.1:3306""#));
        assert!(!has_url_password(r#"url = "mysql://root@127.0.0.1:3306""#));
        assert!(!has_url_password(r#"url = "http://host:8123/x@y""#));
        assert!(has_url_password(r#"url = "mysql://root%3Apw@h:3306""#));
        assert!(has_url_password(r#"url = "mysql://root@h:3306/?ssl-mode=x&PASSWORD=pw""#));
        assert!(has_url_password(r#"url = "mysql://root@h?pwd=pw""#));
        assert!(!has_url_password(r#"url = "mysql://root@h:3306/db?ssl-mode=required""#));
    }

    #[test]
    fn line_and_column_count_characters_on_crlf_and_past_the_end() {
        let m = map("a = 1\r\nné = \"x\"\n\nlast");
        let at = |start: usize| m.line_col(&Location { file: 0, span: start..start });
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(7), (2, 1));
        // `é` is two bytes and one column; an offset inside it counts as its start.
        assert_eq!(at(10), (2, 3));
        assert_eq!(at(9), (2, 2));
        assert_eq!(at(17), (3, 1));
        assert_eq!(at(1000), (4, 5));
    }

    #[test]
    fn renders_location_line_caret_and_hint() {
        let out = render("[a]\nname = superset\n", 11..19, &Redactor::default());
        assert_eq!(
            out,
            "error: bad\n  --> p.toml:2:8\n  |\n2 | name = superset\n  |        ^^^^^^^^\n  |\n  = hint: fix it\n\n"
        );
    }

    #[test]
    fn a_span_on_a_line_break_marks_the_end_of_its_line() {
        let out = render("a = 1\r\nb = 2\r\n", 6..7, &Redactor::default());
        assert!(out.contains("--> p.toml:1:7\n  |\n1 | a = 1\n  |      ^\n"), "{out}");
    }

    #[test]
    fn warnings_say_so_and_do_not_count_as_errors() {
        let e = LoadError::new(
            vec![Diagnostic::warning("w", None).hint("h"), Diagnostic::new("e", None)],
            SourceMap::default(),
        );
        let out = e.to_string();
        assert!(out.starts_with("warning: w\n"), "{out}");
        assert!(!out.contains("2 errors"), "{out}");
    }

    #[test]
    fn a_span_over_several_lines_marks_only_its_first() {
        let out = render("k = \"\"\"\nsecond\n\"\"\"\n", 4..17, &Redactor::default());
        assert!(out.contains("1 | k = \"\"\"\n  |     ^^^\n"), "{out}");
        assert!(!out.contains("second"), "{out}");
    }

    #[test]
    fn secret_lines_are_pointed_at_not_shown() {
        let known = Redactor::new([Secret::new("Value123")]);
        for (text, redactor) in [
            ("[x]\nname = Value123\n", &known),
            ("[x]\npassword = Value123\n", &Redactor::default()),
            ("[x]\napi_token = \"abc\n", &Redactor::default()),
            ("[secrets]\npw = \"hunter2\"\n", &Redactor::default()),
            ("[x]\nurl = \"mysql://u:hunter2@h\"\n", &Redactor::default()),
        ] {
            let line2 = text.find('\n').unwrap() + 1;
            let out = render(text, line2..line2 + 4, redactor);
            assert!(out.contains("--> p.toml:2:1"), "{out}");
            assert!(out.contains("line not shown"), "{out}");
            for secret in ["Value123", "hunter2", "abc"] {
                assert!(!out.contains(secret), "{out}");
            }
        }
        let shown = render("[x]\npassword = \"${secrets.pw}\"\n", 4..12, &Redactor::default());
        assert!(shown.contains("2 | password = \"${secrets.pw}\""), "{shown}");
        let shown = render("[secrets]\npw = { generate = 24 }\n", 10..12, &Redactor::default());
        assert!(shown.contains("--> p.toml:2:1"), "{shown}");
        assert!(shown.contains("2 | pw = { generate = 24 }"), "{shown}");
    }

    #[test]
    fn messages_and_hints_are_scrubbed() {
        let d = Diagnostic::new("near Value123", None).hint("not Value123");
        let out = map("").render(&d, &Redactor::new([Secret::new("Value123")]));
        assert!(!out.contains("Value123"), "{out}");
    }
}

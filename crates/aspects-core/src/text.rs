//! Text with sensitive spans: a rendered file whose content embeds secrets. Plans show it (and
//! diff it by line) with each span masked, so the rest of the file stays reviewable while the
//! secret bytes never leave the process. Equality compares the whole text, secrets included, so
//! a rotated secret is still a change.

use std::fmt;
use std::ops::Range;

use crate::secret::{REDACTED, Secret};

#[derive(Clone, Default)]
pub struct Text {
    text: String,
    /// Sorted, non-overlapping byte ranges on char boundaries.
    spans: Vec<Range<usize>>,
}

impl Text {
    /// Text with no sensitive span.
    pub fn plain(text: impl Into<String>) -> Self {
        Self { text: text.into(), spans: Vec::new() }
    }

    /// `text` with every occurrence of each non-empty secret value marked sensitive.
    pub fn with_secrets<'s>(text: impl Into<String>, secrets: impl IntoIterator<Item = &'s Secret>) -> Self {
        let mut out = Self::plain(text);
        for s in secrets {
            out.mark(s.expose());
        }
        out
    }

    /// Marks every occurrence of `needle` sensitive.
    pub fn mark(&mut self, needle: &str) {
        if needle.is_empty() {
            return;
        }
        let found: Vec<Range<usize>> = self.text.match_indices(needle).map(|(i, m)| i..i + m.len()).collect();
        for r in found {
            self.add_span(r);
        }
    }

    /// Marks one byte range sensitive (ignored unless it lies on char boundaries inside the text).
    pub fn add_span(&mut self, r: Range<usize>) {
        if r.start >= r.end || !self.text.is_char_boundary(r.start) || !self.text.is_char_boundary(r.end) {
            return;
        }
        self.spans.push(r);
        self.spans.sort_by_key(|s| s.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(self.spans.len());
        for s in self.spans.drain(..) {
            match merged.last_mut() {
                Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
                _ => merged.push(s),
            }
        }
        self.spans = merged;
    }

    /// The plaintext, secrets included. Only for writing the file itself.
    pub fn expose(&self) -> &str {
        &self.text
    }

    pub fn spans(&self) -> &[Range<usize>] {
        &self.spans
    }

    pub fn is_sensitive(&self) -> bool {
        !self.spans.is_empty()
    }

    /// The text with each sensitive span replaced by `(sensitive)`.
    pub fn masked(&self) -> String {
        self.masked_range(0..self.text.len())
    }

    /// Lines (with their terminators) as `(plaintext, masked)` pairs: diffs compare the
    /// plaintext and print the masked form.
    pub fn lines(&self) -> Vec<(&str, String)> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.text.len() {
            let end = self.text[start..].find('\n').map_or(self.text.len(), |i| start + i + 1);
            out.push((&self.text[start..end], self.masked_range(start..end)));
            start = end;
        }
        out
    }

    fn masked_range(&self, range: Range<usize>) -> String {
        let mut out = String::with_capacity(range.len());
        let mut at = range.start;
        for s in &self.spans {
            if s.end <= range.start || s.start >= range.end {
                continue;
            }
            let (from, to) = (s.start.max(range.start), s.end.min(range.end));
            out.push_str(&self.text[at..from.max(at)]);
            if from >= at {
                out.push_str(REDACTED);
            }
            at = at.max(to);
        }
        out.push_str(&self.text[at.min(range.end)..range.end]);
        out
    }
}

/// Equal texts are equal files: spans are how they are shown, not what they are.
impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_place_and_per_line() {
        let pw = Secret::new("hunter2");
        let t = Text::with_secrets("user: ralph\npass: hunter2\nagain hunter2hunter2\n", [&pw]);
        assert_eq!(t.masked(), "user: ralph\npass: (sensitive)\nagain (sensitive)\n");
        let lines: Vec<String> = t.lines().into_iter().map(|(_, m)| m).collect();
        assert_eq!(lines, ["user: ralph\n", "pass: (sensitive)\n", "again (sensitive)\n"]);
        assert!(!format!("{t:?} {t}").contains("hunter2"));
        assert_eq!(t, Text::plain(t.expose()));
    }

    #[test]
    fn a_span_across_lines_masks_both_parts() {
        let mut t = Text::plain("a=se\ncret\n");
        t.add_span(2..9);
        assert_eq!(t.masked(), "a=(sensitive)\n");
        let lines: Vec<String> = t.lines().into_iter().map(|(_, m)| m).collect();
        assert_eq!(lines, ["a=(sensitive)", "(sensitive)\n"]);
    }
}

//! Secret values. A `Secret` never prints its value: `Debug` and `Display` redact, and there is no
//! `Serialize`. The only way to the plaintext is [`Secret::expose`], used by providers at the wire.

use std::fmt;
use std::sync::Arc;

/// What is printed wherever a secret would be.
pub const REDACTED: &str = "(sensitive)";

/// Equal when the values are equal; how it is shown plays no part. One pointer wide, so a
/// [`crate::Value`] (and every attribute map's B-tree node) stays small.
#[derive(Clone)]
pub struct Secret(Arc<Inner>);

struct Inner {
    value: Box<str>,
    /// What plans may show of a text built around secrets (a connection URI): the text with
    /// every secret part replaced by [`REDACTED`]. `None`: nothing is shown.
    shown: Option<Box<str>>,
}

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(Arc::new(Inner { value: value.into(), shown: None }))
    }

    /// A secret whose non-secret parts may be shown: `shown` must hold no secret material
    /// (the loader builds it from the literal parts of a `${...}` template).
    pub fn with_shown(value: impl Into<Box<str>>, shown: impl Into<Box<str>>) -> Self {
        Self(Arc::new(Inner { value: value.into(), shown: Some(shown.into()) }))
    }

    /// The plaintext. Call it only where the value must cross a wire or feed a hash.
    pub fn expose(&self) -> &str {
        &self.0.value
    }

    /// The text with its secret parts masked, when it has non-secret parts worth showing.
    pub fn shown(&self) -> Option<&str> {
        self.0.shown.as_deref()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Scrubs known secret values out of text that is about to leave the process (errors from
/// servers can echo statement text). A second line of defence: providers keep secrets out of
/// their messages in the first place.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let mut secrets: Vec<Secret> = secrets.into_iter().filter(|s| !s.expose().is_empty()).collect();
        // Longest first, so a secret containing another is scrubbed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        Self { secrets }
    }

    /// Whether `text` holds any known secret value.
    pub fn holds_secret(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.expose()))
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_scrubs_every_known_secret() {
        let r = Redactor::new([Secret::new("abc"), Secret::new("abcdef"), Secret::new("")]);
        assert_eq!(r.scrub("near 'abcdef' and abc"), "near '(sensitive)' and (sensitive)");
        assert!(r.holds_secret("xabcx"));
        assert!(!r.holds_secret("ab"));
    }

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "(sensitive) (sensitive)");
        assert_eq!(s.expose(), "hunter2");
    }
}

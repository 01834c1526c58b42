//! Secret values. A `Secret` never prints its value: `Debug` and `Display` redact, and there is no
//! `Serialize`. The only way to the plaintext is [`Secret::expose`], used by providers at the wire.

use std::fmt;
use std::sync::Arc;

/// What is printed wherever a secret would be.
pub const REDACTED: &str = "(sensitive)";

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The plaintext. Call it only where the value must cross a wire or feed a hash.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "(sensitive) (sensitive)");
        assert_eq!(s.expose(), "hunter2");
    }
}

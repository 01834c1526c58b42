//! The apply journal: one JSON object per line, appended, never holding a secret (entries carry
//! addresses, actions, timings and scrubbed error text only).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    run: String,
}

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    ts: String,
    run: &'a str,
    #[serde(flatten)]
    entry: &'a T,
}

impl Journal {
    pub fn open(path: &Path, run: String) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { path: path.to_owned(), file: Mutex::new(file), run })
    }

    /// Appends one entry. A journal that cannot be written must not fail the apply it records:
    /// the failure is logged instead.
    pub fn record<T: Serialize>(&self, entry: &T) {
        let line = Line { ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(), run: &self.run, entry };
        let mut text = serde_json::to_string(&line).expect("journal entries serialise");
        text.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.flush()) {
            tracing::warn!("cannot write journal {}: {e}", self.path.display());
        }
    }
}

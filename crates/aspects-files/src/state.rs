//! Ownership records of one deployment's files: `<state_dir>/files-<deployment>.json` (0600,
//! folder 0700), rewritten atomically on every change. Kept beside the files rather than in
//! them (a config file has no room for a marker every format accepts) and on their file
//! system, so one `rename` makes each change durable. Besides the state of each file it keeps
//! what the last write put there: the content's hash and, for each line holding a secret, the
//! text around the secret (never the secret), so a plan masks whatever now sits in that place —
//! the old value after a rotation, a value typed by hand — although the plan never knew it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aspects_core::Text;
use aspects_engine::ownership::State;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Records {
    /// By absolute path.
    pub files: BTreeMap<String, Record>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The resource's kind and name in the plan, so an orphan is shown under its address.
    #[serde(default = "file_kind")]
    pub kind: String,
    pub name: String,
    /// `creating`, `created` or `adopted` (see ARCHITECTURE.md).
    pub state: String,
    /// The content's sha256 after the last write; empty before the first.
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub secret_lines: Vec<SecretLine>,
    /// The content changed but `on_change` has not yet succeeded since.
    #[serde(default)]
    pub on_change_pending: bool,
}

/// A line that held secrets, as the non-secret text between them: `["PASSWORD=", "\n"]` for
/// `PASSWORD=<secret>\n`. A live line that starts, continues and ends with these parts has its
/// secrets in the gaps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecretLine {
    pub parts: Vec<String>,
}

impl SecretLine {
    /// The gaps of `line` between the parts, as byte ranges, when the line has this shape.
    fn gaps(&self, line: &str) -> Option<Vec<std::ops::Range<usize>>> {
        let (first, rest) = self.parts.split_first()?;
        let (last, middle) = rest.split_last()?;
        let end = line.len().checked_sub(last.len()).filter(|e| line[*e..] == **last && line.is_char_boundary(*e))?;
        let mut at = first.len();
        if !line.starts_with(first.as_str()) || at > end {
            return None;
        }
        let mut gaps = Vec::new();
        for part in middle {
            let found = at + line.get(at..end)?.find(part.as_str())?;
            gaps.push(at..found);
            at = found + part.len();
        }
        gaps.push(at..end);
        Some(gaps)
    }
}

fn file_kind() -> String {
    crate::schema::FILE.to_owned()
}

impl Record {
    pub fn state(&self) -> State {
        State::parse(&self.state)
    }

    /// Remembers what was written: its hash and the shape of its secret lines.
    pub fn wrote(&mut self, text: &Text) {
        self.sha256 = sha256(text.expose().as_bytes());
        let mut lines = Vec::new();
        let mut start = 0;
        for (line, _) in text.lines() {
            let end = start + line.len();
            let mut parts = Vec::new();
            let mut at = start;
            for s in text.spans().iter().filter(|s| s.start < end && s.end > start) {
                parts.push(text.expose()[at..s.start.max(start)].to_owned());
                at = s.end.min(end);
            }
            if !parts.is_empty() {
                parts.push(text.expose()[at..end].to_owned());
                lines.push(SecretLine { parts });
            }
            start = end;
        }
        self.secret_lines = lines;
    }

    /// Marks, in live content, whatever sits where the last write put secrets.
    pub fn mask(&self, text: &mut Text) {
        let mut start = 0;
        let mut found = Vec::new();
        for (line, _) in text.lines() {
            if let Some(gaps) = self.secret_lines.iter().find_map(|l| l.gaps(line)) {
                found.extend(gaps.into_iter().map(|g| start + g.start..start + g.end));
            }
            start += line.len();
        }
        for r in found {
            text.add_span(r);
        }
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn path_of(state_dir: &Path, deployment: &str) -> PathBuf {
    state_dir.join(format!("files-{deployment}.json"))
}

/// Every deployment's records in the folder, by deployment: another deployment's file is
/// refused, never shared.
pub fn read_all(state_dir: &Path) -> Result<BTreeMap<String, Records>, String> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("{}: {e}", state_dir.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", state_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(deployment) = name.strip_prefix("files-").and_then(|n| n.strip_suffix(".json")) else { continue };
        let text = std::fs::read_to_string(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
        let records: Records = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a records file aspects wrote: {e}", entry.path().display()))?;
        out.insert(deployment.to_owned(), records);
    }
    Ok(out)
}

/// The state folder, private to its owner.
pub fn create_dir(state_dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(state_dir)
}

/// Replaces the deployment's records file: temp file, fsync, rename, fsync of the folder.
pub fn save(state_dir: &Path, deployment: &str, records: &Records) -> Result<(), String> {
    let err = |e: std::io::Error| format!("writing the records in {}: {e}", state_dir.display());
    create_dir(state_dir).map_err(err)?;
    let path = path_of(state_dir, deployment);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let body = serde_json::to_vec_pretty(records).expect("records serialise");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    f.write_all(&body).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    std::fs::File::open(state_dir).and_then(|d| d.sync_all()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aspects_core::Secret;

    #[test]
    fn whatever_sits_where_a_secret_was_written_is_masked() {
        let old = Secret::new("old-secret");
        let written = Text::with_secrets("user=a\npass=old-secret\n", [&old]);
        let mut record = Record {
            kind: "file".into(),
            name: "x".into(),
            state: "created".into(),
            sha256: String::new(),
            secret_lines: vec![],
            on_change_pending: false,
        };
        record.wrote(&written);
        assert!(!serde_json::to_string(&record).unwrap().contains("old-secret"));
        let mut live = Text::plain("user=b\npass=typed-by-hand\npass2=x\n");
        record.mask(&mut live);
        assert_eq!(live.masked(), "user=b\npass=(sensitive)\npass2=x\n");
    }
}

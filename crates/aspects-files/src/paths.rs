//! Where a `file` resource lives, refusing anything that could write outside the root: `..`
//! (refused at load time too), absolute paths elsewhere, the state folder, and symlinks on the
//! way (a link inside the root can point anywhere). Checked at plan time and again right before
//! each write.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

/// The absolute path of `path` under `root`, or why it is refused.
pub fn resolve(root: &Path, state_dir: &Path, path: &str) -> Result<PathBuf, String> {
    let joined = if path.starts_with('/') { PathBuf::from(path) } else { root.join(path) };
    let mut full = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("{path:?} contains `..`")),
            other => full.push(other),
        }
    }
    if !full.starts_with(root) || full == root {
        return Err(format!("{path:?} is outside the provider's root {}", root.display()));
    }
    if full.starts_with(state_dir) {
        return Err(format!("{path:?} is inside the provider's state folder {}", state_dir.display()));
    }
    let rel = full.strip_prefix(root).map_err(|e| e.to_string())?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("{} is a symbolic link; aspects writes only real files and folders", at.display()));
            }
            Ok(m) if at != full && !m.is_dir() => return Err(format!("{} is not a folder", at.display())),
            Ok(m) if at == full && m.is_dir() => return Err(format!("{} is a folder", at.display())),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => break,
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused() {
        let dir = std::env::temp_dir().join(format!("aspects-files-paths-{}", std::process::id()));
        let state = dir.join(".aspects");
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("link")).unwrap();
        assert_eq!(resolve(&dir, &state, "real/./a.json").unwrap(), dir.join("real/a.json"));
        assert_eq!(resolve(&dir, &state, dir.join("b").to_str().unwrap()).unwrap(), dir.join("b"));
        assert!(resolve(&dir, &state, "/etc/passwd").unwrap_err().contains("outside"));
        assert!(resolve(&dir, &state, "link/passwd").unwrap_err().contains("symbolic link"));
        assert!(resolve(&dir, &state, "link").unwrap_err().contains("symbolic link"));
        assert!(resolve(&dir, &state, ".aspects/files-x.json").unwrap_err().contains("state folder"));
        assert!(resolve(&dir, &state, "real").unwrap_err().contains("is a folder"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

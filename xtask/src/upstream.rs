//! Released upstream files the tests compare against, downloaded once from PyPI into
//! `~/.cache/aspects-stack/<name>-<version>/` (outside the checkout, shared by every checkout) and
//! never copied into the repository. Today: tutor-contrib-aspects 6.1.0, whose Alembic migrations
//! the ClickHouse fidelity test (tests/fidelity.rs) runs.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// The environment variable naming the unpacked tutor-contrib-aspects wheel.
pub const TUTOR_ASPECTS: &str = "ASPECTS_STACK_TUTOR_ASPECTS";
const PACKAGE: &str = "tutor-contrib-aspects";
const VERSION: &str = "6.1.0";
const WHEEL: &str = "tutor_contrib_aspects-6.1.0-py3-none-any.whl";
/// PyPI's sha256 of that wheel: the download is checked against it.
const SHA256: &str = "89bdc571135d5424e8ce702341956a08b28c0cd94f64b8a1182acc9bc0506441";

/// The unpacked wheel (downloading it first when the cache lacks it), as the environment entry
/// the tests read.
pub fn up() -> Result<Vec<(String, String)>, String> {
    let dir = crate::venv::cache().join(format!("{PACKAGE}-{VERSION}"));
    let unpacked = dir.join("wheel");
    if !unpacked.join("tutoraspects").is_dir() {
        fetch(&dir, &crate::venv::cache().join(format!("{PACKAGE}-{VERSION}.partial-{}", std::process::id())))?;
    }
    Ok(vec![
        (TUTOR_ASPECTS.to_owned(), unpacked.display().to_string()),
        // The reference plan's asset bundle is read from the plugin's templates (plans/local.toml).
        ("ASPECTS_VAR_ASPECTS_TEMPLATES".to_owned(), unpacked.join("tutoraspects/templates").display().to_string()),
    ])
}

/// pip download (no dependencies), hash check, unpack beside the final place and rename into it,
/// so an interrupted run is never used.
fn fetch(dir: &Path, staging: &Path) -> Result<(), String> {
    eprintln!("stack: downloading {PACKAGE} {VERSION} from PyPI into {} (first time only, ~2 s)", dir.display());
    let started = Instant::now();
    let _ = fs::remove_dir_all(staging);
    fs::create_dir_all(staging).map_err(|e| e.to_string())?;
    crate::run(
        Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-input", "--no-deps"])
            .arg("--dest")
            .arg(staging)
            .arg(format!("{PACKAGE}=={VERSION}"))
            .stdout(Stdio::null()),
    )?;
    let wheel = staging.join(WHEEL);
    let bytes = fs::read(&wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if got != SHA256 {
        let _ = fs::remove_dir_all(staging);
        return Err(format!("{WHEEL} from PyPI has sha256 {got}, expected {SHA256}; not used"));
    }
    crate::run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&wheel).arg(staging.join("wheel")))?;
    let _ = fs::remove_dir_all(dir);
    if let Err(e) = fs::rename(staging, dir) {
        let _ = fs::remove_dir_all(staging);
        // Another checkout finished the same download first: use it.
        if !dir.join("wheel/tutoraspects").is_dir() {
            return Err(format!("cannot move the download into {}: {e}", dir.display()));
        }
    }
    eprintln!("stack: {PACKAGE} {VERSION} downloaded in {} ms", started.elapsed().as_millis());
    Ok(())
}

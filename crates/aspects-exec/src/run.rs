//! Running one child: no shell, an environment built from the plan alone, output captured, a
//! timeout that kills the child's whole process group.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aspects_core::Redactor;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// What a child may take from aspects' own environment: where programs are and the locale.
/// Nothing else, so a secret aspects read from its environment never reaches a step unasked.
const INHERITED: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

/// Lines of a failing child's output shown.
const TAIL_LINES: usize = 20;

pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

/// Runs `argv` in `dir` with exactly `env` (plus [`INHERITED`]); `Err` says why it did not
/// finish (it could not start, or it ran past `timeout` and was killed).
pub async fn run(argv: &[&str], env: &[(String, String)], dir: &Path, timeout: Duration) -> Result<Finished, String> {
    let start = Instant::now();
    let mut cmd = tokio::process::Command::new(argv[0]);
    cmd.args(&argv[1..])
        .current_dir(dir)
        .env_clear()
        .envs(INHERITED.iter().filter_map(|k| std::env::var_os(k).map(|v| (k, v))))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills what it started too (`sh -c` and its children).
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("could not start in {}: {e}", dir.display()))?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            Ok(Finished { status: out.status, stdout: out.stdout, stderr: out.stderr, elapsed: start.elapsed() })
        }
        Ok(Err(e)) => Err(format!("failed while running: {e}")),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Err(format!("ran longer than its timeout ({} s) and was killed", timeout.as_secs()))
        }
    }
}

impl Finished {
    /// "exited 2", "was killed by signal 9".
    pub fn how(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exited {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            (None, None) => self.status.to_string(),
        }
    }

    /// The first non-empty line of stdout, scrubbed: the check's own word on why it is needed.
    pub fn first_line(&self, redactor: &Redactor) -> Option<String> {
        let out = String::from_utf8_lossy(&self.stdout);
        out.lines().map(str::trim).find(|l| !l.is_empty()).map(|l| clip(&redactor.scrub(l)))
    }

    /// The last lines of stderr (of stdout when stderr is empty), scrubbed, indented for a
    /// message; empty when the child printed nothing.
    pub fn tail(&self, redactor: &Redactor) -> String {
        let stream = if self.stderr.iter().all(u8::is_ascii_whitespace) { &self.stdout } else { &self.stderr };
        let text = String::from_utf8_lossy(stream);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(TAIL_LINES);
        lines[from..].iter().map(|l| format!("\n    | {}", clip(&redactor.scrub(l)))).collect()
    }
}

/// A line cut to a readable length (a progress bar or a minified blob can be megabytes); cut
/// after scrubbing, so no part of a secret is left to show. Control characters (colours, cursor
/// moves) are dropped: a child's output must not drive the operator's terminal.
fn clip(line: &str) -> String {
    const MAX: usize = 300;
    let mut shown = line.chars().filter(|c| !c.is_control() || *c == '\t');
    let mut out: String = shown.by_ref().take(MAX).collect();
    if shown.next().is_some() {
        out.push_str(" ...");
    }
    out
}

#[cfg(test)]
mod tests {
    use aspects_core::Secret;

    use super::*;

    #[test]
    fn shown_output_is_scrubbed_then_clipped_and_cannot_drive_a_terminal() {
        let r = Redactor::new([Secret::new("hunter2-secret")]);
        assert_eq!(
            clip(&r.scrub("\u{1b}[31mlogin failed for hunter2-secret\u{1b}[0m")),
            "[31mlogin failed for (sensitive)[0m"
        );
        let long = format!("{}hunter2-secret", "x".repeat(295));
        assert_eq!(clip(&r.scrub(&long)), format!("{}(sens ...", "x".repeat(295)));
    }
}

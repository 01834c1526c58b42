//! `aspects`: thin on purpose. Parses flags, loads the plan files, connects providers, calls the
//! engine, prints, and maps the outcome to an exit code (0 ok / no changes, 1 error, 2 changes).

mod cli;
mod commands;
mod error;
mod rotation;
mod systems;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Colour};
use crate::error::CliError;

// Loading and planning thousands of resources is dominated by small allocations (strings,
// attribute maps): glibc's malloc took a third of the instructions of a 9,000-resource plan.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2: exit 2 means "changes or drift present" to CI.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ASPECTS_LOG").unwrap_or_else(|_| level.into()))
        .with_target(false)
        .with_ansi(
            !matches!(cli.color, Colour::Never)
                && std::env::var_os("NO_COLOR").is_none()
                && std::io::stderr().is_terminal(),
        )
        .without_time()
        .init();
    let colour = match cli.color {
        Colour::Always => true,
        Colour::Never => false,
        Colour::Auto => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal(),
    };
    // One thread: the work is waiting on servers, and every wait is async. On a busy 2-core
    // machine the multi-threaded scheduler's workers fought over the cores (a 9,000-resource
    // no-op plan took 1.7 s of wall time instead of 0.65 s) and their heaps added ~15 MB. Blocking
    // work (password hashing) still goes to tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(commands::run(&cli, colour)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            match e {
                // -v: every warning of a long run of alike ones, not just the first few.
                CliError::Load(e) if cli.verbose > 0 => eprint!("{}", e.report(true)),
                e => eprint!("{e}"),
            }
            ExitCode::from(1)
        }
    }
}

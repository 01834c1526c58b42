//! `cargo xtask ...`: everything a newcomer needs, from a fresh machine.
//!
//! - `stack up|down|status`: the real services the tests and the demo use, on 127.0.0.1.
//! - `test`: stack up, then the whole test suite against it.
//! - `demo`: stack up, then the main job (validate, plan, apply, plan again, drift) on plans/local.toml.
//! - `bench`: the no-op plan benchmark, in release mode.

mod bench;
mod stack;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Manage the local stack of real services.
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
    /// Start the stack and run every test against it (extra args go to `cargo test`).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Start the stack and run the main job on plans/local.toml.
    Demo,
    /// No-op plan benchmark for N = 10, 100, 1000 MySQL resources.
    Bench {
        /// Run in this process (used by the release re-exec).
        #[arg(long, hide = true)]
        in_process: bool,
    },
}

#[derive(Subcommand)]
enum StackAction {
    Up,
    Down,
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Stack { action: StackAction::Up } => stack::up().map(|_| ()),
        Cmd::Stack { action: StackAction::Down } => stack::down(),
        Cmd::Stack { action: StackAction::Status } => stack::status(),
        Cmd::Test { args } => test(&args),
        Cmd::Demo => demo(),
        Cmd::Bench { in_process: true } => bench::run(),
        Cmd::Bench { in_process: false } => stack::up().and_then(|env| {
            run(cargo()
                .args(["run", "--release", "--quiet", "--package", "xtask", "--", "bench", "--in-process"])
                .envs(env))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{cmd:?} failed with {status}")) }
}

fn test(args: &[String]) -> Result<(), String> {
    let env = stack::up()?;
    run(cargo().args(["test", "--workspace"]).args(args).envs(env))
}

fn demo() -> Result<(), String> {
    let env = stack::up()?;
    run(cargo().args(["build", "--quiet", "--package", "aspects-cli"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let bin = target.join("debug/aspects");
    let plan = root().join("plans/local.toml");
    let url = env.iter().find(|(k, _)| k == "ASPECTS_STACK_MYSQL_URL").map(|(_, v)| v.clone()).unwrap_or_default();
    let step = |title: &str, args: &[&str], ok: &[i32]| -> Result<(), String> {
        eprintln!("\n$ aspects {}    # {title}", args.join(" "));
        let status = Command::new(&bin)
            .args(args)
            .arg("--file")
            .arg(&plan)
            .env("ASPECTS_VAR_mysql_url", &url)
            .status()
            .map_err(|e| e.to_string())?;
        let code = status.code().unwrap_or(-1);
        if ok.contains(&code) { Ok(()) } else { Err(format!("`aspects {}` exited {code}", args.join(" "))) }
    };
    step("check the plan file and secrets", &["validate"], &[0])?;
    step("preview: nothing is written", &["plan", "--detailed-exitcode"], &[0, 2])?;
    step("converge", &["apply", "--auto-approve"], &[0])?;
    step("idempotent: a second plan is empty", &["plan", "--detailed-exitcode"], &[0])?;
    step("what scheduled CI runs", &["drift"], &[0])?;
    eprintln!("\nDemo complete: the Superset metadata database, its user and grants are converged on {url}.");
    Ok(())
}

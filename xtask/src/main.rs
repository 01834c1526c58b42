//! `cargo xtask ...`: everything a newcomer needs, from a fresh machine.
//!
//! - `stack up|down|status`: the real services the tests and the demo use, private to this checkout.
//! - `test`: stack up, then the whole test suite against it.
//! - `demo`: stack up, then the main job (validate, plan, apply, plan again, drift) on
//!   plans/aspects.toml with the local overlay plans/local.toml.
//! - `bench`: the no-op plan and loading benchmarks, in release mode.

mod bench;
mod bench_clickhouse;
mod bench_superset;
mod clickhouse;
mod lms;
mod loading;
mod ralph;
mod stack;
mod superset;
mod upstream;
mod venv;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Start the stack and run the main job on plans/aspects.toml + plans/local.toml.
    Demo,
    /// No-op plan for N = 10 / 100 / 1000, then validate and no-op plan of the release binary
    /// for N = 1000 / 3000 / 9000; exits non-zero when a limit is exceeded.
    Bench {
        /// Only this part (default: all three).
        part: Option<bench::Part>,
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
        Cmd::Bench { part, in_process: true } => bench::run(part),
        // On a fresh Superset, like the tests: the benchmark imports the Aspects bundle, whose
        // UUIDs the demo's deployment may own.
        Cmd::Bench { part, in_process: false } => stack::up_fresh().and_then(|env| {
            // The loading side times the release `aspects` binary beside the release xtask.
            // Built on its own: with xtask in the same invocation, features unify differently
            // and the `run` below would compile xtask a second time.
            run(cargo().args(["build", "--release", "--package", "aspects-cli"]))?;
            let mut bench = cargo();
            bench.args(["run", "--release", "--quiet", "--package", "xtask", "--", "bench", "--in-process"]);
            if let Some(part) = part {
                bench.arg(part.to_possible_value().expect("no skipped variants").get_name());
            }
            run(bench.envs(env))
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

/// A child cargo that builds exactly as a `cargo` typed in the shell would. `cargo run` gives
/// xtask the variables of its own package (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...); passed on,
/// they change the fingerprints of build scripts (ring, rustls, sqlx), which then rebuild on
/// every switch between `cargo xtask ...` and plain `cargo ...`.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let set_by_cargo_run = k.starts_with("CARGO_PKG_")
            || matches!(
                &*k,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_by_cargo_run {
            c.env_remove(&*k);
        }
    }
    c
}

pub fn run(cmd: &mut Command) -> Result<(), String> {
    // The command line only: `{cmd:?}` would also print the environment, which carries the
    // stack's Superset password.
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let status = cmd.status().map_err(|e| format!("cannot run {line}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{line} failed with {status}")) }
}

fn test(args: &[String]) -> Result<(), String> {
    let env = stack::up_fresh()?;
    run(cargo().args(["test", "--workspace"]).args(args).envs(env))
}

/// The plan files the demo runs, relative to the workspace root.
/// The reference plan with the local stack's thin overlay: the demo proves plans/aspects.toml.
const DEMO_FILES: &[&str] = &["plans/aspects.toml", "plans/local.toml"];

fn demo() -> Result<(), String> {
    let env = stack::up()?;
    eprintln!("demo: building the aspects binary (first time: a few minutes; cargo shows progress)");
    run(cargo().args(["build", "--package", "aspects-cli"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let bin = target.join("debug/aspects");
    // Shown relative to the workspace root when it is inside it, so the lines can be copied.
    let shown = bin.strip_prefix(root()).unwrap_or(&bin).display().to_string();
    std::fs::create_dir_all(stack::demo_dir()).map_err(|e| e.to_string())?;
    let files: Vec<String> = DEMO_FILES.iter().flat_map(|f| ["-f".to_owned(), (*f).to_owned()]).collect();
    eprintln!(
        "\nEach step prints its command line; to run it by hand, from {}:\n  . target/stack/env",
        root().display()
    );
    let step = |title: &str, args: &[&str], ok: &[i32]| -> Result<(), String> {
        eprintln!("\n# {title}\n$ {shown} {} {}", files.join(" "), args.join(" "));
        let status = Command::new(&bin)
            .current_dir(root())
            .args(&files)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .map_err(|e| e.to_string())?;
        let code = status.code().unwrap_or(-1);
        if ok.contains(&code) { Ok(()) } else { Err(format!("`aspects {}` exited {code}", args.join(" "))) }
    };
    step("check the plan files and secrets", &["validate"], &[0])?;
    step("preview: nothing is written (exit 2: changes present)", &["plan", "--detailed-exitcode"], &[0, 2])?;
    step("converge", &["apply", "--auto-approve"], &[0])?;
    step("idempotent: a second plan is empty", &["plan", "--detailed-exitcode"], &[0])?;
    step("what scheduled CI runs (exit 0 in sync, 2 drift)", &["drift"], &[0])?;
    let url = |name: &str| &env.iter().find(|(k, _)| k == name).expect("up returns the URL").1;
    eprintln!(
        "\nDemo complete: the Superset metadata database, its user and grants are converged on {}, the\n\
         ClickHouse databases, base schema (functions and tables), service users and their grants on {},\n\
         the LMS rows on {}, Superset's LMS user, roles, Aspects asset bundle, row-level security and\n\
         embedded dashboards on {} (log in as admin with ASPECTS_STACK_SUPERSET_PASSWORD from\n\
         target/stack/env), and the services' files (Ralph's\n\
         auth.json and env, Vector, LMS and Superset settings) under {}, where the stack's Ralph at {}\n\
         reads its auth.json.\n\
         Its secrets file and journal are in {}. Tear down with `cargo xtask stack down`.",
        url(stack::MYSQL_URL),
        url(clickhouse::URL),
        url(lms::DB_URL),
        url(superset::URL),
        stack::dir().display(),
        url(ralph::URL),
        stack::demo_dir().display()
    );
    Ok(())
}

//! Flags, parsed without side effects.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Options every command takes, listed apart from the command's own in `--help`.
const GLOBAL: &str = "Global options";

#[derive(Parser, Debug)]
#[command(name = "aspects", version, about = "Plan and apply the Open edX Aspects analytics stack, without Tutor.")]
pub struct Cli {
    /// Plan file; repeat to layer (later files override earlier ones).
    #[arg(short = 'f', long = "file", global = true, help_heading = GLOBAL, default_value = "aspects.toml")]
    pub files: Vec<PathBuf>,

    /// Secrets file (default: .aspects/<deployment>.secrets.toml beside the first plan file).
    #[arg(long, global = true, help_heading = GLOBAL, env = "ASPECTS_SECRETS")]
    pub secrets: Option<PathBuf>,

    /// Override a declared var: NAME=VALUE (repeatable; wins over ASPECTS_VAR_NAME and the file).
    /// Not for secrets: process arguments are visible to other users.
    #[arg(long = "var", global = true, help_heading = GLOBAL, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,

    /// When to colour output.
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value_t = Colour::Auto)]
    pub color: Colour,

    /// More log output on stderr (-v, -vv). Secrets are never logged at any level.
    #[arg(short, long, global = true, help_heading = GLOBAL, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Colour {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check plan files and secrets; contact nothing, write nothing.
    Validate,
    /// Read live state and show what apply would change. Changes nothing.
    Plan(PlanArgs),
    /// Converge live state to the plan (or apply a saved plan exactly).
    Apply(ApplyArgs),
    /// Read-only check for scheduled CI: exit 0 in sync, 2 drift, 1 error. Writes nothing.
    Drift(DriftArgs),
    /// Give secrets new values and move every resource that uses them, credentials first.
    /// Crash-safe: a re-run (or apply) finishes an interrupted rotation with the same value.
    Rotate(RotateArgs),
    /// Remove what this deployment owns: destroy what it created, release what it adopted.
    Destroy(DestroyArgs),
    /// Print the resource graph.
    Graph(GraphArgs),
    /// Write every file resource's rendered content under a folder, in the layout it has under
    /// its provider's root. Touches no service, runs no on_change, changes no secret.
    Render(RenderArgs),
}

#[derive(Args, Debug, Default)]
pub struct Targets {
    /// Only this resource and what it depends on; for destroy, what depends on it (repeatable).
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Save the plan document for `aspects apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the JSON plan document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when there are changes (0 none, 1 error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Allow re-keying owned objects from secrets generated in this run (the secrets file that
    /// held their values is lost). Without it such a plan is refused.
    #[arg(long)]
    pub allow_new_secrets: bool,
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A plan saved with `plan --out`; applied exactly, refused if live state moved since.
    pub plan_file: Option<PathBuf>,
    /// Allow re-keying owned objects from secrets generated in this run (the secrets file that
    /// held their values is lost). Without it such a plan is refused.
    #[arg(long)]
    pub allow_new_secrets: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct DestroyArgs {
    /// Also drop objects this deployment adopted (by default they are released: kept as they
    /// are, no longer owned).
    #[arg(long)]
    pub destroy_adopted: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Secrets to rotate, as named under [secrets].
    #[arg(value_name = "SECRET", required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every secret the plan uses: new values for `generate` secrets; env and file secrets
    /// whose source now holds a value their consumers do not use yet.
    #[arg(long)]
    pub all: bool,
    /// Show what the rotation would touch, in order; change nothing, save nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// What every command that changes targets under the lock takes.
#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How many changes run at once (each provider also has its own limit).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
    /// How long to wait for another run's lock, e.g. 30s or 5m.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// Journal (JSON lines). Default: <plan stem>.journal.jsonl beside the plan file.
    #[arg(long, value_name = "FILE", env = "ASPECTS_JOURNAL")]
    pub journal: Option<PathBuf>,
}

impl RotateArgs {
    /// The run options of a rotation: what `apply` takes, never destroying data.
    pub fn run(&self) -> RunArgs {
        RunArgs { exec: self.exec.clone(), allow_destroy: false, targets: Targets::default() }
    }
}

/// What `apply` and `destroy` share: both change targets under the lock.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub exec: ExecArgs,
    /// Allow destroying data-bearing objects (databases).
    #[arg(long)]
    pub allow_destroy: bool,
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Args, Debug)]
pub struct DriftArgs {
    /// Print the JSON plan document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// Output format: `dot` (Graphviz: `aspects graph | dot -Tsvg > graph.svg`) or `mermaid`
    /// (paste into Markdown, e.g. a GitHub comment).
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The folder to write into (created if missing). The files hold their secrets in clear:
    /// keep it private.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

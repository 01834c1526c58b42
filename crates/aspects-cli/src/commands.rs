//! One function per subcommand. Data goes to stdout, progress and errors to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use aspects_config::{LoadOptions, Loaded, SecretValues, load_files, load_sources};
use aspects_core::document::PlanDocument;
use aspects_core::render::{Painter, render_plan};
use aspects_core::{Action, Address, Redactor};
use aspects_engine::apply::{ApplyOptions, Event, Report, Writers, check_destroys, prune};
use aspects_engine::journal::Journal;
use aspects_engine::lock::{Locks, lock_all};
use aspects_engine::plan::{Goal, Planned, Readers, check_new_secrets, plan, queries};
use aspects_engine::rotate::{Rotation, apply_rotating, rotations};
use aspects_engine::{Connector, EngineError};
use aspects_saved_plan as saved_plan;
use serde_json::json;

use crate::cli::{
    ApplyArgs, Cli, Command, DestroyArgs, DriftArgs, GraphArgs, GraphFormat, PlanArgs, RenderArgs, RotateArgs, RunArgs,
    Targets,
};
use crate::error::CliError;
use crate::rotation::{self, Request};
use crate::systems;

/// Exit code for "changes present" (plan --detailed-exitcode, drift).
const CHANGES: u8 = 2;

pub async fn run(cli: &Cli, colour: bool) -> Result<u8, CliError> {
    let connectors = systems::connectors();
    let registry = systems::registry(&connectors);
    let ctx = Ctx { cli, painter: Painter { colour }, connectors, registry };
    match &cli.command {
        Command::Validate => ctx.validate(),
        Command::Plan(a) => ctx.plan(a).await,
        Command::Apply(a) => ctx.apply(a).await,
        Command::Drift(a) => ctx.drift(a).await,
        Command::Rotate(a) => ctx.rotate(a).await,
        Command::Destroy(a) => ctx.destroy(a).await,
        Command::Graph(a) => ctx.graph(a),
        Command::Render(a) => ctx.render(a),
    }
}

/// An apply's or destroy's state once every target's lock is held.
struct Locked<'a> {
    loaded: &'a mut Loaded,
    saved: Option<(&'a PathBuf, PlanDocument)>,
    targets: Vec<Address>,
    writers: Writers,
    locks: &'a Locks,
    holder: String,
    redactor: Redactor,
    goal: Goal,
    /// `apply --allow-new-secrets`: re-keying owned objects from new secrets is deliberate.
    allow_new_secrets: bool,
    /// `aspects rotate`: the secrets asked for.
    rotate: Option<Request>,
}

struct Ctx<'a> {
    cli: &'a Cli,
    painter: Painter,
    connectors: BTreeMap<&'static str, Box<dyn Connector>>,
    registry: aspects_core::Registry,
}

impl Ctx<'_> {
    fn options(&self, secret_values: SecretValues) -> LoadOptions {
        LoadOptions {
            secrets_path: self.cli.secrets.clone(),
            secret_values,
            vars: self.cli.vars.iter().cloned().collect(),
            vars_from_env: true,
            rotate: Default::default(),
        }
    }

    fn load_with(&self, opts: &LoadOptions) -> Result<Loaded, CliError> {
        Ok(warned(load_files(&self.cli.files, &self.registry, opts)?, self.cli.verbose > 0))
    }

    fn load(&self, secret_values: SecretValues) -> Result<Loaded, CliError> {
        self.load_with(&self.options(secret_values))
    }

    fn validate(&self) -> Result<u8, CliError> {
        let loaded = self.load(SecretValues::Unread)?;
        let d = &loaded.desired;
        let warnings = match loaded.warnings.len() {
            0 => String::new(),
            n => format!(", with {}", count(n, "warning")),
        };
        println!(
            "The plan is valid{warnings}: {}, {}, {} (deployment `{}`).",
            count(d.resources.len(), "resource"),
            count(d.providers.len(), "provider"),
            count(loaded.secrets.len(), "secret"),
            d.deployment
        );
        Ok(0)
    }

    fn graph(&self, args: &GraphArgs) -> Result<u8, CliError> {
        let loaded = self.load(SecretValues::Unread)?;
        match args.format {
            GraphFormat::Dot => print!("{}", loaded.graph.to_dot()),
            GraphFormat::Mermaid => print!("{}", loaded.graph.to_mermaid()),
        }
        Ok(0)
    }

    /// Secrets are read, never generated: a rendered file must hold values the secrets file keeps.
    fn render(&self, args: &RenderArgs) -> Result<u8, CliError> {
        let loaded = self.load(SecretValues::Existing)?;
        let redactor = Redactor::new(loaded.secrets.iter().map(|s| s.value.clone()));
        let written = aspects_files::render_all(&loaded.desired, &args.out)
            .map_err(|e| CliError::new(redactor.scrub(&e.message)))?;
        for path in &written {
            println!("{}", path.display());
        }
        eprintln!("Rendered {} into {}.", count(written.len(), "file"), args.out.display());
        Ok(0)
    }

    async fn plan(&self, args: &PlanArgs) -> Result<u8, CliError> {
        let (mut loaded, planned, rotations) = self.read_only_plan(SecretValues::Generate, &args.targets).await?;
        accept_new_secrets(&mut loaded, &planned, args.allow_new_secrets)?;
        // Built only when asked for: for thousands of resources it is a second copy of the plan.
        let doc = (args.out.is_some() || args.json).then(|| saved_plan::document(&planned, &loaded, &rotations));
        if let (Some(out), Some(doc)) = (&args.out, &doc) {
            saved_plan::write(out, doc)?;
            eprintln!(
                "Saved the plan to {}. Apply exactly this plan with: aspects apply {}",
                out.display(),
                out.display()
            );
        }
        self.print(&planned, doc.as_ref().filter(|_| args.json), &rotations, &loaded);
        let changes = planned.plan.has_changes() || !rotations.is_empty();
        Ok(if args.detailed_exitcode && changes { CHANGES } else { 0 })
    }

    /// Drift also counts an unfinished rotation: some consumer may still use the old value.
    async fn drift(&self, args: &DriftArgs) -> Result<u8, CliError> {
        let (loaded, planned, rotations) = self.read_only_plan(SecretValues::Existing, &args.targets).await?;
        let doc = args.json.then(|| saved_plan::document(&planned, &loaded, &rotations));
        self.print(&planned, doc.as_ref(), &rotations, &loaded);
        Ok(if planned.plan.has_changes() || !rotations.is_empty() { CHANGES } else { 0 })
    }

    /// `plan` and `drift`: load, connect read-only handles, plan, and look at the rotations an
    /// earlier run left pending.
    async fn read_only_plan(
        &self,
        values: SecretValues,
        targets: &Targets,
    ) -> Result<(Loaded, Planned, Vec<Rotation>), CliError> {
        let loaded = self.load(values)?;
        let targets = parse_targets(targets)?;
        let redactor = redactor(&loaded);
        let readers = self.connect_read(&loaded, &redactor).await?;
        let planned = self.compute(&loaded, &readers, &targets, &redactor, Goal::Converge).await?;
        let rotations = rotations(&rotation::pending(&loaded), &planned, &loaded.graph, &self.registry, &readers);
        Ok((loaded, planned, rotations))
    }

    /// The JSON document when asked for, the text plan otherwise.
    fn print(&self, planned: &Planned, json: Option<&PlanDocument>, rotations: &[Rotation], loaded: &Loaded) {
        match json {
            Some(doc) => println!("{}", serde_json::to_string_pretty(doc).expect("plan documents serialise")),
            None => sections(
                render_plan(&planned.plan, self.painter),
                rotations.iter().map(|r| rotation::unfinished(r, loaded)),
            ),
        }
    }

    async fn apply(&self, args: &ApplyArgs) -> Result<u8, CliError> {
        let (mut loaded, saved) = match &args.plan_file {
            Some(path) => {
                let doc = saved_plan::read(path)?;
                if !self.cli.vars.is_empty() {
                    return Err(CliError::new(
                        "a saved plan carries the vars it was made with; --var cannot change them",
                    )
                    .hint("make a new plan with the --var you want: aspects plan --var NAME=VALUE --out FILE"));
                }
                let opts = saved_plan::load_options(&doc, self.options(SecretValues::Existing));
                let loaded =
                    warned(load_sources(saved_plan::sources(&doc), &self.registry, &opts)?, self.cli.verbose > 0);
                (loaded, Some((path, doc)))
            }
            // Generated secrets are saved once the plan is accepted, before any target uses them.
            None => (self.load(SecretValues::Generate)?, None),
        };
        let targets = match &saved {
            Some((_, doc)) => doc.targets.iter().flatten().map(|t| parse_address(t)).collect::<Result<_, _>>()?,
            None => parse_targets(&args.run.targets)?,
        };
        self.locked(&args.run, &mut loaded, saved, targets, Goal::Converge, args.allow_new_secrets, None).await
    }

    /// `rotate`: new values for the secrets asked for (or the pending ones of an interrupted
    /// rotation), then every consumer, credentials first.
    async fn rotate(&self, args: &RotateArgs) -> Result<u8, CliError> {
        // Which secrets exist and are used is known without reading a single value (its
        // warnings are shown by the load that follows, not twice).
        let declared = load_files(&self.cli.files, &self.registry, &self.options(SecretValues::Unread))?;
        let request = Request::new(args, &declared)?;
        drop(declared);
        let opts = LoadOptions { rotate: request.generated(), ..self.options(SecretValues::Generate) };
        let mut loaded = self.load_with(&opts)?;
        let targets = request.targets();
        if args.dry_run {
            let redactor = redactor(&loaded);
            let readers = self.connect_read(&loaded, &redactor).await?;
            let planned = self.compute(&loaded, &readers, &targets, &redactor, Goal::Converge).await?;
            let found = rotations(&request.rotating(&loaded), &planned, &loaded.graph, &self.registry, &readers);
            let found = request.check(found, &loaded)?;
            let described = found.iter().map(|r| rotation::describe(r, &loaded, &readers));
            sections(render_plan(&planned.plan, self.painter), described);
            println!("\nDry run: nothing was changed and no value was saved.");
            return Ok(0);
        }
        self.locked(&args.run(), &mut loaded, None, targets, Goal::Converge, false, Some(request)).await
    }

    /// `destroy`: the same run as `apply`, planned towards owning nothing. Generated secrets are
    /// not needed to remove objects: a missing one is made in memory only, never saved.
    async fn destroy(&self, args: &DestroyArgs) -> Result<u8, CliError> {
        let mut loaded = self.load(SecretValues::Generate)?;
        let targets = parse_targets(&args.run.targets)?;
        let goal = Goal::Destroy { destroy_adopted: args.destroy_adopted };
        self.locked(&args.run, &mut loaded, None, targets, goal, false, None).await
    }

    /// Connects, takes every target's lock, runs, and lets go of the locks whatever happened.
    #[allow(clippy::too_many_arguments)]
    async fn locked(
        &self,
        args: &RunArgs,
        loaded: &mut Loaded,
        saved: Option<(&PathBuf, PlanDocument)>,
        targets: Vec<Address>,
        goal: Goal,
        allow_new_secrets: bool,
        rotate: Option<Request>,
    ) -> Result<u8, CliError> {
        let redactor = redactor(loaded);
        let writers = self.connect_write(loaded, &redactor).await?;
        let holder = aspects_engine::lock::holder();
        let waiting = |msg: String| eprintln!("{}", redactor.scrub(&msg));
        let locks = lock_all(&writers, &holder, args.exec.lock_timeout, &waiting)
            .await
            .map_err(|e| scrubbed(e, loaded, &redactor))?;
        let run = Locked {
            loaded,
            saved,
            targets,
            writers,
            locks: &locks,
            holder,
            redactor,
            goal,
            allow_new_secrets,
            rotate,
        };
        let result = self.apply_locked(args, run).await;
        locks.release().await;
        result
    }

    async fn apply_locked(&self, args: &RunArgs, run: Locked<'_>) -> Result<u8, CliError> {
        let Locked { loaded, saved, targets, writers, locks, holder, redactor, goal, allow_new_secrets, rotate } = run;
        let (targets, writers, holder, redactor) = (&targets, &writers, holder.as_str(), &redactor);
        let readers: Readers =
            writers.iter().map(|(k, w)| (k.clone(), w.clone() as Arc<dyn aspects_engine::ProviderRead>)).collect();
        // Under the locks: no other run can rotate now, but one may have done so since this run
        // loaded its values; writing those back would re-key consumers to a value the file lost.
        rotation::check_not_moved(loaded)?;
        let planned = self.compute(loaded, &readers, targets, redactor, goal).await?;
        let found = match goal {
            Goal::Converge => {
                let names = rotate.as_ref().map_or_else(|| rotation::pending(loaded), |r| r.rotating(loaded));
                rotations(&names, &planned, &loaded.graph, &self.registry, &readers)
            }
            Goal::Destroy { .. } => Vec::new(),
        };
        let found = match &rotate {
            Some(request) => request.check(found, loaded)?,
            None => found,
        };
        match &saved {
            Some((path, doc)) => {
                saved_plan::check_not_stale(path, doc, &saved_plan::document(&planned, loaded, &found))?
            }
            // destroy needs no generated secret: whatever it made stays unsaved.
            None if goal == Goal::Converge => accept_new_secrets(loaded, &planned, allow_new_secrets)?,
            None => {}
        }
        if goal != Goal::Converge && !planned.plan.has_changes() {
            println!("Nothing to destroy: deployment `{}` owns nothing on its targets.", planned.plan.deployment);
        } else {
            let described = found.iter().map(|r| rotation::describe(r, loaded, &readers));
            sections(render_plan(&planned.plan, self.painter), described);
        }
        let prune = || async {
            let pruned = prune(&planned, writers, Some(locks)).await.map_err(|e| scrubbed(e, loaded, redactor))?;
            tracing::info!("removed {pruned} ownership record(s) that proved nothing (object gone or never created)");
            Ok::<_, CliError>(())
        };
        if !planned.plan.has_changes() && found.is_empty() {
            prune().await?;
            return Ok(0);
        }
        // Before asking: a plan that cannot be applied must not be confirmed first.
        check_destroys(&planned.plan, args.allow_destroy)?;
        if saved.is_none() && !args.exec.auto_approve {
            confirm(&rotation::verdict(&planned.plan, &found)).await?;
        }
        prune().await?;
        let journal_path = args.exec.journal.clone().unwrap_or_else(|| journal_path(&self.cli.files[0]));
        let run_id = run_id();
        let journal = Journal::open(&journal_path, run_id).map_err(|e| {
            CliError::new(format!("cannot open the journal {}: {e}", journal_path.display()))
                .hint("pass --journal PATH to put it elsewhere")
        })?;
        let summary = planned.plan.summary();
        let command = match (goal, &rotate) {
            (Goal::Destroy { .. }, _) => "destroy",
            (_, Some(_)) => "rotate",
            _ => "apply",
        };
        journal.record(&json!({
            "event": "apply_started",
            "deployment": planned.plan.deployment,
            "holder": holder,
            "plan_files": self.cli.files,
            "saved_plan": saved.as_ref().map(|(p, _)| p.display().to_string()),
            "command": command,
            "summary": summary,
            "rotations": &found,
        }));
        // The new values are in the secrets file before any target sees them.
        rotation::record_pending(loaded, &found)?;
        let opts = ApplyOptions {
            parallelism: args.exec.parallelism.into(),
            allow_destroy: args.allow_destroy,
            redactor,
            journal: Some(&journal),
            locks: Some(locks),
            keep_old_secret: Default::default(),
        };
        let started = Instant::now();
        let mut progress = |e: &Event| eprintln!("{}", describe(e));
        let graph = &loaded.graph;
        let report = apply_rotating(&planned, graph, &self.registry, writers, &opts, &found, &mut progress).await;
        let report = report.map_err(|e| scrubbed(e, loaded, redactor))?;
        journal.record(
            &json!({ "event": "apply_finished", "ms": started.elapsed().as_millis() as u64, "report": &report.report }),
        );
        rotation::promote(loaded, &report.converged)?;
        journal.record(&json!({
            "event": "rotations_finished",
            "converged": &report.converged,
            "unfinished": &report.unfinished,
        }));
        println!("\n{}", outcome_line(&report.report));
        let finished = rotation::outcome(loaded, &report);
        if !finished.is_empty() {
            println!("{finished}");
        }
        Ok(if report.report.succeeded() && report.unfinished.is_empty() { 0 } else { 1 })
    }

    async fn compute(
        &self,
        loaded: &Loaded,
        readers: &Readers,
        targets: &[Address],
        redactor: &Redactor,
        goal: Goal,
    ) -> Result<Planned, CliError> {
        let started = Instant::now();
        let before = queries(readers);
        let targets = (!targets.is_empty()).then_some(targets);
        let planned = plan(&loaded.desired, &loaded.graph, &self.registry, readers, targets, goal)
            .await
            .map_err(|e| scrubbed(e, loaded, redactor))?;
        tracing::info!("read live state with {} queries in {:?}", queries(readers) - before, started.elapsed());
        Ok(planned)
    }

    async fn connect_read(&self, loaded: &Loaded, redactor: &Redactor) -> Result<Readers, CliError> {
        let mut out = Readers::new();
        for (id, cfg) in &loaded.desired.providers {
            let c = &self.connectors[cfg.system.as_str()];
            let r = c
                .connect_read(cfg, &loaded.desired.deployment)
                .await
                .map_err(|error| connect_error(id, cfg, error, redactor))?;
            out.insert(id.clone(), r);
        }
        Ok(out)
    }

    async fn connect_write(&self, loaded: &Loaded, redactor: &Redactor) -> Result<Writers, CliError> {
        let mut out = Writers::new();
        for (id, cfg) in &loaded.desired.providers {
            let c = &self.connectors[cfg.system.as_str()];
            let w = c
                .connect_write(cfg, &loaded.desired.deployment)
                .await
                .map_err(|error| connect_error(id, cfg, error, redactor))?;
            out.insert(id.clone(), w);
        }
        Ok(out)
    }
}

/// How an error names a provider: by its block in the plan files.
fn provider_label(id: &str, cfg: &aspects_core::ProviderConfig) -> String {
    format!("[providers.{id}] at {}", cfg.origin)
}

fn connect_error(
    id: &str,
    cfg: &aspects_core::ProviderConfig,
    error: aspects_engine::ProviderError,
    redactor: &Redactor,
) -> CliError {
    let target = without_credentials(cfg.attrs.get("url").and_then(|v| v.as_str()).unwrap_or_default());
    scrub_cli(EngineError::Provider { provider: provider_label(id, cfg), target, error }.into(), redactor)
}

/// `scheme://host:port/path` of a provider URL: no user information and no query, where a
/// password could hide in any spelling (providers refuse those URLs; this is the second line).
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if scheme.is_empty() { host.to_owned() } else { format!("{scheme}://{host}") }
}

/// An engine error for the operator: a provider's failure (connecting, reading, locking,
/// writing) named by its block in the plan files, and no secret value.
fn scrubbed(e: EngineError, loaded: &Loaded, redactor: &Redactor) -> CliError {
    let e = match e {
        EngineError::Provider { provider, target, error } => {
            let provider =
                loaded.desired.providers.get(&provider).map_or(provider.clone(), |cfg| provider_label(&provider, cfg));
            EngineError::Provider { provider, target, error }
        }
        other => other,
    };
    scrub_cli(e.into(), redactor)
}

fn scrub_cli(e: CliError, redactor: &Redactor) -> CliError {
    match e {
        CliError::Message { message, hint } => {
            CliError::Message { message: redactor.scrub(&message), hint: hint.map(|h| redactor.scrub(&h)) }
        }
        other => other,
    }
}

/// The plan text, then each further section after exactly one blank line.
fn sections(plan: String, more: impl Iterator<Item = String>) {
    let mut out = plan;
    for section in more {
        out.truncate(out.trim_end().len());
        out.push_str("\n\n");
        out.push_str(&section);
    }
    print!("{out}");
}

/// Masks every value this run knows: those it loaded, and every value the secrets file keeps
/// (the old value of a secret being rotated is as secret as the new one).
fn redactor(loaded: &Loaded) -> Redactor {
    Redactor::new(loaded.secrets.iter().map(|s| s.value.clone()).chain(loaded.store.values()))
}

/// Every command that loads plan files shows their warnings first, on stderr (with `all`, every
/// one of a long run of alike warnings).
fn warned(loaded: Loaded, all: bool) -> Loaded {
    if !loaded.warnings.is_empty() {
        eprintln!("{}", loaded.render_warnings(all));
    }
    loaded
}

/// A plan may not re-key objects this deployment owns from a secret generated in this very run
/// (unless asked to). Otherwise generated secrets are saved, before any target uses them, and
/// the secrets lock is released; a refused run saves nothing, so the next one cannot silently
/// use values this one made.
fn accept_new_secrets(loaded: &mut Loaded, planned: &Planned, allow: bool) -> Result<(), CliError> {
    let generated = loaded.generated_now();
    if !allow {
        check_new_secrets(planned, &generated, &loaded.store.path().display().to_string())?;
    }
    loaded.save_secrets().map_err(|e| {
        let hint = e.hint();
        CliError::new(e.to_string()).hint(hint)
    })?;
    if !generated.is_empty() {
        eprintln!(
            "Generated {} {} into {} (mode 0600). Back this file up.",
            if generated.len() == 1 { "secret" } else { "secrets" },
            generated.into_iter().collect::<Vec<_>>().join(", "),
            loaded.store.path().display()
        );
    }
    Ok(())
}

/// Asks on the terminal, repeating the verdict: a long plan has scrolled it out of sight.
async fn confirm(verdict: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new("apply needs confirmation, but standard input is not a terminal")
            .hint("review the plan above and pass --auto-approve, or apply a saved plan: aspects plan --out FILE; aspects apply FILE"));
    }
    eprint!("\n{verdict}\nDo you want to perform these actions? Only 'yes' will be accepted.\n  Enter a value: ");
    let _ = std::io::stderr().flush();
    // Read off the runtime's one thread: while the operator reads the plan, the locks this run
    // holds must keep their leases alive (heartbeats are tasks on that thread).
    let read = tokio::task::spawn_blocking(|| {
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map(|_| answer)
    });
    let answer = read
        .await
        .map_err(|e| CliError::new(format!("cannot read the answer: {e}")))?
        .map_err(|e| CliError::new(format!("cannot read the answer: {e}")))?;
    if answer.trim() != "yes" {
        return Err(CliError::new("apply cancelled; nothing was changed"));
    }
    Ok(())
}

fn parse_targets(t: &Targets) -> Result<Vec<Address>, CliError> {
    t.targets.iter().map(|s| parse_address(s)).collect()
}

fn parse_address(s: &str) -> Result<Address, CliError> {
    Address::parse(s).ok_or_else(|| {
        CliError::new(format!("`{s}` is not a resource address"))
            .hint("addresses are KIND.NAME, e.g. mysql_user.superset")
    })
}

fn journal_path(plan: &Path) -> PathBuf {
    let stem = plan.file_stem().map_or("aspects".into(), |s| s.to_string_lossy().into_owned());
    plan.with_file_name(format!("{stem}.journal.jsonl"))
}

fn run_id() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}-{}", nanos, std::process::id())
}

fn describe(e: &Event) -> String {
    let ing = |a: Action| match a {
        Action::Create => "Creating...",
        Action::Update => "Modifying...",
        Action::Replace => "Replacing...",
        Action::Delete => "Destroying...",
        Action::Adopt => "Adopting...",
        Action::Release => "Releasing...",
        Action::NoOp => "Checking...",
    };
    let done = |a: Action| match a {
        Action::Create => "Creation complete",
        Action::Update => "Modifications complete",
        Action::Replace => "Replacement complete",
        Action::Delete => "Destruction complete",
        Action::Adopt => "Adoption complete",
        Action::Release => "Release complete",
        Action::NoOp => "Checked",
    };
    match e {
        Event::Started { address, action } => format!("{address}: {}", ing(*action)),
        Event::Done { address, action, ms } => format!("{address}: {} after {ms}ms", done(*action)),
        Event::Failed { address, error, hint, .. } => match hint {
            Some(h) => format!("{address}: Error: {error}\n  = hint: {h}"),
            None => format!("{address}: Error: {error}"),
        },
        Event::Skipped { address, because, .. } => format!("{address}: Skipped: {because}"),
        Event::OldSecretDiscarded { address, ms } => {
            format!("{address}: Old secret discarded after {ms}ms (every client uses the new one)")
        }
    }
}

/// "1 provider", "2 secrets".
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn outcome_line(r: &Report) -> String {
    let counts = format!("{} done, {} failed, {} skipped.", r.done.len(), r.failed.len(), r.skipped.len());
    if r.succeeded() {
        format!("Apply complete! {counts}")
    } else {
        format!("Apply failed: {counts} Fix the errors above and run apply again; it resumes from live state.")
    }
}

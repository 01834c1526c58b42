//! `aspects rotate` at the edge: which secrets a request names and what it refuses, the pending
//! values recorded before any target changes and promoted once every consumer converged, and how
//! a rotation is described to the operator. The ordering and the apply are the engine's
//! (`aspects_engine::rotate`); the secrets file is the config crate's.

use std::collections::BTreeSet;
use std::time::SystemTime;

use aspects_config::{Loaded, SecretSource, SecretState, SecretStore};
use aspects_core::render::verdict as plan_verdict;
use aspects_core::{Action, Address, Plan};
use aspects_engine::fault;
use aspects_engine::plan::Readers;
use aspects_engine::rotate::{Role, Rotation, RotationReport};
use aspects_engine::{SecretRotation, few};

use crate::cli::RotateArgs;
use crate::error::CliError;

/// The secrets `aspects rotate` was asked for.
pub struct Request {
    names: Vec<String>,
    /// `--all`: secrets that cannot be rotated are skipped (with a note), not refused.
    all: bool,
    generated: BTreeSet<String>,
}

impl Request {
    /// Checks the names against the secrets the plan uses (`declared` is loaded without reading
    /// any value).
    pub fn new(args: &RotateArgs, declared: &Loaded) -> Result<Self, CliError> {
        let used: Vec<&str> = declared.secrets.iter().map(|s| s.name.as_str()).collect();
        let names: Vec<String> = if args.all {
            used.iter().map(|s| s.to_string()).collect()
        } else {
            let mut names = Vec::new();
            for name in &args.names {
                let name = name.strip_prefix("secrets.").unwrap_or(name);
                if !used.contains(&name) {
                    let hint = aspects_config::did_you_mean(name, used.iter().copied())
                        .unwrap_or_else(|| format!("the secrets this plan uses: {}", used.join(", ")));
                    return Err(CliError::new(format!("the plan uses no secret `{name}`")).hint(hint));
                }
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
            names
        };
        let generated = declared
            .secrets
            .iter()
            .filter(|s| matches!(s.source, SecretSource::Generate(_)) && names.contains(&s.name))
            .map(|s| s.name.clone())
            .collect();
        Ok(Self { names, all: args.all, generated })
    }

    /// `generate` secrets that get a new value (unless one is already pending).
    pub fn generated(&self) -> BTreeSet<String> {
        self.generated.clone()
    }

    /// What the plan is limited to: everything that uses the secrets, with its dependencies.
    pub fn targets(&self) -> Vec<Address> {
        self.names.iter().map(Address::secret).collect()
    }

    /// The secrets asked for, and any rotation an earlier run left pending.
    pub fn rotating(&self, loaded: &Loaded) -> Vec<String> {
        let mut names = self.names.clone();
        names.extend(pending(loaded).into_iter().filter(|p| !self.names.contains(p)));
        names
    }

    /// Refuses (or, with `--all`, skips) what cannot be rotated: a secret nothing in the plan
    /// consumes, one never generated, an env or file secret whose source holds the value every
    /// consumer already uses.
    pub fn check(&self, found: Vec<Rotation>, loaded: &Loaded) -> Result<Vec<Rotation>, CliError> {
        let mut kept = Vec::new();
        for r in found {
            let Some(s) = loaded.secrets.iter().find(|s| s.name == r.secret) else { continue };
            let asked = self.names.contains(&r.secret);
            let refusal = match (&s.state, &s.source) {
                _ if !asked => None,
                (SecretState::Generated, _) => Some((
                    format!("secret `{}` has no value yet, so there is nothing to rotate", r.secret),
                    "`aspects apply` generates it".to_owned(),
                )),
                _ if r.consumers.is_empty() => Some((
                    format!("no resource uses secret `{}`; only provider blocks do", r.secret),
                    "aspects never changes the account it connects as: change that password on the server, then \
                     put the new value in the secret's source"
                        .to_owned(),
                )),
                (SecretState::Current, SecretSource::Env(_) | SecretSource::File(_)) if r.unconverged().is_empty() => {
                    Some((
                        format!(
                            "secret `{}` did not change: its source ({}) holds the value every consumer already uses",
                            r.secret, s.source
                        ),
                        "put the new value in the source first, then run rotate again; aspects makes new values \
                         only for `generate` secrets"
                            .to_owned(),
                    ))
                }
                _ => None,
            };
            match refusal {
                None => kept.push(r),
                Some((message, _)) if self.all => eprintln!("Skipping secrets.{}: {message}.", r.secret),
                Some((message, hint)) => return Err(CliError::new(message).hint(hint)),
            }
        }
        Ok(kept)
    }
}

/// Secrets whose rotation an earlier run left pending in the secrets file.
pub fn pending(loaded: &Loaded) -> Vec<String> {
    let pending = loaded.secrets.iter().filter(|s| matches!(s.state, SecretState::Pending { .. }));
    pending.map(|s| s.name.clone()).collect()
}

/// Refuses to write with values another run replaced since this one loaded them.
pub fn check_not_moved(loaded: &Loaded) -> Result<(), CliError> {
    let moved = loaded.secrets_moved().map_err(store_error)?;
    if moved.is_empty() {
        return Ok(());
    }
    Err(CliError::new(format!(
        "the secrets file {} changed since this run read it: another run rotated or generated {}",
        loaded.store.path().display(),
        few(&moved.iter().map(|s| format!("secrets.{s}")).collect::<Vec<_>>())
    ))
    .hint("nothing was changed; run the command again to plan with the current values"))
}

/// Records each rotation that starts now as pending (the new value of a `generate` secret, a
/// marker for an env or file one) before any target changes.
pub fn record_pending(loaded: &Loaded, found: &[Rotation]) -> Result<(), CliError> {
    let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let starting: Vec<_> = loaded
        .secrets
        .iter()
        .filter(|s| found.iter().any(|r| r.secret == s.name))
        .filter(|s| matches!(s.state, SecretState::Rotated | SecretState::Current))
        .collect();
    if starting.is_empty() {
        return Ok(());
    }
    SecretStore::update(loaded.store.path(), |store| {
        for s in &starting {
            let value = (s.state == SecretState::Rotated).then_some(&s.value);
            store.set_pending(&s.name, value, &started);
        }
    })
    .map_err(store_error)?;
    fault::after_write();
    Ok(())
}

/// Promotes the pending values of the rotations that converged.
pub fn promote(loaded: &Loaded, converged: &[String]) -> Result<(), CliError> {
    if converged.is_empty() {
        return Ok(());
    }
    SecretStore::update(loaded.store.path(), |store| converged.iter().for_each(|n| store.promote(n)))
        .map_err(store_error)?;
    fault::after_write();
    Ok(())
}

fn store_error(e: aspects_config::StoreError) -> CliError {
    let hint = e.hint();
    CliError::new(e.to_string()).hint(hint)
}

/// The plan's verdict, naming the rotations it carries out.
pub fn verdict(plan: &Plan, found: &[Rotation]) -> String {
    let base = plan_verdict(plan);
    if found.is_empty() {
        return base;
    }
    let names: Vec<String> = found.iter().map(|r| format!("secrets.{}", r.secret)).collect();
    format!("{base} Rotating {}.", names.join(", "))
}

/// Before applying: every consumer in the order the rotation touches it, and whether clients
/// can lose access on the way.
pub fn describe(r: &Rotation, loaded: &Loaded, readers: &Readers) -> String {
    let s = loaded.secrets.iter().find(|s| s.name == r.secret);
    let what = match s.map(|s| (&s.state, &s.source)) {
        Some((SecretState::Pending { started }, _)) => format!("finishing the rotation pending since {started}"),
        Some((_, SecretSource::Generate(_))) => "a new generated value".into(),
        Some((_, source)) => format!("the new value in {source}"),
        None => String::new(),
    };
    let mut out = format!("Rotating secrets.{} ({what}); its consumers, in the order they change:\n", r.secret);
    for (i, c) in r.consumers.iter().enumerate() {
        let role = match c.role {
            Role::Credential(SecretRotation::Dual) => {
                "credential: keeps accepting the old value until every client moved"
            }
            Role::Credential(SecretRotation::Replace) => "credential: holds one value, the old one stops working here",
            Role::Client => "client: presents or embeds the value",
        };
        let done = match (c.outside_target, c.action) {
            (true, _) => " (outside --target: not changed by this run)",
            (false, Action::NoOp) => " (already uses the new value)",
            _ => "",
        };
        out += &format!("  {}. {}: {role}{done}\n", i + 1, c.address);
    }
    let replaced: Vec<String> = r
        .consumers
        .iter()
        .filter(|c| c.role == Role::Credential(SecretRotation::Replace))
        .filter_map(|c| loaded.desired.resources.get(&c.address))
        .map(|res| format!("{} ({})", res.address, readers[&res.provider].target()))
        .collect();
    if !replaced.is_empty() {
        out += &format!(
            "Not zero-downtime: {} cannot hold two values at once; anything outside this plan that still uses the old \
             value fails from that step until it gets the new one.\n",
            few(&replaced)
        );
    }
    out
}

/// For plan and drift: a rotation an earlier run left unfinished.
pub fn unfinished(r: &Rotation, loaded: &Loaded) -> String {
    let since = loaded.secrets.iter().find(|s| s.name == r.secret).and_then(|s| match &s.state {
        SecretState::Pending { started } => Some(started.as_str()),
        _ => None,
    });
    let mut out = format!("Rotation of secrets.{} is unfinished (pending since {}).\n", r.secret, since.unwrap_or("?"));
    let left = r.unconverged();
    if left.is_empty() {
        out += "  Every consumer uses the new value, but the rotation was not completed: the old value is still kept \
                (and still accepted by credentials that hold two).\n";
    } else {
        out += &format!("  Not yet using the new value: {}.\n", few(&left));
    }
    out += &format!("  Run `aspects rotate {}` or `aspects apply` to finish it with the pending value.\n", r.secret);
    out
}

/// After applying: what each rotation came to.
pub fn outcome(loaded: &Loaded, report: &RotationReport) -> String {
    let file = loaded.store.path().display();
    let mut out = String::new();
    for name in &report.converged {
        out += &format!(
            "Rotated secrets.{name}: every consumer uses the new value; {file} no longer keeps the old one.\n"
        );
        for t in report.transitions.iter().filter(|t| &t.secret == name) {
            out += &match t.rotation {
                SecretRotation::Dual => {
                    format!("  {}: old and new value both accepted for {} ms, no downtime\n", t.address, t.ms)
                }
                SecretRotation::Replace => {
                    format!("  {}: in transition for {} ms (old value refused from its change on)\n", t.address, t.ms)
                }
            };
        }
    }
    for (name, left) in &report.unfinished {
        out += &format!(
            "Rotation of secrets.{name} is unfinished: {} did not converge. The new value stays pending in {file}; fix \
             the errors above and run `aspects rotate {name}` again: it reuses the pending value.\n",
            few(left)
        );
    }
    out.trim_end().to_owned()
}

//! Human plan output: the verdict first, a legend of the symbols used, then one block per change
//! showing only what changes. Colour goes through semantic [`Label`]s so the same text reads
//! without colour (NO_COLOR, pipes).

use std::fmt::Write;

use similar::ChangeTag;

use crate::diff::{Action, AttrChange, Change, Plan};
use crate::resource::Address;
use crate::secret::REDACTED;
use crate::text::Text;
use crate::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Create,
    Update,
    Delete,
    Replace,
    Adopt,
    Warning,
    Dim,
    Heading,
}

impl Label {
    fn ansi(self) -> &'static str {
        match self {
            Label::Create => "32",
            Label::Update => "33",
            Label::Delete => "31",
            Label::Replace => "35",
            Label::Adopt => "36",
            Label::Warning => "1;33",
            Label::Dim => "2",
            Label::Heading => "1",
        }
    }

    pub fn for_action(a: Action) -> Self {
        match a {
            Action::Create => Label::Create,
            Action::Update => Label::Update,
            Action::Delete => Label::Delete,
            Action::Replace => Label::Replace,
            Action::Adopt | Action::Release | Action::NoOp => Label::Adopt,
        }
    }
}

/// Paints text by label, or leaves it alone.
#[derive(Clone, Copy, Debug)]
pub struct Painter {
    pub colour: bool,
}

impl Painter {
    pub fn paint(&self, label: Label, text: &str) -> String {
        if self.colour && !text.is_empty() { format!("\x1b[{}m{text}\x1b[0m", label.ansi()) } else { text.to_owned() }
    }
}

/// "Plan: 1 to add, 2 to change, 0 to destroy." or "No changes. ..."
pub fn verdict(plan: &Plan) -> String {
    if !plan.has_changes() {
        return "No changes. Live state matches the plan.".into();
    }
    let s = plan.summary();
    let mut out = format!("Plan: {} to add, {} to change, {} to destroy", s.add, s.change, s.destroy);
    if s.adopt > 0 {
        let _ = write!(out, ", {} to adopt", s.adopt);
    }
    if s.release > 0 {
        let _ = write!(out, ", {} to release", s.release);
    }
    out.push('.');
    out
}

pub fn render_plan(plan: &Plan, p: Painter) -> String {
    let mut out = String::new();
    out.push_str(&p.paint(Label::Heading, &verdict(plan)));
    out.push('\n');
    if let Some(targets) = &plan.targets {
        let (secrets, resources): (Vec<&Address>, Vec<&Address>) = targets.iter().partition(|a| a.is_secret());
        let list = |l: &[&Address]| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !resources.is_empty() {
            parts.push(format!("{} and what it depends on", list(&resources)));
        }
        if !secrets.is_empty() {
            parts.push(format!("what uses {} (with its dependencies)", list(&secrets)));
        }
        let line = format!("Partial plan: only {}.", parts.join("; "));
        let _ = writeln!(out, "{}", p.paint(Label::Warning, &line));
    }
    if !plan.has_changes() {
        return out;
    }
    let mut used: Vec<Action> = plan.changes.iter().map(|c| c.action).filter(|a| *a != Action::NoOp).collect();
    used.sort();
    used.dedup();
    let legend: Vec<String> = used
        .iter()
        .map(|a| {
            let word = match a {
                Action::Create => "create",
                Action::Update => "update in place",
                Action::Delete => "destroy",
                Action::Replace => "replace",
                Action::Adopt => "adopt",
                Action::Release => "release (stop owning, keep the object)",
                Action::NoOp => "",
            };
            format!("{} {word}", p.paint(Label::for_action(*a), a.symbol()))
        })
        .collect();
    let _ = writeln!(out, "\nSymbols: {}\n", legend.join(", "));
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        render_change(&mut out, c, p);
        out.push('\n');
    }
    for c in plan.destroys_data() {
        let _ = writeln!(
            out,
            "{} {} holds data: applying this plan needs --allow-destroy.",
            p.paint(Label::Warning, "Warning:"),
            c.address
        );
    }
    out
}

fn render_change(out: &mut String, c: &Change, p: Painter) {
    let label = Label::for_action(c.action);
    let mut verb = c.action.verb().to_owned();
    if c.adopt && matches!(c.action, Action::Update | Action::Replace) {
        verb = format!("will be adopted and {}", verb.trim_start_matches("will be ").trim_start_matches("must be "));
    }
    let mut header = format!("  # {} {verb}", c.address);
    if let Some(reason) = &c.reason {
        let _ = write!(header, " ({reason})");
    }
    let _ = writeln!(out, "{}", p.paint(Label::Heading, &header));
    let _ = writeln!(out, "{:>3} {} {{", p.paint(label, c.action.symbol()), c.address);
    let width = c.attrs.iter().chain(&c.unchanged).map(|a| a.name.len()).max().unwrap_or(0);
    for a in &c.attrs {
        render_attr(out, c.action, a, width, p);
    }
    // What an adoption takes over, unchanged: identity and current attributes, no sign.
    for a in &c.unchanged {
        let value = match &a.after {
            // A text built around a secret shows its masked form.
            Some(v @ Value::Sensitive(_)) => v.to_string(),
            _ if a.sensitive => REDACTED.to_owned(),
            Some(v) => v.to_string(),
            None => continue,
        };
        let _ = writeln!(out, "        {:width$} = {value}", a.name);
    }
    out.push_str("    }\n");
}

fn render_attr(out: &mut String, action: Action, a: &AttrChange, width: usize, p: Painter) {
    let (sym, label) = if a.after.is_none() {
        ("-", Label::Delete)
    } else if action == Action::Create || (a.before.is_none() && !a.sensitive) {
        ("+", Label::Create)
    } else {
        ("~", Label::Update)
    };
    let name = format!("{:width$}", a.name);
    let forces = if a.forces_replace { p.paint(Label::Replace, " # forces replacement") } else { String::new() };
    let sign = p.paint(label, sym);
    if a.sensitive {
        // Texts built around a secret (a connection URI) show their masked form.
        let shown = |v: Option<&Value>| v.and_then(Value::as_secret).and_then(|s| s.shown()).map(|s| format!("{s:?}"));
        let (before, after) = (shown(a.before.as_ref()), shown(a.after.as_ref()));
        let text = match &a.unverifiable {
            _ if a.after.is_none() => before.unwrap_or_else(|| REDACTED.to_owned()),
            _ if matches!(action, Action::Create | Action::Replace) => after.unwrap_or_else(|| REDACTED.to_owned()),
            Some(why) => format!("(sensitive, cannot verify: {why})"),
            None => match (before, after) {
                (Some(b), Some(n)) if b != n => format!("{b} -> {n}"),
                (_, Some(n)) => format!("{n} (secret part changed)"),
                _ => "(sensitive, changed)".to_owned(),
            },
        };
        let _ = writeln!(out, "      {sign} {name} = {text}{forces}");
        return;
    }
    let empty = serde_json::Value::Object(serde_json::Map::new());
    match (&a.before, &a.after) {
        // A new document of many keys (an asset bundle) shows one line per key, not one line.
        (b @ (Some(Value::Json(_)) | None), Some(Value::Json(n))) if b.is_some() || n.is_object() => {
            let b = match b {
                Some(Value::Json(b)) => b,
                _ => &empty,
            };
            let _ = writeln!(out, "      {sign} {name} = {{{forces}");
            let mut lines = Vec::new();
            json_diff(&mut lines, "", b, n);
            for (s, line) in lines {
                let l = match s {
                    '+' => Label::Create,
                    '-' => Label::Delete,
                    _ => Label::Update,
                };
                let _ = writeln!(out, "          {} {line}", p.paint(l, &s.to_string()));
            }
            out.push_str("        }\n");
        }
        (Some(Value::Sql(b)), Some(Value::Sql(n))) => {
            let _ = writeln!(out, "      {sign} {name} = <<SQL{forces}");
            let (b, n) = (Text::plain(b.as_str()), Text::plain(n.as_str()));
            line_diff(out, &b, &n, p);
            out.push_str("        SQL\n");
        }
        (b @ (Some(Value::Text(_)) | None), Some(Value::Text(n))) => {
            let empty = Text::default();
            let b = match b {
                Some(Value::Text(b)) => b,
                _ => &empty,
            };
            let _ = writeln!(out, "      {sign} {name} = <<TEXT{forces}");
            line_diff(out, b, n, p);
            out.push_str("        TEXT\n");
        }
        (Some(b), Some(n)) => {
            let _ = writeln!(out, "      {sign} {name} = {b} -> {n}{forces}");
        }
        (None, Some(n)) | (Some(n), None) => {
            let _ = writeln!(out, "      {sign} {name} = {n}{forces}");
        }
        (None, None) => {}
    }
}

/// A unified line diff: plaintext lines are compared, their masked forms printed, so a changed
/// secret shows as a changed line without its value.
fn line_diff(out: &mut String, before: &Text, after: &Text, p: Painter) {
    let (b, n) = (before.lines(), after.lines());
    let bp: Vec<&str> = b.iter().map(|(t, _)| *t).collect();
    let np: Vec<&str> = n.iter().map(|(t, _)| *t).collect();
    let diff = similar::capture_diff_slices(similar::Algorithm::Myers, &bp, &np);
    for op in diff {
        for ch in op.iter_changes(&bp, &np) {
            let (s, l, line) = match ch.tag() {
                ChangeTag::Insert => ("+", Label::Create, &n[ch.new_index().unwrap_or_default()].1),
                ChangeTag::Delete => ("-", Label::Delete, &b[ch.old_index().unwrap_or_default()].1),
                ChangeTag::Equal => (" ", Label::Dim, &b[ch.old_index().unwrap_or_default()].1),
            };
            let _ = writeln!(out, "          {} {}", p.paint(l, s), line.trim_end_matches('\n'));
        }
    }
}

/// A JSON value on one plan line: an object or array longer than a line is summarised.
fn brief(v: &serde_json::Value) -> String {
    let text = v.to_string();
    match v {
        serde_json::Value::Object(m) if text.len() > 80 => format!("{{… {} keys}}", m.len()),
        serde_json::Value::Array(a) if text.len() > 80 => format!("[… {} items]", a.len()),
        _ => text,
    }
}

/// Structural diff of two JSON documents: one line per changed leaf path.
fn json_diff(out: &mut Vec<(char, String)>, path: &str, before: &serde_json::Value, after: &serde_json::Value) {
    use serde_json::Value as J;
    let join = |key: &str| {
        if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
    };
    match (before, after) {
        (J::Object(b), J::Object(a)) => {
            for (k, bv) in b {
                match a.get(k) {
                    Some(av) => json_diff(out, &join(k), bv, av),
                    None => out.push(('-', format!("{}: {}", join(k), brief(bv)))),
                }
            }
            for (k, av) in a {
                if !b.contains_key(k) {
                    out.push(('+', format!("{}: {}", join(k), brief(av))));
                }
            }
        }
        (J::Array(b), J::Array(a)) => {
            for i in 0..b.len().max(a.len()) {
                let p = format!("{path}[{i}]");
                match (b.get(i), a.get(i)) {
                    (Some(bv), Some(av)) => json_diff(out, &p, bv, av),
                    (Some(bv), None) => out.push(('-', format!("{p}: {}", brief(bv)))),
                    (None, Some(av)) => out.push(('+', format!("{p}: {}", brief(av)))),
                    (None, None) => {}
                }
            }
        }
        (b, a) if b != a => {
            out.push(('~', format!("{}: {} -> {}", if path.is_empty() { "." } else { path }, brief(b), brief(a))))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Address;
    use crate::secret::Secret;

    fn change(action: Action, attrs: Vec<AttrChange>) -> Change {
        Change {
            address: Address::new("mysql_user", "superset"),
            provider: "mysql".into(),
            action,
            attrs,
            reason: None,
            old_identity: None,
            data_bearing: false,
            adopt: false,
            unchanged: vec![],
            origin: None,
            depends_on: vec![],
        }
    }

    fn attr(name: &str, before: Option<Value>, after: Option<Value>) -> AttrChange {
        let sensitive = before.as_ref().or(after.as_ref()).is_some_and(Value::is_sensitive);
        AttrChange { name: name.into(), before, after, forces_replace: false, sensitive, unverifiable: None }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan { deployment: "t".into(), changes, targets: None }
    }

    const NO_COLOUR: Painter = Painter { colour: false };

    #[test]
    fn no_changes_is_one_line() {
        insta::assert_snapshot!(render_plan(&plan(vec![change(Action::NoOp, vec![])]), NO_COLOUR), @"No changes. Live state matches the plan.");
    }

    #[test]
    fn create_update_and_sensitive_markers() {
        let p = plan(vec![
            change(
                Action::Create,
                vec![
                    attr("user", None, Some("superset".into())),
                    attr("password", None, Some(Value::Sensitive(Secret::new("s3cret-one")))),
                ],
            ),
            change(
                Action::Update,
                vec![
                    attr("charset", Some("latin1".into()), Some("utf8mb4".into())),
                    attr("password", None, Some(Value::Sensitive(Secret::new("s3cret-two")))),
                ],
            ),
        ]);
        let text = render_plan(&p, NO_COLOUR);
        assert!(!text.contains("s3cret"));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_secret_inside_a_uri_is_masked_and_the_rest_shown() {
        let uri = |pw: &str, host: &str| {
            let shown = format!("db+driver://u:(sensitive)@{host}/x");
            Some(Value::Sensitive(Secret::with_shown(format!("db+driver://u:{pw}@{host}/x"), shown)))
        };
        let p = plan(vec![
            change(Action::Create, vec![attr("sqlalchemy_uri", None, uri("s3cret-a", "h1"))]),
            change(Action::Update, vec![attr("sqlalchemy_uri", uri("s3cret-a", "h1"), uri("s3cret-b", "h2"))]),
            change(Action::Update, vec![attr("sqlalchemy_uri", uri("s3cret-a", "h2"), uri("s3cret-b", "h2"))]),
        ]);
        let text = render_plan(&p, NO_COLOUR);
        assert!(!text.contains("s3cret"), "{text}");
        insta::assert_snapshot!(text, @r#"
        Plan: 1 to add, 2 to change, 0 to destroy.

        Symbols: + create, ~ update in place

          # mysql_user.superset will be created
          + mysql_user.superset {
              + sqlalchemy_uri = "db+driver://u:(sensitive)@h1/x"
            }

          # mysql_user.superset will be updated in place
          ~ mysql_user.superset {
              ~ sqlalchemy_uri = "db+driver://u:(sensitive)@h1/x" -> "db+driver://u:(sensitive)@h2/x"
            }

          # mysql_user.superset will be updated in place
          ~ mysql_user.superset {
              ~ sqlalchemy_uri = "db+driver://u:(sensitive)@h2/x" (secret part changed)
            }
        "#);
    }

    #[test]
    fn json_is_diffed_by_path_and_sql_by_line() {
        let before = serde_json::json!({"metrics": [{"label": "a"}], "x": 1, "same": true});
        let after = serde_json::json!({"metrics": [{"label": "b"}], "color": "red", "same": true});
        let p = plan(vec![change(
            Action::Update,
            vec![
                attr(
                    "params",
                    Some(Value::Json(std::sync::Arc::new(before))),
                    Some(Value::Json(std::sync::Arc::new(after))),
                ),
                attr(
                    "sql",
                    Some(Value::Sql("SELECT a\nFROM t\nWHERE x\n".into())),
                    Some(Value::Sql("SELECT a\nFROM u\nWHERE x\n".into())),
                ),
            ],
        )]);
        insta::assert_snapshot!(render_plan(&p, NO_COLOUR));
    }

    #[test]
    fn a_new_document_shows_one_line_per_key_and_long_values_briefly() {
        let long: serde_json::Map<String, serde_json::Value> =
            (0..12).map(|i| (format!("key_{i}"), serde_json::json!("a value of some length"))).collect();
        let doc = serde_json::json!({"chart 1 \"A\"": long, "chart 2 \"B\"": {"x": 1}});
        let p =
            plan(vec![change(Action::Create, vec![attr("assets", None, Some(Value::Json(std::sync::Arc::new(doc))))])]);
        let shown = render_plan(&p, NO_COLOUR);
        assert!(shown.contains("+ chart 1 \"A\": {… 12 keys}"), "{shown}");
        assert!(shown.contains("+ chart 2 \"B\": {\"x\":1}"), "{shown}");
    }

    #[test]
    fn an_adoption_shows_what_it_takes_over() {
        let mut adopt = change(Action::Adopt, vec![]);
        adopt.adopt = true;
        adopt.unchanged = vec![
            attr("user", Some("superset".into()), Some("superset".into())),
            attr("host", Some("%".into()), Some("%".into())),
            attr("password", None, Some(Value::Sensitive(Secret::new("s3cret-three")))),
        ];
        let text = render_plan(&plan(vec![adopt]), NO_COLOUR);
        assert!(!text.contains("s3cret"));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn colour_only_when_asked() {
        let p = plan(vec![change(Action::Delete, vec![attr("name", Some("a".into()), None)])]);
        assert!(!render_plan(&p, NO_COLOUR).contains('\x1b'));
        assert!(render_plan(&p, Painter { colour: true }).contains("\x1b[31m-\x1b[0m"));
    }
}

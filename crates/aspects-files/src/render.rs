//! Rendering a file's template with its `context`, as Tutor does (Jinja, undefined names are
//! errors, no autoescaping), into a [`Text`] whose secret spans are marked.

use std::collections::BTreeMap;
use std::path::Path;

use aspects_core::{Redactor, Resource, Secret, Text, Value};
use minijinja::{Environment, UndefinedBehavior};

/// The rendered content of a `file` resource, or why it cannot be rendered (secrets scrubbed).
pub fn render(resource: &Resource, templates: Option<&Path>) -> Result<Text, String> {
    let env = environment(templates);
    let mut secrets = Vec::new();
    let real = jinja_context(resource.get("context"), &mut secrets, false);
    let render =
        |context: &BTreeMap<String, minijinja::Value>| match (resource.str("content"), resource.str("template")) {
            (Some(inline), _) => env.render_str(inline, context),
            (None, Some(name)) => env.get_template(name).and_then(|t| t.render(context)),
            (None, None) => Ok(String::new()),
        };
    if let (None, Some(name), None) = (resource.str("content"), resource.str("template"), templates) {
        return Err(format!(
            "template {name:?} needs the provider's `templates` folder; set templates = \"...\" in [providers.files]"
        ));
    }
    let text = render(&real).map_err(|e| error_message(&e, &secrets))?;
    let mut marked = Text::with_secrets(text.as_str(), &secrets);
    if !secrets.is_empty() {
        // Rendered again with every secret swapped for a decoy of its shape: whatever differs is
        // derived from a secret, however a filter transformed it (`|upper`, `|tojson` with
        // escapes, `|replace`), and is masked too.
        let decoy = render(&jinja_context(resource.get("context"), &mut Vec::new(), true))
            .map_err(|e| error_message(&e, &secrets))?;
        for span in differing(&text, &decoy) {
            marked.add_span(span);
        }
    }
    Ok(marked)
}

/// Byte ranges of `real` that differ from `other`, line by line (each line's middle between
/// the common prefix and suffix); everything between the first and last difference when the
/// two have different line counts.
fn differing(real: &str, other: &str) -> Vec<std::ops::Range<usize>> {
    let middle = |a: &str, b: &str, offset: usize| -> Option<std::ops::Range<usize>> {
        let prefix =
            a.char_indices().zip(b.chars()).find(|((_, x), y)| x != y).map_or(a.len().min(b.len()), |((i, _), _)| i);
        if prefix == a.len() && a.len() == b.len() {
            return None;
        }
        let suffix = a[prefix..]
            .chars()
            .rev()
            .zip(b[prefix..].chars().rev())
            .take_while(|(x, y)| x == y)
            .map(|(x, _)| x.len_utf8())
            .sum::<usize>();
        Some(offset + prefix..offset + (a.len() - suffix).max(prefix))
    };
    if real.lines().count() != other.lines().count() {
        return middle(real, other, 0).into_iter().collect();
    }
    let mut offset = 0;
    let mut spans = Vec::new();
    for (a, b) in real.split_inclusive('\n').zip(other.split_inclusive('\n')) {
        spans.extend(middle(a, b, offset));
        offset += a.len();
    }
    spans
}

/// The Jinja environment of every template aspects renders (Tutor's semantics: undefined names
/// are errors, no autoescaping, the trailing newline kept), `include` reading from `templates`.
/// An include name with `..` or a leading `/` is refused with a message saying so (minijinja's
/// own loader would only say "not found").
pub fn environment(templates: Option<&Path>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // minijinja escapes `.yml`/`.json` templates by default; Jinja as Tutor runs it never does.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    if let Some(dir) = templates {
        let load = minijinja::path_loader(dir);
        env.set_loader(move |name: &str| {
            if name.starts_with('/') || name.split(['/', '\\']).any(|part| part == "..") {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("include {name:?} leaves the templates folder; name files inside it"),
                ));
            }
            load(name)
        });
    }
    env
}

/// A `context` attribute as template variables; its secrets are exposed to the template and
/// collected into `secrets`, so the caller can mark or scrub them.
pub fn context(context: Option<&Value>, secrets: &mut Vec<Secret>) -> BTreeMap<String, minijinja::Value> {
    jinja_context(context, secrets, false)
}

/// [`context`], or with `decoy` every secret replaced by a value of the same shape that differs
/// at every character.
fn jinja_context(
    context: Option<&Value>,
    secrets: &mut Vec<Secret>,
    decoy: bool,
) -> BTreeMap<String, minijinja::Value> {
    match context {
        Some(Value::Map(m)) => m.iter().map(|(k, v)| (k.clone(), to_jinja(v, secrets, decoy))).collect(),
        _ => BTreeMap::new(),
    }
}

fn decoy_of(secret: &str) -> String {
    let shift =
        |c: char, first: char, n: u32| char::from_u32(first as u32 + (c as u32 - first as u32 + 1) % n).unwrap_or(c);
    secret
        .chars()
        .map(|c| match c {
            'a'..='z' => shift(c, 'a', 26),
            'A'..='Z' => shift(c, 'A', 26),
            '0'..='9' => shift(c, '0', 10),
            _ => 'x',
        })
        .collect()
}

/// A template error with its causes, the given secrets scrubbed (an error may quote a value).
pub fn error_message(e: &minijinja::Error, secrets: &[Secret]) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    Redactor::new(secrets.to_vec()).scrub(&msg)
}

/// A plan value as a template value; secrets are exposed to the template (the file needs them)
/// and collected, so their spans in the output are marked.
fn to_jinja(v: &Value, secrets: &mut Vec<Secret>, decoy: bool) -> minijinja::Value {
    match v {
        Value::Str(s) | Value::Sql(s) => minijinja::Value::from(s.as_str()),
        Value::Int(i) => minijinja::Value::from(*i),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::List(l) => l.iter().map(|i| to_jinja(i, secrets, decoy)).collect::<Vec<_>>().into(),
        Value::Map(m) => {
            m.iter().map(|(k, i)| (k.clone(), to_jinja(i, secrets, decoy))).collect::<BTreeMap<_, _>>().into()
        }
        Value::Json(j) => minijinja::Value::from_serialize(&**j),
        Value::Sensitive(s) if decoy => minijinja::Value::from(decoy_of(s.expose())),
        Value::Sensitive(s) => {
            secrets.push(s.clone());
            minijinja::Value::from(s.expose())
        }
        Value::Text(t) => minijinja::Value::from(t.expose()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str, context: Vec<(&str, Value)>) -> Resource {
        let context = context.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Resource {
            attrs: [("content".to_owned(), Value::from(content)), ("context".to_owned(), Value::Map(context))].into(),
            ..Resource::default()
        }
    }

    #[test]
    fn tutor_syntax_renders_and_secrets_are_spans() {
        let r = file(
            "db={{ RALPH_DATABASE }}\n{% if RUN_RALPH %}pw={{ PW }}{% endif %}\nup={{ RALPH_DATABASE|upper }}\n",
            vec![
                ("RALPH_DATABASE", Value::from("xapi")),
                ("RUN_RALPH", Value::Bool(true)),
                ("PW", Value::Sensitive(Secret::new("s3cr3t-value"))),
            ],
        );
        let t = render(&r, None).unwrap();
        assert_eq!(t.expose(), "db=xapi\npw=s3cr3t-value\nup=XAPI\n");
        assert_eq!(t.masked(), "db=xapi\npw=(sensitive)\nup=XAPI\n");
    }

    #[test]
    fn yaml_and_json_templates_are_not_escaped_and_tojson_is_there() {
        let dir = std::env::temp_dir().join(format!("aspects-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yml.j2"), "{{ NAME|upper }}_X: {{ LIST|tojson }}\n").unwrap();
        let mut r = file("", vec![("NAME", Value::from("tag")), ("LIST", Value::List(vec![Value::from("a\"b")]))]);
        r.attrs.remove("content");
        r.attrs.insert("template".to_owned(), Value::from("a.yml.j2"));
        let t = render(&r, Some(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(t.unwrap().expose(), "TAG_X: [\"a\\\"b\"]\n");
    }

    #[test]
    fn a_secret_transformed_by_a_filter_is_masked_too() {
        let r = file(
            "a={{ PW|upper }}\nb={{ PW|tojson }} c={{ PW|replace('-', '_') }} end\nkeep={{ NAME }}\n",
            vec![("PW", Value::Sensitive(Secret::new("s3cr3t-\"value"))), ("NAME", Value::from("xapi"))],
        );
        let t = render(&r, None).unwrap();
        assert_eq!(t.expose(), "a=S3CR3T-\"VALUE\nb=\"s3cr3t-\\\"value\" c=s3cr3t_\"value end\nkeep=xapi\n");
        // Within a line, everything from the first to the last secret-derived byte is masked.
        assert_eq!(t.masked(), "a=(sensitive)\nb=\"(sensitive) end\nkeep=xapi\n");
    }

    #[test]
    fn undefined_names_are_errors_without_secrets() {
        let r = file("{{ PW }} {{ MISSING }}", vec![("PW", Value::Sensitive(Secret::new("s3cr3t-value")))]);
        let e = render(&r, None).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        assert!(!e.contains("s3cr3t"));
    }
}

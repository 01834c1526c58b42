//! `superset_rls_filter` and `superset_embedded_dashboard` end to end, over the project's asset
//! bundle (fixtures/superset-assets) with one locale, on the stack's real Superset 6.1.0 and its
//! metadata database on the stack's MariaDB (embedded dashboards are written there: Superset's
//! API cannot choose their UUID). Every test skips outside CI when the stack has no Superset.

use std::path::{Path, PathBuf};

use aspects_e2e::superset::{ADMIN_PASSWORD_ENV, Api, Ss, apply, assert_no_changes, plan, run, stack, uuid};
use aspects_e2e::{Sandbox, assert_no_secret};
use reqwest::Method;
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/superset-assets").canonicalize().unwrap()
}

/// The embedded UUID of the sandbox's dashboard (its own, so parallel tests never share one).
fn embed_uuid(s: &Sandbox) -> String {
    format!("{}-0000-4000-8000-00000000e000", &uuid(s)[..8])
}

/// The password of the sandbox's metadata login (a secret of its plan, from the environment).
const META_PASSWORD: &str = "Meta-Login-Pw-31";

/// A login of the sandbox's own on the stack's metadata database, with exactly the privileges
/// the README names, and its URL (no password in it).
fn metadata_login(s: &Sandbox) -> String {
    let user = format!("{}meta", s.prefix);
    aspects_e2e::sql(&[
        &format!("CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{META_PASSWORD}'"),
        &format!("GRANT SELECT ON superset.dashboards TO '{user}'@'%'"),
        &format!("GRANT SELECT, INSERT, DELETE ON superset.embedded_dashboards TO '{user}'@'%'"),
    ]);
    let server = aspects_e2e::mysql_url();
    let address = server.trim_start_matches("mysql://").split_once('@').map_or("", |(_, a)| a).trim_end_matches('/');
    format!("mysql://{user}@{address}/superset")
}

/// Roles for the dashboard and its `fr` copy, a ClickHouse database of the sandbox's own (the
/// schema its datasets are in, so `@@db.*` selects only them), the bundle, a filter and an
/// embedding. `extra` is appended.
fn body(s: &Sandbox, folder: &Path, extra: &str) -> String {
    let ch = aspects_e2e::clickhouse::url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    format!(
        r#"
[clickhouse_database.db]
name = "@@db"

[superset_role.viewer]
name = "@@Viewer"

[superset_role.viewer_fr]
name = "@@Viewer - fr"

[superset_assets.fixture]
name = "fixture"
directory = "{dir}/assets"
templates = "{dir}"
context = {{ ID = "{id}", PREFIX = "@@", CLICKHOUSE_DATABASE = "${{clickhouse_database.db.name}}", DASHBOARD_ROLE = "${{superset_role.viewer.name}}", CLICKHOUSE_URI = "clickhousedb+connect://default:${{secrets.report}}@{ch}/default" }}
locales = ["fr"]
depends_on = ["superset_role.viewer_fr"]

[superset_rls_filter.courses]
name = "@@can_view_courses"
tables = ["${{clickhouse_database.db.name}}.*"]
roles = ["${{superset_role.viewer.name}}"]
group_key = "xapi_course_id"
clause = "{{{{ can_view_courses(current_username(), \"course_key\") }}}}"
depends_on = ["superset_assets.fixture"]

[superset_embedded_dashboard.fixture]
uuid = "{embed}"
dashboard = "@@fixture"
allowed_domains = ["http://lms.example.com"]
locales = ["fr"]
depends_on = ["superset_assets.fixture"]
{extra}"#,
        dir = folder.display(),
        id = &uuid(s)[..8],
        embed = embed_uuid(s),
    )
}

fn write_plan(s: &Sandbox, folder: &Path, extra: &str) {
    let text = plan(s, "report = { generate = 24 }\nmeta = { env = \"META_PW\" }\n", &body(s, folder, extra));
    let provider = format!("metadata_url = \"{}\"\nmetadata_password = \"${{secrets.meta}}\"\n", metadata_login(s));
    s.write("aspects.toml", &text.replacen("[providers.superset]\n", &format!("[providers.superset]\n{provider}"), 1));
}

/// A Superset sandbox whose metadata login goes with it.
struct Sec(Ss);

impl Drop for Sec {
    fn drop(&mut self) {
        aspects_e2e::sql(&[&format!("DROP USER IF EXISTS '{}meta'@'%'", self.0.prefix)]);
    }
}

impl std::ops::Deref for Sec {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

fn sandbox(name: &str) -> Option<Sec> {
    let (_, _, admin) = stack()?;
    let mut s = Sandbox::new(name);
    s.set_env(ADMIN_PASSWORD_ENV, &admin);
    s.set_env("META_PW", META_PASSWORD);
    write_plan(&s, &fixture(), "");
    Some(Sec(Ss(s)))
}

/// The sandbox's filter as Superset lists it.
fn filter(api: &Api, s: &Sandbox) -> Value {
    let rows = api.list("/api/v1/rowlevelsecurity/", "name", &s.prefix);
    assert_eq!(rows.len(), 1, "{rows:?}");
    api.get(&format!("/api/v1/rowlevelsecurity/{}", rows[0]["id"]))["result"].clone()
}

fn tables(filter: &Value) -> Vec<String> {
    let mut out: Vec<String> = filter["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}.{}", t["schema"].as_str().unwrap(), t["table_name"].as_str().unwrap()))
        .collect();
    out.sort();
    out
}

/// The dashboard an embedded UUID shows, by Superset's own API (what the LMS asks for), or None.
fn embedded(api: &Api, uuid: &str) -> Option<Value> {
    let (status, body) = api.call(Method::GET, &format!("/api/v1/embedded_dashboard/{uuid}"), None);
    status.is_success().then(|| body["result"].clone())
}

fn dashboard_id(api: &Api, slug: &str) -> String {
    api.get(&format!("/api/v1/dashboard/{slug}"))["result"]["id"].to_string()
}

/// Aspects' localized UUID of `base` for `fr`, from the dashboard the row points at.
fn fr_uuid(s: &Sandbox) -> String {
    let rows = aspects_e2e::query_one(&format!(
        "SELECT LOWER(HEX(e.uuid)) FROM superset.embedded_dashboards e JOIN superset.dashboards d \
         ON d.id = e.dashboard_id WHERE d.slug = '{}fixture-fr'",
        s.prefix
    ))
    .expect("the fr copy is embedded");
    format!("{}-{}-{}-{}-{}", &rows[..8], &rows[8..12], &rows[12..16], &rows[16..20], &rows[20..])
}

#[test]
fn filters_and_embeddings_apply_then_plan_empty_and_drift_is_reverted() {
    let Some(s) = sandbox("sss-apply") else { return };
    let applied = apply(&s);
    let again = assert_no_changes(&s);
    let api = Api::new();
    let p = &s.prefix;

    // Every dataset of the schema: the virtual one and its fr copy.
    let schema = [format!("{p}db.{p}course_events"), format!("{p}db.{p}course_events_fr")];
    let f = filter(&api, &s);
    assert_eq!(tables(&f), schema, "{f}");
    assert_eq!(f["roles"][0]["name"], format!("{p}Viewer"));
    assert_eq!(f["clause"], "{{ can_view_courses(current_username(), \"course_key\") }}");
    assert_eq!(f["filter_type"], "Regular");

    // The LMS's UUID shows the dashboard, and the fr copy's the copy (uuid5 of the base UUID).
    let e = embedded(&api, &embed_uuid(&s)).expect("the fixed UUID is embedded");
    assert_eq!(e["dashboard_id"].as_str().unwrap(), dashboard_id(&api, &format!("{p}fixture")));
    assert_eq!(e["allowed_domains"], json!(["http://lms.example.com"]));
    let fr = fr_uuid(&s);
    assert_eq!(
        embedded(&api, &fr).unwrap()["dashboard_id"].as_str().unwrap(),
        dashboard_id(&api, &format!("{p}fixture-fr"))
    );

    // By hand: the filter loses its tables and gains a role; the embedding its domains.
    let id = f["id"]
        .as_i64()
        .unwrap_or_else(|| api.id("/api/v1/rowlevelsecurity/", "name", &format!("{p}can_view_courses")));
    let gamma = api.id("/api/v1/security/roles/", "name", "Gamma");
    let viewer = api.id("/api/v1/security/roles/", "name", &format!("{p}Viewer"));
    let by_hand = json!({"name": f["name"], "filter_type": "Regular", "tables": [], "roles": [viewer, gamma],
        "clause": f["clause"], "group_key": "xapi_course_id", "description": ""});
    let (status, answer) = api.call(Method::PUT, &format!("/api/v1/rowlevelsecurity/{id}"), Some(by_hand));
    assert!(status.is_success(), "{answer}");
    let dash = dashboard_id(&api, &format!("{p}fixture"));
    let (status, answer) = api.call(
        Method::PUT,
        &format!("/api/v1/dashboard/{dash}/embedded"),
        Some(json!({"allowed_domains": ["http://evil.example.com"]})),
    );
    assert!(status.is_success(), "{answer}");

    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    for expected in
        ["superset_rls_filter.courses", "\"Gamma\"", "superset_embedded_dashboard.fixture", "http://evil.example.com"]
    {
        assert!(drift.stdout.contains(expected), "{expected}: {drift:?}");
    }
    apply(&s);
    let f = filter(&api, &s);
    assert_eq!(tables(&f), schema);
    assert_eq!(f["roles"].as_array().unwrap().len(), 1, "{f}");
    assert_eq!(embedded(&api, &embed_uuid(&s)).unwrap()["allowed_domains"], json!(["http://lms.example.com"]));

    // Embedding removed by hand (Superset's own delete): put back under the same UUID.
    let (status, answer) = api.call(Method::DELETE, &format!("/api/v1/dashboard/{dash}/embedded"), None);
    assert!(status.is_success(), "{answer}");
    assert!(embedded(&api, &embed_uuid(&s)).is_none());
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    apply(&s);
    assert!(embedded(&api, &embed_uuid(&s)).is_some());
    let last = assert_no_changes(&s);

    // The filter deleted by hand: created again.
    let id = api.id("/api/v1/rowlevelsecurity/", "name", &format!("{p}can_view_courses"));
    let (status, answer) = api.call(Method::DELETE, &format!("/api/v1/rowlevelsecurity/{id}"), None);
    assert!(status.is_success(), "{answer}");
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    apply(&s);
    assert_eq!(tables(&filter(&api, &s)), schema);
    assert_no_changes(&s);

    // A second deployment naming the same embedded UUID and filter is refused before it writes.
    let (_, _, admin) = stack().unwrap();
    let mut other = Sandbox::new("sss-other");
    other.set_env(ADMIN_PASSWORD_ENV, &admin);
    other.set_env("META_PW", META_PASSWORD);
    let theirs = format!(
        "[superset_embedded_dashboard.fixture]\nuuid = \"{}\"\ndashboard = \"{p}fixture\"\n\n\
         [superset_rls_filter.courses]\nname = \"{p}can_view_courses\"\ntables = [\"{p}db.*\"]\nclause = \"1 = 1\"\n",
        embed_uuid(&s)
    );
    let text = plan(&other, "meta = { env = \"META_PW\" }\n", &theirs);
    let provider =
        format!("metadata_url = \"{}\"\nmetadata_password = \"${{secrets.meta}}\"\n", metadata_login(&other));
    other.write(
        "aspects.toml",
        &text.replacen("[providers.superset]\n", &format!("[providers.superset]\n{provider}"), 1),
    );
    let other = Sec(Ss(other));
    let refused = run(&other, &["apply", "--auto-approve"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    for kind in ["superset_embedded_dashboard", "superset_rls_filter"] {
        let owned =
            format!("{kind}.{} (deployment `{p}dep`)", if kind.ends_with("filter") { "courses" } else { "fixture" });
        assert!(refused.stderr.contains(&owned), "{refused:?}");
    }
    assert_eq!(embedded(&api, &embed_uuid(&s)).unwrap()["allowed_domains"], json!(["http://lms.example.com"]));
    assert_eq!(filter(&api, &s)["clause"], "{{ can_view_courses(current_username(), \"course_key\") }}");

    // A locale leaving the plan takes its embedding with it; destroy removes the rest.
    let text = std::fs::read_to_string(s.path("aspects.toml")).unwrap();
    let (head, tail) = text.split_at(text.find("[superset_embedded_dashboard").unwrap());
    s.write("aspects.toml", &format!("{head}{}", tail.replace("locales = [\"fr\"]\n", "")));
    apply(&s);
    assert!(embedded(&api, &fr).is_none(), "the fr embedding is gone");
    assert!(embedded(&api, &embed_uuid(&s)).is_some());
    assert_no_changes(&s);
    let destroy = run(&s, &["destroy", "--auto-approve", "--allow-destroy"]);
    assert_eq!(destroy.code, 0, "{destroy:?}");
    assert!(embedded(&api, &embed_uuid(&s)).is_none());
    assert!(api.list("/api/v1/rowlevelsecurity/", "name", p).is_empty());
    let admin = stack().unwrap().2;
    assert_no_secret(&s, &[&admin, META_PASSWORD], &[&applied, &again, &drift, &last, &destroy]);
}

/// A dataset the bundle gains lands in the schema's filter in the same apply.
#[test]
fn a_dataset_added_to_the_bundle_joins_the_filter_in_one_apply() {
    let Some(s) = sandbox("sss-grow") else { return };
    apply(&s);
    let folder = s.path("bundle");
    aspects_e2e::copy_dir(&fixture(), &folder);
    let events = std::fs::read_to_string(folder.join("assets/datasets/course_events.yaml")).unwrap();
    let more = events
        .replace("_file_name: course_events.yaml", "_file_name: more_events.yaml")
        .replace("{{ PREFIX }}course_events", "{{ PREFIX }}more_events")
        .replace("uuid: '{{ ID }}-0000-4000-8000-000000000002'", "uuid: '{{ ID }}-0000-4000-8000-0000000000d2'");
    assert_ne!(more, events);
    std::fs::write(folder.join("assets/datasets/more_events.yaml"), more).unwrap();
    write_plan(&s, &folder, "");
    let plan = s.run(&["plan"]);
    assert!(plan.stdout.contains("superset_rls_filter.courses"), "the filter follows the bundle: {plan:?}");
    apply(&s);
    let p = &s.prefix;
    let names = ["course_events", "course_events_fr", "more_events", "more_events_fr"];
    assert_eq!(tables(&filter(&Api::new(), &s)), names.map(|n| format!("{p}db.{p}{n}")));
    assert_no_changes(&s);
}

/// A crash right after each write of the filter's and the embedding's creation, in turn, then
/// an apply without the hook: it converges every time.
#[test]
fn a_crash_after_any_write_then_apply_converges() {
    let Some(s) = sandbox("sss-crash") else { return };
    // The bundle and roles first, so the loop crashes only in the two kinds under test.
    let text = std::fs::read_to_string(s.path("aspects.toml")).unwrap();
    let full = text.clone();
    s.write("aspects.toml", &text[..text.find("[superset_rls_filter").unwrap()]);
    apply(&s);
    s.write("aspects.toml", &full);
    let api = Api::new();
    let args = ["apply", "--auto-approve", "--parallelism", "1", "--lock-timeout", "120s"];
    let writes = aspects_e2e::crash_at_every_write(&s, &args, |k, _| {
        apply(&s);
        assert_no_changes(&s);
        assert!(embedded(&api, &embed_uuid(&s)).is_some(), "k = {k}");
        assert_eq!(api.list("/api/v1/rowlevelsecurity/", "name", &s.prefix).len(), 1, "k = {k}");
        // Back to the state before the loop's apply, for the next crash point.
        let targets = ["--target", "superset_rls_filter.courses", "--target", "superset_embedded_dashboard.fixture"];
        let r = run(&s, &[&["destroy", "--auto-approve"][..], &targets].concat());
        assert_eq!(r.code, 0, "{r:?}");
    });
    assert!(writes > 3, "the plan has only {writes} writes");
}

#[test]
fn hostile_input_is_refused_with_its_place() {
    let Some(s) = sandbox("sss-hostile") else { return };
    let refused = |body: &str, command: &str, expected: &[&str]| {
        s.write("aspects.toml", &plan(&s, "", body));
        let r = s.run(&[command]);
        assert_eq!(r.code, 1, "{body}: {r:?}");
        for e in expected {
            assert!(r.stderr.contains(e), "{body}: expected {e:?} in {}", r.stderr);
        }
        assert!(r.stderr.contains("aspects.toml:"), "placed in the plan file: {r:?}");
    };
    let rls =
        |tables: &str| format!("[superset_rls_filter.f]\nname = \"@@f\"\ntables = [{tables}]\nclause = \"1 = 1\"\n");
    refused(&rls("\"no_schema\""), "validate", &["is not SCHEMA.TABLE or SCHEMA.*"]);
    refused(&rls("\".*\""), "validate", &["is not SCHEMA.TABLE or SCHEMA.*"]);
    refused(&rls("\"a.b*\""), "validate", &["is not SCHEMA.TABLE or SCHEMA.*"]);
    refused(
        "[superset_rls_filter.f]\nname = \"@@f\"\ntables = [\"a.b\"]\nclause = \"1 = 1\"\nfilter_type = \"Sometimes\"\n",
        "validate",
        &["is not a filter type"],
    );
    refused(
        "[superset_rls_filter.f]\nname = \"@@f\"\ntables = [\"a.b\"]\nclause = \" \"\n",
        "validate",
        &["the clause is empty"],
    );
    let embed = |extra: &str| format!("[superset_embedded_dashboard.e]\nuuid = \"{}\"\n{extra}", embed_uuid(&s));
    refused(&embed("dashboard = \"x'; DROP TABLE dashboards; --\"\n"), "validate", &["is not a dashboard slug"]);
    refused(&embed("dashboard = \"d\"\nallowed_domains = [\"a.com,b.com\"]\n"), "validate", &["is not a domain"]);
    // No metadata_url in the provider block: refused at plan time, before any write.
    refused(&embed("dashboard = \"d\"\n"), "plan", &["has no `metadata_url`", "metadata_password"]);
    // A password inside metadata_url is refused without being echoed.
    let with_password = plan(&s, "", &embed("dashboard = \"d\"\n")).replacen(
        "[providers.superset]\n",
        "[providers.superset]\nmetadata_url = \"mysql://root:Hunter-22@127.0.0.1/superset\"\n",
        1,
    );
    s.write("aspects.toml", &with_password);
    let r = s.run(&["validate"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("contains a password") && !r.all().contains("Hunter-22"), "{r:?}");
}

//! `superset_assets` end to end: the `aspects` binary imports the project's bundle
//! (fixtures/superset-assets) into the stack's real Superset 6.1.0, and Superset's own export is
//! what the tests look at. Every test skips outside CI when the stack has no Superset.

use std::path::{Path, PathBuf};

use aspects_config::SecretStore;
use aspects_e2e::superset::{ADMIN_PASSWORD_ENV, Api, Ss, apply, assert_no_changes, cleanup, plan, run, stack, uuid};
use aspects_e2e::{Run, Sandbox, assert_no_secret};
use reqwest::Method;
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/superset-assets").canonicalize().unwrap()
}

/// 8 hex digits of the sandbox's own: every UUID of its bundle starts with them.
fn id(s: &Sandbox) -> String {
    uuid(s)[..8].to_owned()
}

fn bundle_body(s: &Sandbox, folder: &Path, extra: &str) -> String {
    let ch = aspects_e2e::clickhouse::url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    format!(
        "[superset_assets.fixture]\nname = \"fixture\"\ndirectory = \"{dir}/assets\"\ntemplates = \"{dir}\"\n\
         context = {{ ID = \"{id}\", PREFIX = \"@@\", CLICKHOUSE_DATABASE = \"default\", DASHBOARD_ROLE = \"Gamma\", \
         CLICKHOUSE_URI = \"clickhousedb+connect://default:${{secrets.report}}@{ch}/default\" }}\n{extra}",
        dir = folder.display(),
        id = id(s),
    )
}

/// A sandbox with the bundle at `folder` (the fixture itself unless a test copies it).
fn sandbox(name: &str, folder: Option<&Path>) -> Option<Ss> {
    let (_, _, admin) = stack()?;
    let mut s = Sandbox::new(name);
    s.set_env(ADMIN_PASSWORD_ENV, &admin);
    let folder = folder.map_or_else(fixture, Path::to_owned);
    s.write("aspects.toml", &plan(&s, "report = { generate = 24 }\n", &bundle_body(&s, &folder, "")));
    Some(Ss(s))
}

/// A copy of the fixture inside the sandbox, for tests that change it.
fn copy_fixture(s: &Sandbox) -> PathBuf {
    let to = s.path("bundle");
    aspects_e2e::copy_dir(&fixture(), &to);
    to
}

/// The sandbox's assets of one kind as Superset lists them: (uuid, changed_on), sorted. Every
/// page: other tests' assets share the lists.
fn changed_on(api: &Api, s: &Sandbox, kind: &str) -> Vec<(String, String)> {
    let changed = if kind == "database" { "changed_on" } else { "changed_on_utc" };
    let mut out = Vec::new();
    for page in 0.. {
        let q = format!("(columns:!(uuid,{changed}),page:{page},page_size:100)");
        let rows = api.get(&format!("/api/v1/{kind}/?q={q}"))["result"].as_array().cloned().unwrap_or_default();
        out.extend(
            rows.iter()
                .filter(|r| r["uuid"].as_str().unwrap().starts_with(&id(s)))
                .map(|r| (r["uuid"].as_str().unwrap().to_owned(), r[changed].as_str().unwrap().to_owned())),
        );
        if rows.len() < 100 {
            break;
        }
    }
    out.sort();
    out
}

fn all_changed_on(api: &Api, s: &Sandbox) -> Vec<(String, String)> {
    ["database", "dataset", "chart", "dashboard"].iter().flat_map(|k| changed_on(api, s, k)).collect()
}

fn chart(api: &Api, s: &Sandbox, n: u32) -> Value {
    let uuid = format!("{}-0000-4000-8000-0000000000{n}", id(s));
    let rows = api.list("/api/v1/chart/", "slice_name", &s.prefix);
    let row = rows.iter().find(|r| r["uuid"] == uuid.as_str()).unwrap_or_else(|| panic!("no chart {uuid}: {rows:?}"));
    api.get(&format!("/api/v1/chart/{}", row["id"]))["result"].clone()
}

fn scrubbed(s: &Sandbox, r: &Run) -> String {
    s.scrub(&r.stdout)
        .replace(&id(s), "[ID]")
        .replace(&fixture().display().to_string(), "[FIXTURE]")
        .replace(aspects_e2e::clickhouse::url().trim_start_matches("http://").trim_end_matches('/'), "[CH]")
}

#[test]
fn a_bundle_applies_then_plans_empty_and_a_second_apply_imports_nothing() {
    let Some(s) = sandbox("ssa-apply", None) else { return };
    let first = s.run(&["plan"]);
    assert_eq!(first.code, 0, "{first:?}");
    insta::assert_snapshot!("first_plan", scrubbed(&s, &first));
    let applied = apply(&s);
    let api = Api::new();
    let imported = all_changed_on(&api, &s);
    assert_eq!(imported.len(), 7, "1 database, 2 datasets, 3 charts, 1 dashboard: {imported:?}");
    let again = assert_no_changes(&s);
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 0, "{drift:?}");

    // Every import rewrites changed_on: a second apply that imported anything would move it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = apply(&s);
    assert!(second.stdout.contains("No changes"), "{second:?}");
    assert_eq!(all_changed_on(&api, &s), imported, "the second apply imported something");

    // What Superset holds: the rendered SQL with Superset's own Jinja intact, query_context
    // sent as a JSON string, the dashboard's charts linked.
    let q = format!("(filters:!((col:table_name,opr:eq,value:'{}course_events')))", s.prefix);
    let dataset = &api.get(&format!("/api/v1/dataset/?q={q}&columns=sql"))["result"][0];
    let dataset = api.get(&format!("/api/v1/dataset/{}", dataset["id"]))["result"].clone();
    let sql = dataset["sql"].as_str().unwrap();
    assert!(sql.contains("from system.one"), "the include was rendered: {sql}");
    assert!(sql.contains("{% if filter_values(\"course\") != [] %}"), "Superset's Jinja is intact: {sql}");
    assert!(sql.contains("{{ filter_values(\"course\") | where_in }}"), "{sql}");
    let total = chart(&api, &s, 11);
    let qc: Value = serde_json::from_str(total["query_context"].as_str().unwrap()).unwrap();
    assert_eq!(qc["form_data"]["metric"], "events");
    let dash = api.list("/api/v1/dashboard/", "dashboard_title", &s.prefix);
    let charts = api.get(&format!("/api/v1/dashboard/{}/charts", dash[0]["id"]));
    assert_eq!(charts["result"].as_array().unwrap().len(), 3, "{charts}");
    // `_roles` is set: the original goes to Admin only, as Aspects does.
    assert_eq!(api.get(&format!("/api/v1/dashboard/{}", dash[0]["id"]))["result"]["roles"][0]["name"], "Admin");

    // The database password went in the import's `passwords` field: Superset has it, nothing
    // else does (outputs, files, the markers).
    let password = SecretStore::open(&s.secrets_path()).unwrap().get("report").unwrap().expose().to_owned();
    let markers = api.list("/api/v1/css_template/", "template_name", &format!("aspects assets: {}dep/", s.prefix));
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert!(!markers[0]["css"].as_str().unwrap().contains(&password));
    let admin = stack().unwrap().2;
    assert_no_secret(&s, &[&password, &admin], &[&first, &applied, &again, &drift, &second]);
}

#[test]
fn a_chart_edited_in_superset_is_reported_by_uuid_and_key_then_reverted() {
    let Some(s) = sandbox("ssa-drift", None) else { return };
    apply(&s);
    // MariaDB keeps changed_on to the second: a save within the second of the import would
    // not move it (a limit of the metadata, said in ARCHITECTURE.md).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let api = Api::new();
    let total = chart(&api, &s, 11);
    let mut params: Value = serde_json::from_str(total["params"].as_str().unwrap()).unwrap();
    params["metric"] = json!("count");
    params["color_picker"] = json!({"r": 1});
    let rows = api.list("/api/v1/chart/", "slice_name", &format!("{}Total", s.prefix));
    let path = format!("/api/v1/chart/{}", rows[0]["id"]);
    let body = json!({"params": params.to_string(), "slice_name": format!("{}Total (edited)", s.prefix)});
    let (status, answer) = api.call(Method::PUT, &path, Some(body));
    assert!(status.is_success(), "{answer}");

    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    insta::assert_snapshot!("edited_chart", scrubbed(&s, &drift));
    let before = all_changed_on(&api, &s);
    // The import must land in a later second than the edit for its changed_on to show it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    apply(&s);
    let after = all_changed_on(&api, &s);
    let moved: Vec<&String> = after.iter().zip(&before).filter(|(a, b)| a != b).map(|(a, _)| &a.0).collect();
    assert_eq!(moved, [&format!("{}-0000-4000-8000-000000000011", id(&s))], "only the edited chart is imported again");
    let total = chart(&api, &s, 11);
    assert_eq!(total["slice_name"], format!("{}Total events", s.prefix));
    let params: Value = serde_json::from_str(total["params"].as_str().unwrap()).unwrap();
    assert_eq!(params["metric"], "events");
    assert_no_changes(&s);
}

/// A no-op plan checks each kind whose markers all hold with one request (its seen assets
/// still there, none saved since) instead of listing every asset; what it checks is found when
/// it moved: a chart deleted by hand, a dataset saved by hand.
#[test]
fn a_no_op_plan_checks_each_kind_in_one_request_and_finds_what_moved() {
    let Some(s) = sandbox("ssa-quick", None) else { return };
    apply(&s);
    // The records and markers, the connections, the dashboards (their roles are compared from
    // the list rows), then one check each for datasets and charts.
    let quiet = s.run(&["plan", "-v"]);
    assert!(quiet.stdout.contains("No changes"), "{quiet:?}");
    assert!(quiet.stderr.contains("read live state with 5 queries"), "{}", quiet.stderr);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let api = Api::new();
    let rows = chart(&api, &s, 13);
    let path = format!("/api/v1/chart/{}", rows["id"]);
    assert!(api.call(Method::DELETE, &path, None).0.is_success());
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    assert!(drift.stdout.contains(&format!("{}-0000-4000-8000-000000000013", id(&s))), "{drift:?}");
    apply(&s);
    assert_no_changes(&s);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let events = api.list("/api/v1/dataset/", "table_name", &format!("{}course_events", s.prefix));
    let path = format!("/api/v1/dataset/{}", events[0]["id"]);
    assert!(api.call(Method::PUT, &path, Some(json!({"description": "saved by hand"}))).0.is_success());
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    assert!(drift.stdout.contains("saved by hand"), "{drift:?}");
    apply(&s);
    assert_no_changes(&s);
}

/// A chart saved by hand after an apply read it but before that apply imported another one
/// (so earlier than the import's `changed_on`) is still found: the apply records only the
/// markers that still hold when it writes them.
#[test]
fn a_chart_saved_while_an_apply_runs_is_found_by_the_next_plan() {
    let Some(s) = sandbox("ssa-window", None) else { return };
    let folder = copy_fixture(&s);
    s.write("aspects.toml", &plan(&s, "report = { generate = 24 }\n", &bundle_body(&s, &folder, "")));
    apply(&s);
    // The save must land in a later second than this import for its changed_on to show it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The next apply creates a role first (its writes come before the import), then imports
    // the chart "Events per course", changed in the bundle.
    let path = folder.join("assets/charts/Events_per_course.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, yaml.replace("description: Events of each course", "description: Per course")).unwrap();
    let extra = "depends_on = [\"superset_role.extra\"]\n\n[superset_role.extra]\nname = \"@@Extra\"\n";
    s.write("aspects.toml", &plan(&s, "report = { generate = 24 }\n", &bundle_body(&s, &folder, extra)));
    let (mut running, go) = s.paused(&["apply", "--auto-approve", "--parallelism", "1", "--lock-timeout", "120s"], 1);
    let api = Api::new();
    let total = chart(&api, &s, 11);
    let body = json!({"description": "saved meanwhile"});
    assert!(api.call(Method::PUT, &format!("/api/v1/chart/{}", total["id"]), Some(body)).0.is_success());
    // The import lands in a later second than the save.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(go, "").unwrap();
    assert!(running.wait().unwrap().success());
    assert_eq!(chart(&api, &s, 12)["description"], "Per course");

    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "the save is found: {drift:?}");
    assert!(drift.stdout.contains("saved meanwhile"), "{drift:?}");
    apply(&s);
    assert_no_changes(&s);
    assert_eq!(chart(&api, &s, 11)["description"], Value::Null);
}

#[test]
fn hostile_bundles_are_refused_before_any_write() {
    let Some(s) = sandbox("ssa-hostile", None) else { return };
    let folder = copy_fixture(&s);
    s.write("aspects.toml", &plan(&s, "report = { generate = 24 }\n", &bundle_body(&s, &folder, "")));
    let api = Api::new();
    let refused = |what: &str, expected: &[&str]| {
        let r = run(&s, &["apply", "--auto-approve"]);
        assert_eq!(r.code, 1, "{what}: {r:?}");
        for e in expected {
            assert!(r.stderr.contains(e), "{what}: expected {e:?} in {}", r.stderr);
        }
        assert!(r.stderr.contains("aspects.toml:"), "{what}: placed in the plan file: {r:?}");
        assert!(all_changed_on(&api, &s).is_empty(), "{what}: something was imported");
        let markers = api.list("/api/v1/css_template/", "template_name", &format!("aspects assets: {}", s.prefix));
        assert!(markers.is_empty(), "{what}: {markers:?}");
    };
    let chart = folder.join("assets/charts/Rows.yaml");
    let good = std::fs::read_to_string(&chart).unwrap();

    std::fs::write(
        &chart,
        good.replace("viz_type: big_number_total\nquery_context", "viz_type: [unclosed\nquery_context"),
    )
    .unwrap();
    refused("bad YAML", &["charts/Rows.yaml:", "not valid YAML"]);

    std::fs::write(&chart, good.replace("description: null", "description: '{% include \"../../etc/passwd\" %}'"))
        .unwrap();
    refused("an include leaving the templates folder", &["charts/Rows.yaml", "leaves the templates folder"]);

    std::fs::write(&chart, good.replace("description: null", "description: '{{ NOT_IN_CONTEXT }}'")).unwrap();
    refused("an undefined name", &["charts/Rows.yaml", "undefined"]);

    std::fs::write(&chart, &good).unwrap();
    let outside = s.path("outside.yaml");
    std::fs::write(&outside, &good).unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("assets/charts/Linked.yaml")).unwrap();
    refused("an asset outside the folder", &["charts/Linked.yaml leads outside the asset folder"]);
    std::fs::remove_file(folder.join("assets/charts/Linked.yaml")).unwrap();

    apply(&s);
    assert_no_changes(&s);
}

#[test]
fn owned_assets_leaving_the_bundle_are_deleted_and_unowned_ones_kept() {
    let Some(s) = sandbox("ssa-converge", None) else { return };
    let folder = copy_fixture(&s);
    s.write("aspects.toml", &plan(&s, "report = { generate = 24 }\n", &bundle_body(&s, &folder, "")));
    apply(&s);
    let api = Api::new();
    // Made by hand: not this bundle's, so never touched.
    let title = format!("{}Hand made", s.prefix);
    let (status, made) = api.call(Method::POST, "/api/v1/dashboard/", Some(json!({"dashboard_title": title})));
    assert!(status.is_success(), "{made}");

    // The chart "Rows" leaves the bundle and its dashboard (with every reference to its id).
    std::fs::remove_file(folder.join("assets/charts/Rows.yaml")).unwrap();
    let path = folder.join("assets/dashboards/Fixture.yaml");
    let dashboard = std::fs::read_to_string(&path).unwrap();
    let start = dashboard.find("  CHART-3:\n").unwrap();
    let end = dashboard.find("  DASHBOARD_VERSION_KEY").unwrap();
    let dashboard = [&dashboard[..start], &dashboard[end..]].concat();
    let dashboard = dashboard
        .replace("    - CHART-3\n", "")
        .replace("          - 1\n          - 3\n", "          - 1\n")
        .replace("  timed_refresh_immune_slices:\n  - 3\n", "");
    std::fs::write(&path, dashboard).unwrap();

    let planned = s.run(&["plan"]);
    assert_eq!(planned.code, 0, "{planned:?}");
    insta::assert_snapshot!("chart_leaves", scrubbed(&s, &planned));
    apply(&s);
    assert_no_changes(&s);
    let charts: Vec<String> = changed_on(&api, &s, "chart").into_iter().map(|(u, _)| u).collect();
    assert_eq!(charts, [11, 12].map(|n| format!("{}-0000-4000-8000-0000000000{n}", id(&s))), "Rows is deleted");
    let ours = api.list("/api/v1/dashboard/", "dashboard_title", &format!("{}Fixture", s.prefix));
    let linked = api.get(&format!("/api/v1/dashboard/{}/charts", ours[0]["id"]));
    assert_eq!(linked["result"].as_array().unwrap().len(), 2, "the chart left its dashboard: {linked}");
    assert_eq!(api.list("/api/v1/dashboard/", "dashboard_title", &title).len(), 1, "the hand-made one stays");

    // Destroying the bundle takes its connection too, and nothing else.
    let r = run(&s, &["destroy", "--auto-approve"]);
    assert_eq!(r.code, 1, "a bundle holds a connection: --allow-destroy is needed: {r:?}");
    let r = run(&s, &["destroy", "--auto-approve", "--allow-destroy"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(all_changed_on(&api, &s).is_empty(), "every asset of the bundle is gone");
    assert_eq!(api.list("/api/v1/dashboard/", "dashboard_title", &title).len(), 1, "the hand-made one stays");
    let markers = api.list("/api/v1/css_template/", "template_name", &format!("aspects assets: {}", s.prefix));
    assert!(markers.is_empty(), "{markers:?}");
}

#[test]
fn a_crash_after_any_write_then_apply_converges() {
    let Some(s) = sandbox("ssa-crash", None) else { return };
    let api = Api::new();
    let writes =
        aspects_e2e::crash_at_every_write(&s, &["apply", "--auto-approve", "--lock-timeout", "120s"], |k, _| {
            // The killed run's lease runs out while the next run waits.
            apply(&s);
            assert_no_changes(&s);
            assert_eq!(all_changed_on(&api, &s).len(), 7, "k = {k}");
            // The next crash point starts from nothing again.
            cleanup(&s.prefix);
        });
    assert!(writes > 4, "claim, import, roles, markers, record: {writes} writes only");
}

/// 240 charts imported in one request share their `changed_on`, which is Superset's default
/// list order, so pages of it can come back with those ties in a different order on each page.
/// The plan still finds every one (aspects looks assets up by uuid, 90 to a request, never by
/// page), and the markers record them all.
#[test]
fn many_charts_imported_at_once_are_all_found() {
    const MANY: usize = 240;
    let Some(s) = sandbox("ssa-many", None) else { return };
    let folder = copy_fixture(&s);
    let rows = std::fs::read_to_string(folder.join("assets/charts/Rows.yaml")).unwrap();
    let uuids: Vec<String> = (0..MANY).map(|n| format!("{}-0000-4000-9000-{n:012}", id(&s))).collect();
    for (n, uuid) in uuids.iter().enumerate() {
        let chart = rows
            .replace("{{ ID }}-0000-4000-8000-000000000013", uuid)
            .replace("{{ PREFIX }}Rows", &format!("{{{{ PREFIX }}}}Many {n}"))
            .replace("_file_name: Rows.yaml", &format!("_file_name: Many_{n}.yaml"));
        std::fs::write(folder.join(format!("assets/charts/Many_{n}.yaml")), chart).unwrap();
    }
    s.write("aspects.toml", &plan(&s, "report = { generate = 24 }\n", &bundle_body(&s, &folder, "")));
    apply(&s);
    assert_no_changes(&s);

    // Superset's side, read the same way (each request holds every row it asks for): all of
    // them exist, and they share a handful of `changed_on` values.
    let api = Api::new();
    let mut changed: Vec<String> = Vec::new();
    for chunk in uuids.chunks(50) {
        let values = chunk.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(",");
        let q =
            format!("(columns:!(uuid,changed_on_utc),filters:!((col:uuid,opr:in,value:!({values}))),page_size:100)");
        let answer = api.get(&format!("/api/v1/chart/?q={q}"));
        assert_eq!(answer["count"], chunk.len(), "{answer}");
        changed.extend(answer["result"].as_array().unwrap().iter().map(|r| r["changed_on_utc"].to_string()));
    }
    changed.sort();
    changed.dedup();
    assert!(changed.len() <= MANY / 10, "ties are what this test is about: {changed:?}");
    let markers = api.list("/api/v1/css_template/", "template_name", &format!("aspects assets: {}dep/", s.prefix));
    let css = markers[0]["css"].as_str().unwrap();
    assert_eq!(css.matches("[\"chart\",").count(), 3 + MANY);

    let r = run(&s, &["destroy", "--auto-approve", "--allow-destroy"]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// The released Aspects bundle (tutor-contrib-aspects 6.1.0, unpacked by `stack up`) with three
/// locales, rendered with Tutor's defaults: apply, plan empty, and Superset's export of every
/// asset compares equal to the plan. The bundle's UUIDs and names are fixed: only this test
/// imports it (the benchmark too, outside the test suite).
#[test]
fn the_aspects_bundle_with_three_locales_applies_then_plans_empty() {
    let Some(wheel) = aspects_e2e::optional_stack_env("ASPECTS_STACK_TUTOR_ASPECTS") else {
        eprintln!("skipped: no ASPECTS_STACK_TUTOR_ASPECTS (run `cargo xtask stack up`)");
        return;
    };
    let Some(s) = sandbox("ssa-upstream", None) else { return };
    let api = Api::new();
    // Markers an interrupted earlier run left would make its assets another bundle's.
    for t in api.list("/api/v1/css_template/", "template_name", "aspects assets: t") {
        if t["template_name"].as_str().unwrap().ends_with("/upstream") {
            api.call(Method::DELETE, &format!("/api/v1/css_template/{}", t["id"]), None);
        }
    }
    let templates = Path::new(&wheel).join("tutoraspects/templates");
    let locales = ["fr_CA", "es-419", "de"];
    let mut roles = String::new();
    let mut needs = Vec::new();
    for role in ["Instructor", "Operator"] {
        for (i, l) in locales.iter().enumerate() {
            roles.push_str(&format!("\n[superset_role.{role}_{i}]\nname = \"@@{role} - {l}\"\n"));
            needs.push(format!("\"superset_role.{role}_{i}\""));
        }
    }
    let ch = aspects_e2e::clickhouse::url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let body = format!(
        "[superset_assets.upstream]\nname = \"upstream\"\ndirectory = \"{assets}\"\ntemplates = \"{templates}\"\n\
         locales = {locales:?}\ndepends_on = [{needs}]\n\
         context = {{ ASPECTS_EVENT_SINK_DATABASE = \"event_sink\", ASPECTS_XAPI_DATABASE = \"xapi\", \
         DBT_PROFILE_TARGET_DATABASE = \"reporting\", SUPERSET_DB_NAME = \"superset\", \
         CLICKHOUSE_REPORT_SQLALCHEMY_URI = \"clickhousedb+connect://ch_report:${{secrets.report}}@{ch}/xapi\", \
         SUPERSET_METADATA_SQLALCHEMY_URI = \"mysql://superset:${{secrets.report}}@127.0.0.1:9/superset\", \
         SUPERSET_ROLES_MAPPING = {{ instructor = \"@@Instructor\", operator = \"@@Operator\" }}, \
         ASPECTS_COURSE_COMPARISON_HELP_MARKDOWN = \"## Help\", ASPECTS_COURSE_OVERVIEW_HELP_MARKDOWN = \"## Help\", \
         ASPECTS_INDIVIDUAL_LEARNER_HELP_MARKDOWN = \"## Help\", ASPECTS_LEARNER_GROUPS_HELP_MARKDOWN = \"## Help\", \
         ASPECTS_OPERATOR_HELP_MARKDOWN = \"## Help\" }}\n{roles}",
        assets = templates.join("aspects/build/aspects-superset/openedx-assets/assets").display(),
        templates = templates.display(),
        needs = needs.join(", "),
    );
    s.write("aspects.toml", &plan(&s, "report = { generate = 24 }\n", &body));
    apply(&s);
    assert_no_changes(&s);
    // What the bundle recorded, by kind (other tests share this Superset: counting is theirs too).
    let markers = api.list("/api/v1/css_template/", "template_name", &format!("aspects assets: {}dep/", s.prefix));
    let css = markers[0]["css"].as_str().unwrap();
    let count = |kind: &str| css.matches(&format!("[\"{kind}\",")).count();
    // 9 dashboards and 82 charts, each also per locale; 47 datasets, those with SQL per locale.
    assert_eq!([count("dashboard"), count("chart"), count("database")], [36, 328, 2]);
    assert!(count("dataset") > 47 + 3 * 30, "{}", count("dataset"));
    let q = "(filters:!((col:slug,opr:eq,value:'course-dashboard-fr_CA')))";
    let dash = &api.get(&format!("/api/v1/dashboard/?q={q}"))["result"][0];
    assert_eq!(dash["uuid"], "257f514e-f480-5035-86c4-10540b48d267", "uuid5(uuid5(base, 'superset'), 'fr_ca')");
    let roles: Vec<String> = api.get(&format!("/api/v1/dashboard/{}", dash["id"]))["result"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, [format!("{}Instructor - fr_CA", s.prefix)]);

    // Superset's own export of every asset compares equal to the plan: with the markers made
    // stale, the plan reads every asset back and finds nothing but the stale markers.
    let mut stale = css.to_owned();
    for kind in ["database", "dataset", "chart", "dashboard"] {
        let entry = format!("[\"{kind}\",\"");
        let parts: Vec<&str> = stale.split(&entry).collect();
        let rest = parts[1..].iter().map(|p| format!("{entry}{}{}", "0".repeat(24), &p[24..]));
        stale = std::iter::once(parts[0].to_owned()).chain(rest).collect();
    }
    assert!(stale != css && stale.len() == css.len(), "every marker made stale");
    let path = format!("/api/v1/css_template/{}", markers[0]["id"]);
    assert!(api.call(Method::PUT, &path, Some(json!({"css": stale}))).0.is_success());
    let reread = s.run(&["plan"]);
    let changed: Vec<&str> = reread.stdout.lines().filter(|l| l.starts_with("          ")).collect();
    assert!(changed.len() > 500, "{reread:?}");
    assert!(changed.iter().all(|l| l.contains("\": \"(reads equal, but not as aspects recorded it")), "{changed:#?}");
    apply(&s);
    assert_no_changes(&s);

    let r = run(&s, &["destroy", "--auto-approve", "--allow-destroy"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(api.get(&format!("/api/v1/dashboard/?q={q}"))["count"], 0);
    let q = "(filters:!((col:database_name,opr:eq,value:'OpenedX Clickhouse')))";
    assert_eq!(api.get(&format!("/api/v1/database/?q={q}"))["count"], 0);
}

/// Aspects' SUPERSET_OWNERS: the bundle's charts and dashboards are owned by exactly these
/// users; an owner changed in Superset is put back.
#[test]
fn owners_are_set_on_every_chart_and_dashboard_and_kept() {
    let Some(s) = sandbox("ssa-owners", None) else { return };
    let owner = "[superset_user.owner]\nusername = \"@@owner\"\nfirst_name = \"O\"\nlast_name = \"W\"\n\
                 email = \"@@owner@example.com\"\nroles = [\"Gamma\"]\npassword = \"${secrets.report}\"\n";
    let extra = format!("owners = [\"${{superset_user.owner.username}}\"]\n\n{owner}");
    s.write("aspects.toml", &plan(&s, "report = { generate = 24 }\n", &bundle_body(&s, &fixture(), &extra)));
    apply(&s);
    assert_no_changes(&s);
    let api = Api::new();
    let owners = |path: &str| -> Vec<String> {
        api.get(path)["result"]["owners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                api.get(&format!("/api/v1/security/users/{}", o["id"]))["result"]["username"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let me = format!("{}owner", s.prefix);
    let charts = api.list("/api/v1/chart/", "slice_name", &s.prefix);
    assert_eq!(charts.len(), 3, "{charts:?}");
    for c in &charts {
        assert_eq!(owners(&format!("/api/v1/chart/{}", c["id"])), [me.as_str()]);
    }
    let dash = api.list("/api/v1/dashboard/", "dashboard_title", &s.prefix);
    let dash_path = format!("/api/v1/dashboard/{}", dash[0]["id"]);
    assert_eq!(owners(&dash_path), [me.as_str()]);

    // By hand: the admin takes the dashboard over and its roles go (neither moves changed_on).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let admin = api.id("/api/v1/security/users/", "username", &stack().unwrap().1);
    let (status, body) = api.call(Method::PUT, &dash_path, Some(json!({"owners": [admin], "roles": []})));
    assert!(status.is_success(), "{body}");
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    let dashboard = format!("\"{}Fixture dashboard\"", s.prefix);
    let admin_name = stack().unwrap().1;
    assert!(drift.stdout.contains(&format!("{dashboard}._owners[0]: \"{admin_name}\" -> \"{me}\"")), "{drift:?}");
    assert!(drift.stdout.contains(&format!("{dashboard}._roles[0]: \"Admin\"")), "{drift:?}");
    apply(&s);
    assert_eq!(owners(&dash_path), [me]);
    assert_eq!(api.get(&dash_path)["result"]["roles"][0]["name"], "Admin");
    assert_no_changes(&s);
}

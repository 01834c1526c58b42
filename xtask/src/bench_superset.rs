//! Superset asset benchmark, in this process against the stack's Superset: the released Aspects
//! bundle (tutor-contrib-aspects 6.1.0, unpacked by `stack up`) with three locales, 554 assets.
//! Measures Superset's own importer on the whole rendered bundle (one `POST
//! /api/v1/assets/import/`, from empty and again over it: what Tutor's init does on every run),
//! then aspects' apply from empty and its no-op plan (median, connect included; target under
//! 0.5 s), and prints the ratios. Everything it makes is removed again.

use std::fmt::Write;
use std::time::Instant;

use aspects_core::Registry;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::bench::{Systems, converge, load_files, noop_plan};

const SUPERSET: Systems<'static> = &[("superset", &aspects_superset::Superset)];
const NAME: &str = "benchss";
const LOCALES: [&str; 3] = ["fr_CA", "es-419", "de"];
const TARGET_MS: f64 = 500.0;

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set; run `cargo xtask bench`"))
}

/// `Ok(false)` when the no-op plan is over its target.
pub fn run(rt: &Runtime) -> Result<bool, String> {
    let url = env("ASPECTS_STACK_SUPERSET_URL")?;
    let wheel = env("ASPECTS_STACK_TUTOR_ASPECTS")?;
    let registry = Registry::default().with(aspects_superset::schema());
    let head = format!(
        "[deployment]\nname = \"{NAME}\"\n\n[secrets]\nadmin = {{ env = \"ASPECTS_STACK_SUPERSET_PASSWORD\" }}\n\
         report = {{ generate = 24 }}\n\n[providers.superset]\nurl = \"{url}\"\nusername = \"{user}\"\n\
         password = \"${{secrets.admin}}\"\n\n",
        user = env("ASPECTS_STACK_SUPERSET_USER")?,
    );
    let loaded = load_files(NAME, vec![head.clone() + &bundle(&wheel)], &registry)?;
    let empty = load_files(NAME, vec![head], &registry)?;
    let resource = loaded.desired.resources.values().find(|r| r.address.kind == "superset_assets").expect("declared");
    let whole = aspects_superset::whole_bundle(resource)?;
    rt.block_on(async {
        converge(&empty, &registry, SUPERSET, true).await?;
        let api = Api::login(&url).await?;
        api.delete(&whole).await?;
        eprintln!("bench: Superset's importer: the whole bundle ({} assets) from empty", whole.assets.len());
        let theirs = api.import(&whole).await?;
        eprintln!("bench: Superset's importer: the same bundle again (Tutor's every run)");
        let again = api.import(&whole).await?;
        api.delete(&whole).await?;
        eprintln!("bench: aspects apply from empty");
        let started = Instant::now();
        converge(&loaded, &registry, SUPERSET, false).await?;
        let ours = started.elapsed().as_secs_f64() * 1000.0;
        let measured = noop_plan(&loaded, &registry, SUPERSET, "superset").await;
        converge(&empty, &registry, SUPERSET, true).await?;
        let (noop, requests) = measured?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nSuperset assets: the Aspects bundle with {} locales ({} assets)",
            LOCALES.len(),
            whole.assets.len()
        );
        let _ = writeln!(out, "{:>10.0} ms  Superset's importer, whole bundle, from empty", theirs);
        let _ = writeln!(
            out,
            "{:>10.0} ms  aspects apply from empty (render, import, roles, markers)  ratio {:.2}",
            ours,
            ours / theirs
        );
        let _ = writeln!(out, "{:>10.0} ms  Superset's importer, whole bundle again (Tutor, every run)", again);
        let _ = writeln!(
            out,
            "{noop:>10.1} ms  aspects no-op plan (the login, then {requests} requests)  ratio {:.3}; under {TARGET_MS} ms: {}",
            noop / again,
            if noop < TARGET_MS { "yes" } else { "NO" }
        );
        print!("{out}");
        Ok(noop < TARGET_MS)
    })
}

/// The bundle with its roles (each locale's copies want `<role> - <locale>`), Tutor's defaults.
fn bundle(wheel: &str) -> String {
    let templates = format!("{wheel}/tutoraspects/templates");
    let mut roles = String::new();
    let mut needs = Vec::new();
    for role in ["Instructor", "Operator"] {
        for (i, l) in LOCALES.iter().enumerate() {
            let _ = write!(roles, "\n[superset_role.{role}_{i}]\nname = \"{NAME} {role} - {l}\"\n");
            needs.push(format!("\"superset_role.{role}_{i}\""));
        }
    }
    let help = ["COURSE_COMPARISON", "COURSE_OVERVIEW", "INDIVIDUAL_LEARNER", "LEARNER_GROUPS", "OPERATOR"]
        .map(|d| format!("ASPECTS_{d}_HELP_MARKDOWN = \"## Help\""))
        .join(", ");
    format!(
        "[superset_assets.aspects]\nname = \"aspects\"\n\
         directory = \"{templates}/aspects/build/aspects-superset/openedx-assets/assets\"\ntemplates = \"{templates}\"\n\
         locales = {LOCALES:?}\ndepends_on = [{needs}]\n\
         context = {{ ASPECTS_EVENT_SINK_DATABASE = \"event_sink\", ASPECTS_XAPI_DATABASE = \"xapi\", \
         DBT_PROFILE_TARGET_DATABASE = \"reporting\", SUPERSET_DB_NAME = \"superset\", \
         CLICKHOUSE_REPORT_SQLALCHEMY_URI = \"clickhousedb+connect://ch_report:${{secrets.report}}@127.0.0.1:9/xapi\", \
         SUPERSET_METADATA_SQLALCHEMY_URI = \"mysql://superset:${{secrets.report}}@127.0.0.1:9/superset\", \
         SUPERSET_ROLES_MAPPING = {{ instructor = \"{NAME} Instructor\", operator = \"{NAME} Operator\" }}, {help} }}\n{roles}",
        needs = needs.join(", "),
    )
}

/// A request's JSON answer.
async fn answer(request: reqwest::RequestBuilder) -> Result<Value, String> {
    request.send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())
}

/// An admin session for the importer's side of the comparison.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
    csrf: String,
}

impl Api {
    async fn login(url: &str) -> Result<Api, String> {
        let http = reqwest::Client::builder().cookie_store(true).build().map_err(|e| e.to_string())?;
        let body = json!({"username": env("ASPECTS_STACK_SUPERSET_USER")?, "password": env("ASPECTS_STACK_SUPERSET_PASSWORD")?,
                          "provider": "db", "refresh": true});
        let login = answer(http.post(format!("{url}/api/v1/security/login")).json(&body)).await?;
        let token = login["access_token"].as_str().ok_or("the admin login was refused")?.to_owned();
        let csrf = answer(http.get(format!("{url}/api/v1/security/csrf_token/")).bearer_auth(&token)).await?;
        let csrf = csrf["result"].as_str().ok_or("no CSRF token")?.to_owned();
        Ok(Api { http, url: url.to_owned(), token, csrf })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("X-CSRFToken", &self.csrf)
            .header("Referer", format!("{}/", self.url))
    }

    /// One import of the whole bundle: its wall time in ms.
    async fn import(&self, whole: &aspects_superset::WholeBundle) -> Result<f64, String> {
        let part = Part::bytes(whole.zip.clone())
            .file_name("bundle.zip")
            .mime_str("application/zip")
            .map_err(|e| e.to_string())?;
        let form = Form::new()
            .part("bundle", part)
            .text("passwords", whole.passwords.expose().to_owned())
            .text("overwrite", "true");
        let started = Instant::now();
        let answer = self
            .request(reqwest::Method::POST, "/api/v1/assets/import/")
            .multipart(form)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if !answer.status().is_success() {
            return Err(format!("Superset's importer answered {}", answer.status()));
        }
        Ok(ms)
    }

    /// Deletes the bundle's assets wherever they are (dashboards first, connections last).
    async fn delete(&self, whole: &aspects_superset::WholeBundle) -> Result<(), String> {
        for api in ["/api/v1/dashboard/", "/api/v1/chart/", "/api/v1/dataset/", "/api/v1/database/"] {
            let uuids: std::collections::BTreeSet<&str> =
                whole.assets.iter().filter(|(a, _)| *a == api).map(|(_, u)| u.as_str()).collect();
            let mut ids = Vec::new();
            for page in 0.. {
                let q = format!("(columns:!(id,uuid),page:{page},page_size:100)");
                let list = answer(self.request(reqwest::Method::GET, &format!("{api}?q={q}"))).await?;
                let rows = list["result"].as_array().cloned().unwrap_or_default();
                ids.extend(
                    rows.iter()
                        .filter(|r| r["uuid"].as_str().is_some_and(|u| uuids.contains(u)))
                        .filter_map(|r| r["id"].as_i64()),
                );
                if rows.len() < 100 {
                    break;
                }
            }
            // Connections one by one (no bulk delete for them), the rest 100 a request.
            let paths: Vec<String> = if api == "/api/v1/database/" {
                ids.iter().map(|id| format!("{api}{id}")).collect()
            } else {
                ids.chunks(100)
                    .map(|c| format!("{api}?q=!({})", c.iter().map(i64::to_string).collect::<Vec<_>>().join(",")))
                    .collect()
            };
            for path in paths {
                self.request(reqwest::Method::DELETE, &path).send().await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

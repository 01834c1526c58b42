//! Opening handles and talking to Superset's REST API: a database login (access and refresh
//! token, refreshed when the access token expires), the CSRF token with the `session` cookie it
//! is bound to (a cookie jar on the one client; fetched for the first write only), rison list
//! queries (pages of 100 in a unique order, fetched at once once the first tells the count, or
//! lookups by uuid), the permission catalogue when first needed, and errors
//! that carry the HTTP status and Superset's own message, never a request body (user updates
//! carry passwords) and never the password the handle logs in with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use aspects_core::{ProviderConfig, ProviderId, Secret, SystemSchema, Value};
use aspects_engine::provider::{Connector, ProviderError, ProviderRead, ProviderWrite};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use tokio::sync::{Mutex, OnceCell, RwLock};

use crate::records::Records;
use crate::schema::{self, DEFAULT_LOCK_LEASE, DEFAULT_MAX_CONCURRENCY};

/// The Superset system: register it with the engine.
pub struct Superset;

#[async_trait]
impl Connector for Superset {
    fn schema(&self) -> SystemSchema {
        schema::schema()
    }

    async fn connect_read(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderRead>, ProviderError> {
        Ok(Handle::connect(config, deployment, true).await?)
    }

    async fn connect_write(
        &self,
        config: &ProviderConfig,
        deployment: &str,
    ) -> Result<Arc<dyn ProviderWrite>, ProviderError> {
        Ok(Handle::connect(config, deployment, false).await?)
    }
}

/// A failed request: the HTTP status (`None` when Superset was not reached) and its message.
#[derive(Debug)]
pub struct SsError {
    pub status: Option<StatusCode>,
    pub message: String,
}

/// What a request carries.
pub(crate) enum Payload<'a> {
    None,
    Json(&'a Json),
    /// A multipart form (the asset import): named fields, in order.
    Form(Vec<(&'static str, Field)>),
}

pub(crate) enum Field {
    /// A text field; a `Secret` because the import's `passwords` field holds passwords.
    Text(Secret),
    Zip(Vec<u8>),
}

struct Tokens {
    access: String,
    refresh: String,
}

/// Both handles. Planning gets it as a `ProviderRead` opened read-only: every write request is
/// refused in the client before it is sent. Not `Debug`: it holds the password.
pub struct Handle {
    /// Itself, for the lock guard, which outlives the borrow `lock` is called with.
    pub(crate) me: Weak<Handle>,
    http: reqwest::Client,
    /// Without cookies: login probes must not replace the session the CSRF token is bound to.
    probe: reqwest::Client,
    base: String,
    pub(crate) read_only: bool,
    pub(crate) target: String,
    user: String,
    password: Secret,
    tokens: RwLock<Tokens>,
    /// A plan handle's login, started at connect on a thread of its own so that it runs while
    /// the plan renders its bundles on the runtime's one thread; [`Handle::session`] takes it.
    pending_login: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<Result<Json, SsError>>>>,
    session: OnceCell<Result<(), ProviderError>>,
    csrf: Mutex<Option<String>>,
    pub(crate) provider: ProviderId,
    pub(crate) deployment: String,
    pub(crate) lease: Duration,
    pub(crate) max_concurrency: usize,
    pub(crate) queries: Arc<AtomicU64>,
    /// The permission catalogue, read when first needed ([`Handle::catalogue`]).
    catalogue: OnceCell<Catalogue>,
    /// One turn per list endpoint: Flask-AppBuilder keeps a list request's filters on the
    /// endpoint's object, which all threads of a gunicorn worker share, so two filtered lists
    /// of one endpoint at once can each run with the other's filters, or with both (seen: a
    /// lookup of 90 charts answered with another lookup's charts). Lists of one endpoint take
    /// turns here; other endpoints go at once.
    endpoints: std::sync::Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
    /// Read-only handles: the CSS templates holding records and markers, read once per plan.
    pub(crate) templates: OnceCell<Arc<Vec<Json>>>,
    /// This deployment's records as last written (write handles only; writes run under the lock).
    pub(crate) records: Mutex<Option<Records>>,
    /// Each `superset_assets` resource's rendered bundle, by address: rendered once per run.
    pub(crate) bundles: std::sync::Mutex<BTreeMap<String, Arc<Vec<crate::assets::Asset>>>>,
    /// Superset's metadata database, when `metadata_url` is set (embedded dashboards only).
    pub(crate) metadata: Option<aspects_sql::Sql>,
}

const LOGIN: &str = "/api/v1/security/login";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Database creates and updates test the connection from Superset, which may take a while.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Superset's `FAB_API_MAX_PAGE_SIZE`: larger pages are silently cut to it.
const PAGE: usize = 100;
/// Uuids per lookup: each takes 39 bytes of the request line (32 hex digits, quoted, the
/// quotes percent-encoded, a comma), so 90 of them and the rest of the query stay near 3.7 KB,
/// under gunicorn's limit of 4094 bytes.
const UUIDS: usize = 90;
/// Requests one list keeps in flight: a long list (thousands of users) does not queue a
/// request per page on Superset at once.
const IN_FLIGHT: usize = 8;

/// What a rison query leaves as it is: unreserved characters and rison's own punctuation, which
/// a query string may hold (fewer bytes per uuid in a lookup); everything else is encoded.
const RISON_KEEPS: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'(')
    .remove(b')')
    .remove(b'!')
    .remove(b':')
    .remove(b',');

/// `path?q=` and the rison query, encoded.
fn query_path(path: &str, rison: &str) -> String {
    format!("{path}?q={}", percent_encoding::utf8_percent_encode(rison, RISON_KEEPS))
}

/// `PERMISSION on VIEW` <-> id.
#[derive(Default)]
pub(crate) struct Catalogue {
    pub ids: BTreeMap<String, i64>,
    pub names: BTreeMap<i64, String>,
}

fn count_of(answer: &Json) -> usize {
    answer.get("count").and_then(Json::as_u64).unwrap_or(0) as usize
}

fn rows_of(answer: Json) -> Vec<Json> {
    match answer {
        Json::Object(mut o) => match o.remove("result") {
            Some(Json::Array(rows)) => rows,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

impl Handle {
    async fn connect(config: &ProviderConfig, deployment: &str, read_only: bool) -> Result<Arc<Handle>, ProviderError> {
        let attr = |name: &str| config.attrs.get(name);
        let id = &config.id;
        let Some(Value::Str(url)) = attr("url") else {
            return Err(ProviderError::new(format!("[providers.{id}] needs `url`")));
        };
        let parsed = url::Url::parse(url).map_err(|e| ProviderError::new(format!("[providers.{id}] `url`: {e}")))?;
        let target = format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default(),
            parsed.port_or_known_default().unwrap_or(80)
        );
        let password = match attr("password") {
            Some(Value::Sensitive(s)) => s.clone(),
            _ => return Err(ProviderError::new(format!("[providers.{id}] needs `password` from [secrets]"))),
        };
        let build = |cookies: bool| {
            reqwest::Client::builder()
                .cookie_store(cookies)
                // gunicorn closes an idle keep-alive connection after 2 s; a request sent on it
                // as it closes fails ("connection closed before message completed").
                .pool_idle_timeout(Duration::from_secs(1))
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .build()
                .map_err(|e| ProviderError::new(format!("cannot set up HTTP for Superset: {e}")))
        };
        let int = |name: &str, default: i64| match attr(name) {
            Some(Value::Int(n)) if *n > 0 => *n as u64,
            _ => default as u64,
        };
        let handle = Handle {
            me: Weak::new(),
            http: build(true)?,
            probe: build(false)?,
            base: url.trim_end_matches('/').to_owned(),
            read_only,
            target,
            user: attr("username").and_then(Value::as_str).unwrap_or_default().to_owned(),
            password,
            tokens: RwLock::new(Tokens { access: String::new(), refresh: String::new() }),
            pending_login: std::sync::Mutex::new(None),
            session: OnceCell::new(),
            csrf: Mutex::new(None),
            provider: id.clone(),
            deployment: deployment.to_owned(),
            lease: Duration::from_secs(int("lock_lease_seconds", DEFAULT_LOCK_LEASE)),
            max_concurrency: int("max_concurrency", DEFAULT_MAX_CONCURRENCY) as usize,
            queries: Arc::new(AtomicU64::new(0)),
            catalogue: OnceCell::new(),
            templates: OnceCell::new(),
            endpoints: std::sync::Mutex::new(BTreeMap::new()),
            records: Mutex::new(None),
            bundles: std::sync::Mutex::new(BTreeMap::new()),
            metadata: Self::connect_metadata(config, read_only).await?,
        };
        // The only request at connect time: the CSRF token waits for the first write, the
        // permission catalogue for the first role that needs it. A plan handle does not wait
        // for it here (`pending_login`); a write handle's errors come before any lock is taken.
        if read_only {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (client, url, body) = (build(false)?, format!("{}{LOGIN}", handle.base), handle.login_body());
            handle.queries.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || {
                let answer = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt
                        .block_on(answer(
                            client.post(url).header("Content-Type", "application/json").body(body.to_string()),
                            LOGIN,
                        ))
                        .map(|bytes| serde_json::from_slice(&bytes).unwrap_or(Json::Null)),
                    Err(e) => Err(SsError { status: None, message: e.to_string() }),
                };
                let _ = tx.send(answer);
            });
            *handle.pending_login.lock().expect("not poisoned") = Some(rx);
        } else {
            handle.login().await?;
        }
        Ok(Arc::new_cyclic(|me| Handle { me: me.clone(), ..handle }))
    }

    /// Waits for the login a plan handle started at connect (once; every read calls it first).
    pub(crate) async fn session(&self) -> Result<(), ProviderError> {
        self.session
            .get_or_init(|| async {
                let pending = self.pending_login.lock().expect("not poisoned").take();
                let Some(rx) = pending else { return Ok(()) };
                let answer = rx.await.unwrap_or_else(|_| Err(SsError { status: None, message: "it stopped".into() }));
                self.take_login(answer).await
            })
            .await
            .clone()
    }

    /// The metadata database's pool (`READ ONLY` sessions on plan handles), when configured.
    async fn connect_metadata(
        config: &ProviderConfig,
        read_only: bool,
    ) -> Result<Option<aspects_sql::Sql>, ProviderError> {
        let Some(url) = config.attrs.get("metadata_url").and_then(Value::as_str) else { return Ok(None) };
        let fail =
            |e: &dyn std::fmt::Display| ProviderError::new(format!("[providers.{}] `metadata_url`: {e}", config.id));
        crate::schema::check_metadata_url(&Value::from(url)).map_err(|e| fail(&e))?;
        let mut options: sqlx::mysql::MySqlConnectOptions = url.parse().map_err(|e| fail(&e))?;
        if let Some(Value::Sensitive(s)) = config.attrs.get("metadata_password") {
            options = options.password(s.expose());
        }
        Ok(Some(aspects_sql::Sql::connect(options, &crate::embedded::METADATA, 2, read_only).await?))
    }

    fn login_body(&self) -> Json {
        json!({"username": self.user, "password": self.password.expose(), "provider": "db", "refresh": true})
    }

    /// Logs the provider user in: a fresh access and refresh token.
    async fn login(&self) -> Result<(), ProviderError> {
        let answer = self.send(&self.http, Method::POST, LOGIN, Some(&self.login_body()), None).await;
        self.take_login(answer).await
    }

    /// Keeps the tokens of a login's answer, or says why there are none.
    async fn take_login(&self, answer: Result<Json, SsError>) -> Result<(), ProviderError> {
        let tokens = match answer {
            Ok(t) => t,
            Err(e) if e.status == Some(StatusCode::UNAUTHORIZED) => {
                return Err(ProviderError::new(format!(
                    "Superset at {} refused the login of the provider user '{}': {}",
                    self.target, self.user, e.message
                ))
                .with_hint("check `username` and the secret behind `password` in [providers.superset]"));
            }
            Err(e) => return Err(self.err(&e, "logging in")),
        };
        let token = |k: &str| tokens.get(k).and_then(Json::as_str).unwrap_or_default().to_owned();
        *self.tokens.write().await = Tokens { access: token("access_token"), refresh: token("refresh_token") };
        Ok(())
    }

    /// A new access token from the refresh token, or a new login when that is refused too.
    async fn refresh(&self) -> Result<(), ProviderError> {
        let refresh = self.tokens.read().await.refresh.clone();
        match self.send(&self.http, Method::POST, "/api/v1/security/refresh", None, Some(&refresh)).await {
            Ok(answer) if answer.get("access_token").is_some_and(Json::is_string) => {
                self.tokens.write().await.access = answer["access_token"].as_str().unwrap_or_default().to_owned();
                Ok(())
            }
            _ => self.login().await,
        }
    }

    /// One request with `bearer`; the answer's JSON body. Never logs a body.
    async fn send(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<&Json>,
        bearer: Option<&str>,
    ) -> Result<Json, SsError> {
        let payload = body.map_or(Payload::None, Payload::Json);
        let bytes = self.request(client, method, path, &payload, bearer).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Json::Null))
    }

    /// One request with `bearer`; the answer's body. Never logs a body.
    async fn request(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        payload: &Payload<'_>,
        bearer: Option<&str>,
    ) -> Result<Vec<u8>, SsError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let mut request =
            client.request(method.clone(), format!("{}{path}", self.base)).header("Accept", "application/json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if method != Method::GET && bearer.is_some() && path != "/api/v1/security/refresh" {
            // The importer checks the Referer like a browser form (CSRF protection).
            request = request
                .header("X-CSRFToken", self.csrf.lock().await.clone().unwrap_or_default())
                .header("Referer", format!("{}/", self.base));
        }
        request = match payload {
            Payload::None => request,
            Payload::Json(body) => request.header("Content-Type", "application/json").body(body.to_string()),
            Payload::Form(fields) => {
                let mut form = reqwest::multipart::Form::new();
                for (name, value) in fields.iter() {
                    form = match value {
                        Field::Text(text) => form.text(*name, text.expose().to_owned()),
                        Field::Zip(bytes) => form.part(
                            *name,
                            reqwest::multipart::Part::bytes(bytes.clone())
                                .file_name("bundle.zip")
                                .mime_str("application/zip")
                                .map_err(|e| SsError { status: None, message: reqwest_reason(e) })?,
                        ),
                    };
                }
                request.multipart(form)
            }
        };
        answer(request, path).await
    }

    /// An authenticated request: refreshes the token once when Superset says it expired; writes
    /// carry the CSRF token (fetched once per handle, with its session cookie).
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Json>) -> Result<Json, SsError> {
        let bytes = self.call_with(method, path, &body.map_or(Payload::None, Payload::Json)).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Json::Null))
    }

    /// [`Handle::call`] with any payload, answering the raw body (an export zip).
    pub(crate) async fn call_with(
        &self,
        method: Method,
        path: &str,
        payload: &Payload<'_>,
    ) -> Result<Vec<u8>, SsError> {
        let write = method != Method::GET;
        if write && self.read_only {
            return Err(SsError {
                status: None,
                message: "this handle is read-only: plan and drift never write".into(),
            });
        }
        if write && self.csrf.lock().await.is_none() {
            let access = self.tokens.read().await.access.clone();
            let answer =
                self.send(&self.http, Method::GET, "/api/v1/security/csrf_token/", None, Some(&access)).await?;
            *self.csrf.lock().await = answer.get("result").and_then(Json::as_str).map(str::to_owned);
        }
        let access = self.tokens.read().await.access.clone();
        let mut answer = self.request(&self.http, method.clone(), path, payload, Some(&access)).await;
        // gunicorn may close a kept-alive connection as a request goes out on it ("connection
        // closed before message completed"); a read is safe to send again, a write is not.
        for _ in 0..2 {
            match &answer {
                Err(SsError { status: None, .. }) if method == Method::GET => {
                    tracing::debug!(path, "request failed before an answer; sending it again");
                    answer = self.request(&self.http, method.clone(), path, payload, Some(&access)).await;
                }
                _ => break,
            }
        }
        match answer {
            // The access token expired (15 minutes by default): refresh it and send again, once.
            Err(e) if e.status == Some(StatusCode::UNAUTHORIZED) => {
                self.refresh().await.map_err(|p| SsError { status: None, message: p.message })?;
                let access = self.tokens.read().await.access.clone();
                self.request(&self.http, method, path, payload, Some(&access)).await
            }
            other => other,
        }
    }

    /// A write request: a crash point for the fault hook.
    pub(crate) async fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
        doing: &str,
    ) -> Result<Json, ProviderError> {
        let result = self.call(method, path, body).await;
        aspects_engine::fault::after_write();
        result.map_err(|e| self.err(&e, doing))
    }

    /// Every row of a list endpoint (`path` ends in `/`), 100 per request, ordered by `order`: a
    /// column whose values are unique, so that every row has one place in the order and the
    /// pages neither overlap nor skip rows (Superset's default order, `changed_on`, ties for
    /// everything one import wrote, and ties came back in a different order on each page). Where
    /// no unique column is orderable (datasets: by name), a row on two pages, which means another
    /// on none, reads the list again. The first page tells the count; the others are fetched at
    /// once. Rows carry `id`. `filters` are rison `(col:..,opr:..,value:..)` items, already quoted.
    pub(crate) async fn list(
        &self,
        path: &str,
        order: &str,
        columns: &[&str],
        filters: &[String],
    ) -> Result<Vec<Json>, SsError> {
        let query = |page: usize| {
            let mut q = format!("(order_column:{order},order_direction:asc,page:{page},page_size:{PAGE}");
            if !columns.is_empty() {
                q.push_str(&format!(",columns:!({})", columns.join(",")));
            }
            if !filters.is_empty() {
                q.push_str(&format!(",filters:!({})", filters.join(",")));
            }
            q.push(')');
            query_path(path, &q)
        };
        let endpoint = self.endpoint(path);
        let _turn = endpoint.lock().await;
        // A row deleted or created between two pages shifts the ones after it: the counts
        // differ, and the whole list is read again.
        for _ in 0..3 {
            let first = self.call(Method::GET, &query(0), None).await?;
            let count = count_of(&first);
            let mut out = rows_of(first);
            let pages: Vec<String> = (1..count.div_ceil(PAGE)).map(query).collect();
            // Filtered pages one after another (see `endpoints`: one page's request could clear
            // another's filters); pages without filters are safe at once.
            let rest = if filters.is_empty() { self.all_at_once(pages).await? } else { self.one_by_one(pages).await? };
            let same = rest.iter().all(|answer| count_of(answer) == count);
            out.extend(rest.into_iter().flat_map(rows_of));
            // A row on two pages means another on none (`order` ties: datasets by name).
            let distinct: BTreeSet<i64> = out.iter().filter_map(|r| r.get("id").and_then(Json::as_i64)).collect();
            if same && out.len() == count && distinct.len() == count {
                return Ok(out);
            }
        }
        Err(SsError { status: None, message: format!("the list {path} kept changing while it was read") })
    }

    /// The rows of a list endpoint whose uuid is one of `uuids`, in requests of [`UUIDS`]
    /// uuids sent at once. An answer that holds exactly its uuids is right whatever happened
    /// beside it; one that is short or holds others (an asset that does not exist, or another
    /// request's filters: see `endpoints`) is asked again alone.
    pub(crate) async fn list_uuids(&self, path: &str, columns: &[&str], uuids: &[&str]) -> Result<Vec<Json>, SsError> {
        let query = |chunk: &[&str]| {
            // Without dashes (Superset parses either): 10% more uuids per request.
            let values = chunk.iter().map(|v| rison(&v.replace('-', ""))).collect::<Vec<_>>().join(",");
            let q = format!(
                "(columns:!({}),filters:!((col:uuid,opr:in,value:!({values}))),page:0,page_size:{PAGE})",
                columns.join(",")
            );
            query_path(path, &q)
        };
        let key = |u: &str| u.replace('-', "").to_ascii_lowercase();
        let endpoint = self.endpoint(path);
        let _turn = endpoint.lock().await;
        let chunks: Vec<&[&str]> = uuids.chunks(UUIDS).collect();
        let answers = self.all_at_once(chunks.iter().map(|c| query(c)).collect()).await?;
        let mut out = Vec::new();
        for (chunk, answer) in chunks.into_iter().zip(answers) {
            let asked: BTreeSet<String> = chunk.iter().map(|u| key(u)).collect();
            let own = |rows: &[Json]| {
                rows.iter().all(|r| asked.contains(&key(r.get("uuid").and_then(Json::as_str).unwrap_or_default())))
            };
            let (count, rows) = (count_of(&answer), rows_of(answer));
            if rows.len() == chunk.len() && count == rows.len() && own(&rows) {
                out.extend(rows);
                continue;
            }
            let answer = self.call(Method::GET, &query(chunk), None).await?;
            let (count, rows) = (count_of(&answer), rows_of(answer));
            if rows.len() < count || !own(&rows) {
                return Err(SsError {
                    status: None,
                    message: format!("{path} answered {} of {count} rows, not all of the uuids asked", rows.len()),
                });
            }
            out.extend(rows);
        }
        Ok(out)
    }

    /// How many rows of a list endpoint have one of `ids`, and the one of them saved last
    /// (its `columns`). Filtered, so it takes the endpoint's turn (see `endpoints`).
    pub(crate) async fn newest(
        &self,
        path: &str,
        columns: &[&str],
        ids: &[i64],
    ) -> Result<(usize, Option<Json>), SsError> {
        let values = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let q = format!(
            "(columns:!({}),filters:!((col:id,opr:in,value:!({values}))),order_column:changed_on_delta_humanized,\
             order_direction:desc,page:0,page_size:1)",
            columns.join(",")
        );
        let endpoint = self.endpoint(path);
        let _turn = endpoint.lock().await;
        let answer = self.call(Method::GET, &query_path(path, &q), None).await?;
        Ok((count_of(&answer), rows_of(answer).into_iter().next()))
    }

    /// GETs of `paths`, one after another; the answers in order.
    async fn one_by_one(&self, paths: Vec<String>) -> Result<Vec<Json>, SsError> {
        let mut answers = Vec::with_capacity(paths.len());
        for path in paths {
            answers.push(self.call(Method::GET, &path, None).await?);
        }
        Ok(answers)
    }

    /// The turn of one list endpoint (`endpoints`).
    fn endpoint(&self, path: &str) -> Arc<Mutex<()>> {
        self.endpoints.lock().expect("not poisoned").entry(path.to_owned()).or_default().clone()
    }

    /// GETs of `paths`, sent at once (gunicorn serves them in parallel), at most
    /// [`IN_FLIGHT`] at a time; the answers in order.
    async fn all_at_once(&self, paths: Vec<String>) -> Result<Vec<Json>, SsError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.me.upgrade().ok_or_else(|| SsError { status: None, message: "the handle is gone".into() })?;
        let mut waiting = paths.into_iter().enumerate();
        let mut set = tokio::task::JoinSet::new();
        let mut answers = Vec::new();
        loop {
            while set.len() < IN_FLIGHT
                && let Some((i, path)) = waiting.next()
            {
                let me = me.clone();
                set.spawn(async move { (i, me.call(Method::GET, &path, None).await) });
            }
            let Some(joined) = set.join_next().await else { break };
            let (i, answer) = joined.map_err(|e| SsError { status: None, message: e.to_string() })?;
            answers.push((i, answer?));
        }
        answers.sort_by_key(|(i, _)| *i);
        Ok(answers.into_iter().map(|(_, a)| a).collect())
    }

    /// Logs in as `user` with `password` on a cookie-less client: whether Superset accepts it.
    pub(crate) async fn probe_login(&self, user: &str, password: &str) -> Result<bool, SsError> {
        let body = json!({"username": user, "password": password, "provider": "db", "refresh": false});
        match self.send(&self.probe, Method::POST, LOGIN, Some(&body), None).await {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(StatusCode::UNAUTHORIZED) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The permission catalogue (`permissions-resources`), read once per handle and only when
    /// asked: a plan needs it only for roles that list permissions, or whose live permissions
    /// are named.
    pub(crate) async fn catalogue(&self) -> Result<&Catalogue, ProviderError> {
        self.catalogue.get_or_try_init(|| self.permission_catalogue()).await
    }

    /// The catalogue if it was read.
    pub(crate) fn learnt_catalogue(&self) -> Option<&Catalogue> {
        self.catalogue.get()
    }

    /// The permission catalogue as Superset has it now: `PERMISSION on VIEW` <-> id, a few
    /// requests.
    pub(crate) async fn permission_catalogue(&self) -> Result<Catalogue, ProviderError> {
        let rows = self
            .list("/api/v1/security/permissions-resources/", "id", &[], &[])
            .await
            .map_err(|e| self.err(&e, "reading the permission catalogue"))?;
        let mut catalogue = Catalogue::default();
        for row in rows {
            let (Some(id), Some(p), Some(v)) = (
                row.get("id").and_then(Json::as_i64),
                row.pointer("/permission/name").and_then(Json::as_str),
                row.pointer("/view_menu/name").and_then(Json::as_str),
            ) else {
                continue;
            };
            let name = format!("{p} on {v}");
            catalogue.ids.insert(name.clone(), id);
            catalogue.names.insert(id, name);
        }
        Ok(catalogue)
    }

    /// `doing` is a phrase like "creating role 'x'".
    pub(crate) fn err(&self, e: &SsError, doing: &str) -> ProviderError {
        let target = &self.target;
        match e.status {
            None => ProviderError::new(format!("{doing} on Superset at {target} failed: {}", e.message))
                .with_hint("is Superset running? check `url` in [providers.superset]"),
            Some(StatusCode::FORBIDDEN) => ProviderError::new(format!(
                "Superset at {target} refused {doing} to the provider user '{}': {}",
                self.user, e.message
            ))
            .with_hint("the provider user needs the Admin role"),
            Some(status) => ProviderError::new(format!(
                "{doing} on Superset at {target} failed: HTTP {}: {}",
                status.as_u16(),
                e.message
            )),
        }
    }
}

/// Sends `request`: the answer's body, or the status and Superset's message. Never logs a body.
async fn answer(request: reqwest::RequestBuilder, path: &str) -> Result<Vec<u8>, SsError> {
    let started = std::time::Instant::now();
    let response = request.send().await.map_err(|e| SsError { status: None, message: reqwest_reason(e) })?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| SsError { status: Some(status), message: reqwest_reason(e) })?;
    tracing::debug!(path, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "answered");
    if status.is_success() {
        return Ok(bytes.to_vec());
    }
    let json: Json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
    Err(SsError { status: Some(status), message: message_of(&json, status) })
}

/// What Superset said: `message` (text or field errors), `errors[].message`, or JWT's `msg`.
fn message_of(body: &Json, status: StatusCode) -> String {
    let text = match body {
        Json::Object(o) => match (o.get("message"), o.get("errors"), o.get("msg")) {
            (Some(Json::String(m)), _, _) => m.clone(),
            (Some(m), _, _) => m.to_string(),
            (_, Some(Json::Array(errors)), _) => {
                errors.iter().filter_map(|e| e.get("message").and_then(Json::as_str)).collect::<Vec<_>>().join("; ")
            }
            (_, _, Some(Json::String(m))) => m.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    if text.is_empty() { status.canonical_reason().unwrap_or("no message").to_owned() } else { text }
}

/// What reqwest says, with the chain of causes (connection refused ...), never the URL's query.
fn reqwest_reason(e: reqwest::Error) -> String {
    aspects_engine::provider::error_chain(&e.without_url())
}

/// A rison string: always quoted, `!` and `'` escaped with `!`.
pub fn rison(s: &str) -> String {
    format!("'{}'", s.replace('!', "!!").replace('\'', "!'"))
}

/// A rison filter item.
pub fn filter(col: &str, opr: &str, value: &str) -> String {
    format!("(col:{col},opr:{opr},value:{})", rison(value))
}

/// Attribute maps from pairs.
pub fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A sorted, de-duplicated list of strings: how role names and permissions compare.
pub fn sorted_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    let set: std::collections::BTreeSet<&str> = items.into_iter().collect();
    Value::List(set.into_iter().map(Value::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rison_quotes_everything() {
        assert_eq!(rison("it's 100%!"), "'it!'s 100%!!'");
        assert_eq!(filter("name", "eq", "a b"), "(col:name,opr:eq,value:'a b')");
    }

    #[test]
    fn queries_keep_rison_and_encode_what_a_query_string_would_split() {
        let q = format!("(filters:!({}),page:0)", filter("name", "eq", "a b&c+d#e=f'%"));
        assert_eq!(
            query_path("/api/v1/x/", &q),
            "/api/v1/x/?q=(filters:!((col:name,opr:eq,value:%27a%20b%26c%2Bd%23e%3Df!%27%25%27)),page:0)"
        );
    }

    #[test]
    fn messages_come_from_superset() {
        let m = |j: Json| message_of(&j, StatusCode::BAD_REQUEST);
        assert_eq!(m(json!({"message": "Not found"})), "Not found");
        assert_eq!(m(json!({"message": {"email": ["bad"]}})), r#"{"email":["bad"]}"#);
        assert_eq!(m(json!({"errors": [{"message": "a"}, {"message": "b"}]})), "a; b");
        assert_eq!(m(json!({"msg": "Token has expired"})), "Token has expired");
        assert_eq!(m(Json::Null), "Bad Request");
    }
}

//! `superset_assets`: a folder of Superset v1 YAML assets, rendered (bundle.rs), compared per
//! asset by UUID (compare.rs) and imported through `POST /api/v1/assets/import/`.
//!
//! "Nothing changed" is decided from list metadata alone and the bundle's markers (markers.rs):
//! a kind whose markers all hold for the plan's content is checked with one request (its seen
//! assets still there, the latest `changed_on` among them unmoved); the others, and dashboards
//! whose roles or owners are compared (they live in link tables, out of `changed_on`'s reach), are
//! looked up by uuid (id and `changed_on`; 90 uuids a request, all requests at once).
//! Only an asset whose marker does not match (its content or password in the plan moved, or
//! someone saved it in Superset since) is read back, through Superset's export of that kind,
//! and compared structurally. Apply imports only the assets that differ (`sparse`: the rest of
//! the bundle stays as it is), deletes the owned ones the bundle no longer holds (dashboards,
//! then charts, then datasets; database connections are released, never deleted by an update)
//! and records the markers of what it imported.

mod archive;
mod bundle;
mod compare;
mod markers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aspects_core::{Live, Resource, Secret, Value};
use aspects_engine::provider::{Invalid, ProviderError};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value as Json};

pub use bundle::Asset;
pub(crate) use bundle::{Kind, localized_uuid};

use bundle::{Inputs, key};
use markers::{Entry, Markers};

use crate::client::{Field, Handle, Payload, SsError};
use crate::schema::{str_attr, str_list};

/// The live side of an asset whose export equals the plan but whose marker does not match.
const UNRECORDED: &str = "(reads equal, but not as aspects recorded it: saved in Superset since, or a new password)";
/// The live side of an owned asset the bundle no longer holds.
const LEAVING: &str = "(no longer in the bundle: deleted)";
const RELEASED: &str = "(no longer in the bundle: the connection is kept and no longer managed; only destroying the \
                        whole bundle, with --allow-destroy, deletes connections)";

/// Assets to look up: uuids by kind.
type Wanted<'a> = BTreeMap<Kind, BTreeSet<&'a str>>;

/// Ids per request of [`Handle::unmoved`]: up to 7 digits and a comma each, the query stays
/// under gunicorn's 4094-byte request line.
const IDS: usize = 400;

/// An asset as the plan compares it: its content, plus what the importer does not carry and
/// apply sets after it: a dashboard's roles (`_roles`) and the bundle's owners on charts and
/// dashboards (`_owners`, only when the plan names owners).
fn wanted(a: &Asset, owners: &[&str]) -> Json {
    let mut c = compare::comparable(a.kind, &a.content);
    if let Json::Object(m) = &mut c {
        if a.kind == Kind::Dashboard && !a.roles.is_empty() {
            m.insert("_roles".into(), sorted(a.roles.iter().map(String::as_str)));
        }
        if !owners.is_empty() && matches!(a.kind, Kind::Chart | Kind::Dashboard) {
            m.insert("_owners".into(), sorted(owners.iter().copied()));
        }
    }
    c
}

fn sorted<'a>(items: impl IntoIterator<Item = &'a str>) -> Json {
    let set: BTreeSet<&str> = items.into_iter().collect();
    Json::from(set.into_iter().collect::<Vec<&str>>())
}

/// The live `_roles` and `_owners` of an asset, from its list row, where the plan compares them.
fn access(want: &Json, l: &Listed, users: &BTreeMap<i64, String>) -> Map<String, Json> {
    let mut out = Map::new();
    let Json::Object(w) = want else { return out };
    if w.contains_key("_roles") {
        out.insert("_roles".into(), sorted(l.roles.iter().map(String::as_str)));
    }
    if w.contains_key("_owners") {
        let names: Vec<String> =
            l.owners.iter().map(|id| users.get(id).cloned().unwrap_or_else(|| format!("(user #{id})"))).collect();
        out.insert("_owners".into(), sorted(names.iter().map(String::as_str)));
    }
    out
}

fn overlay(got: &mut Json, access: Map<String, Json>) {
    if let Json::Object(g) = got {
        g.extend(access);
    }
}

/// An asset as its kind's list shows it.
struct Listed {
    id: i64,
    changed_on: String,
    title: String,
    /// Dashboards: their roles' names; charts and dashboards: their owners' ids.
    roles: Vec<String>,
    owners: Vec<i64>,
    /// Not listed but seen when the markers were written, its marker found to hold.
    holds: bool,
}

impl Listed {
    fn seen(&self) -> (i64, String) {
        (self.id, self.changed_on.clone())
    }
}

/// Per kind, the seen assets (uuid, id, `changed_on`) when every marker of the kind holds for
/// the plan's content; `None` when one does not.
type Seen<'a> = BTreeMap<Kind, Option<Vec<(&'a str, i64, &'a str)>>>;

/// An asset's marker for the plan's comparable form `w`, had Superset shown `changed_on`.
fn marker_of(salt: &str, a: &Asset, w: &Json, changed_on: &str) -> String {
    compare::marker(&compare::fingerprint(salt, w, &a.roles, expose(a.password.as_ref())), changed_on)
}

/// The plan's comparable form of each asset, by key (`normalise` put it in `assets`).
fn want_of(r: &Resource) -> &Map<String, Json> {
    static EMPTY: std::sync::LazyLock<Map<String, Json>> = std::sync::LazyLock::new(Map::new);
    match r.get("assets") {
        Some(Value::Json(j)) => j.as_object().unwrap_or(&EMPTY),
        _ => &EMPTY,
    }
}

fn wanted_of(assets: &[Asset]) -> Wanted<'_> {
    let mut wanted = Wanted::new();
    for a in assets {
        wanted.entry(a.kind).or_default().insert(a.uuid.as_str());
    }
    wanted
}

/// The folder a path attribute names, relative to the plan file the resource is written in.
fn folder(r: &Resource, attr: &str) -> Option<PathBuf> {
    let path = str_attr(&r.attrs, attr);
    if path.is_empty() {
        return None;
    }
    // `origin` is `file:line:col`.
    let plan_dir = r.origin.rsplitn(3, ':').nth(2).and_then(|f| Path::new(f).parent()).map(Path::to_owned);
    Some(plan_dir.unwrap_or_default().join(path))
}

fn inputs(r: &Resource) -> Inputs<'_> {
    let directory = folder(r, "directory").unwrap_or_default();
    Inputs {
        templates: folder(r, "templates").unwrap_or_else(|| directory.clone()),
        directory,
        context: r.get("context"),
        locales: str_list(r.get("locales")).into_iter().map(str::to_owned).collect(),
    }
}

/// The import's `passwords` field: `{"databases/<file>.yaml": password}`.
fn passwords<'a>(assets: impl IntoIterator<Item = &'a Asset>) -> Secret {
    let map: Map<String, Json> = assets
        .into_iter()
        .filter_map(|a| Some((a.zip_path.clone(), Json::String(a.password.as_ref()?.expose().to_owned()))))
        .collect();
    Secret::new(Json::Object(map).to_string())
}

/// A `superset_assets` resource's whole rendered bundle as one request of Superset's own
/// importer takes it: what `cargo xtask bench` compares aspects' apply with.
pub struct WholeBundle {
    pub zip: Vec<u8>,
    pub passwords: Secret,
    /// Each asset's REST collection (`/api/v1/chart/`) and UUID.
    pub assets: Vec<(&'static str, String)>,
}

pub fn whole_bundle(r: &Resource) -> Result<WholeBundle, String> {
    let assets = bundle::load(&inputs(r))?;
    Ok(WholeBundle {
        zip: archive::import_zip(&assets)?,
        passwords: passwords(&assets),
        assets: assets.iter().map(|a| (a.kind.api(), a.uuid.clone())).collect(),
    })
}

fn expose(s: Option<&Secret>) -> Option<&str> {
    s.map(Secret::expose)
}

impl Handle {
    /// The resource's rendered bundle, rendered once per handle.
    pub(crate) fn bundle(&self, r: &Resource) -> Result<Arc<Vec<Asset>>, String> {
        let address = r.address.to_string();
        if let Some(b) = self.bundles.lock().expect("not poisoned").get(&address) {
            return Ok(b.clone());
        }
        let assets = Arc::new(bundle::load(&inputs(r))?);
        self.bundles.lock().expect("not poisoned").insert(address, assets.clone());
        Ok(assets)
    }

    /// The comparable form of every asset, as the `assets` attribute (left out when the bundle
    /// does not render: `check` reports why).
    pub(crate) fn normalise_assets(&self, r: &mut Resource) {
        if let Ok(assets) = self.bundle(r) {
            let owners = str_list(r.get("owners"));
            let map: Map<String, Json> = assets.iter().map(|a| (a.key(), wanted(a, &owners))).collect();
            r.attrs.insert("assets".into(), Value::Json(Arc::new(Json::Object(map))));
        }
    }

    pub(crate) fn check_assets(&self, r: &Resource) -> Vec<Invalid> {
        match self.bundle(r) {
            Ok(_) => Vec::new(),
            Err(e) => vec![Invalid::new("directory", format!("the asset bundle does not load: {e}")).with_hint(
                "each file is one YAML mapping rendered as a Jinja template: every name it uses must be in `context` \
                 (Tutor's names), `{% include %}`d files must be under `templates`, and Superset's own Jinja must \
                 stay inside {% raw %}...{% endraw %}",
            )],
        }
    }

    /// The `kind` assets with these uuids that exist: uuid -> id, `changed_on` and title. Looked
    /// up by uuid rather than paged through the whole kind: each request holds all its rows
    /// whatever their order, the requests go at once, and other bundles' assets are not read.
    async fn listed(&self, kind: Kind, uuids: &[&str]) -> Result<BTreeMap<String, Listed>, ProviderError> {
        if uuids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let changed = kind.changed_key();
        let mut columns = vec!["id", "uuid", changed, kind.title_key()];
        match kind {
            Kind::Dashboard => columns.extend(["owners.id", "roles.name"]),
            Kind::Chart => columns.push("owners.id"),
            _ => {}
        }
        let rows = self
            .list_uuids(kind.api(), &columns, uuids)
            .await
            .map_err(|e| self.err(&e, &format!("listing {}s", kind.word())))?;
        let text = |row: &Json, k: &str| row.get(k).and_then(Json::as_str).unwrap_or_default().to_owned();
        let each = |row: &Json, k: &str| row.get(k).and_then(Json::as_array).cloned().unwrap_or_default().into_iter();
        Ok(rows
            .iter()
            .map(|row| {
                let listed = Listed {
                    id: row.get("id").and_then(Json::as_i64).unwrap_or_default(),
                    changed_on: text(row, changed),
                    title: text(row, kind.title_key()),
                    roles: each(row, "roles").filter_map(|r| r.get("name")?.as_str().map(str::to_owned)).collect(),
                    owners: each(row, "owners").filter_map(|o| o.get("id")?.as_i64()).collect(),
                    holds: false,
                };
                (text(row, "uuid"), listed)
            })
            .collect())
    }

    /// The four kinds' `wanted` assets at once: gunicorn serves the requests in parallel.
    async fn list_all(&self, wanted: &Wanted<'_>) -> Result<BTreeMap<Kind, BTreeMap<String, Listed>>, ProviderError> {
        let of = |kind: Kind| wanted.get(&kind).map(|u| u.iter().copied().collect::<Vec<&str>>()).unwrap_or_default();
        let (d, s, c, b) = (of(Kind::Database), of(Kind::Dataset), of(Kind::Chart), of(Kind::Dashboard));
        let (databases, datasets, charts, dashboards) = tokio::join!(
            self.listed(Kind::Database, &d),
            self.listed(Kind::Dataset, &s),
            self.listed(Kind::Chart, &c),
            self.listed(Kind::Dashboard, &b)
        );
        Ok([
            (Kind::Database, databases?),
            (Kind::Dataset, datasets?),
            (Kind::Chart, charts?),
            (Kind::Dashboard, dashboards?),
        ]
        .into())
    }

    /// The comparable form of the `kind` assets with these ids, by uuid, from Superset's export
    /// (the same YAML the importer takes), 100 ids a request.
    async fn exported(&self, kind: Kind, ids: &[i64]) -> Result<BTreeMap<String, Json>, ProviderError> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(100) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let path = format!("{}export/?q=!({list})", kind.api());
            let doing = format!("exporting {}s to compare them", kind.word());
            let bytes = self.call_with(Method::GET, &path, &Payload::None).await.map_err(|e| self.err(&e, &doing))?;
            for content in
                archive::read_export(&bytes, kind).map_err(|e| ProviderError::new(format!("{doing}: {e}")))?
            {
                let uuid = content.get("uuid").and_then(Json::as_str).unwrap_or_default().to_ascii_lowercase();
                out.insert(uuid, compare::comparable(kind, &content));
            }
        }
        Ok(out)
    }

    /// Refuses assets another bundle (of any deployment) owns: one object, one owner.
    fn owned_elsewhere(&self, name: &str, assets: &[Asset], all: &[Markers]) -> Result<(), ProviderError> {
        for m in all.iter().filter(|m| (m.deployment.as_str(), m.name.as_str()) != (self.deployment.as_str(), name)) {
            if let Some(a) = assets.iter().find(|a| m.assets.contains_key(&a.uuid)) {
                return Err(ProviderError::new(format!(
                    "{} {} ({}) belongs to the bundle {:?} of deployment `{}` on Superset at {}",
                    a.kind.word(),
                    a.uuid,
                    a.source,
                    m.name,
                    m.deployment,
                    self.target
                ))
                .with_hint("one asset has one owner: remove it from one of the bundles, or give it another uuid"));
            }
        }
        Ok(())
    }

    /// Whether the `kind` assets seen when the markers were written (uuid, id, `changed_on`)
    /// are all still there and none was saved since: per [`IDS`] of them, one request for
    /// their count and the one saved last. A save stamps a `changed_on` at least as late as
    /// any seen (to the second: a save within the second of the markers' listing is not told
    /// apart, as with the markers themselves).
    async fn unmoved(&self, kind: Kind, seen: &[(&str, i64, &str)]) -> Result<bool, ProviderError> {
        let changed = kind.changed_key();
        for chunk in seen.chunks(IDS) {
            let ids: Vec<i64> = chunk.iter().map(|s| s.1).collect();
            let latest = chunk.iter().map(|s| s.2).max().unwrap_or_default();
            let (count, newest) = self
                .newest(kind.api(), &["id", changed], &ids)
                .await
                .map_err(|e| self.err(&e, &format!("checking {}s", kind.word())))?;
            let same = newest.is_some_and(|row| {
                row.get(changed).and_then(Json::as_str) == Some(latest)
                    && row.get("id").and_then(Json::as_i64).is_some_and(|id| ids.contains(&id))
            });
            if count != ids.len() || !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The kinds of `seen` that [`Handle::unmoved`] finds unmoved, checked at once.
    async fn unmoved_kinds(&self, seen: &Seen<'_>) -> Result<BTreeSet<Kind>, ProviderError> {
        let check = |kind: Kind| async move {
            match seen.get(&kind) {
                Some(Some(s)) if !s.is_empty() => Ok(self.unmoved(kind, s).await?.then_some(kind)),
                _ => Ok::<_, ProviderError>(None),
            }
        };
        let (d, c, b) = tokio::join!(check(Kind::Dataset), check(Kind::Chart), check(Kind::Dashboard));
        Ok([d?, c?, b?].into_iter().flatten().collect())
    }

    /// The markers, and the bundles' assets as listed. Databases, and kinds whose list rows
    /// are compared (roles, owners), are looked up with the markers; any other kind is
    /// looked up only when one of its markers does not hold for the plan or it moved since
    /// they were written ([`Handle::unmoved`]); otherwise its rows are the ones seen then.
    async fn markers_and_listed(
        &self,
        desired: &[Resource],
        bundles: &[Arc<Vec<Asset>>],
        wanted: &Wanted<'_>,
    ) -> Result<(Vec<Markers>, BTreeMap<Kind, BTreeMap<String, Listed>>), ProviderError> {
        let mut rows = BTreeSet::from([Kind::Database]);
        for (r, assets) in desired.iter().zip(bundles) {
            let want = want_of(r);
            for a in assets.iter() {
                let w = want.get(&a.key()).and_then(Json::as_object);
                if w.is_some_and(|w| w.contains_key("_roles") || w.contains_key("_owners")) {
                    rows.insert(a.kind);
                }
            }
        }
        let pick = |kinds: &dyn Fn(&Kind) -> bool| -> Wanted<'_> {
            wanted.iter().filter(|(k, _)| kinds(k)).map(|(k, u)| (*k, u.clone())).collect()
        };
        let first = pick(&|k| rows.contains(k));
        let (all, listed) = tokio::join!(self.all_markers(), self.list_all(&first));
        let (all, mut listed) = (all?, listed?);
        let mut seen = Seen::new();
        for (r, assets) in desired.iter().zip(bundles) {
            let name = str_attr(&r.attrs, "name");
            let ours = all.iter().find(|m| m.deployment == self.deployment && m.name == name);
            let want = want_of(r);
            for a in assets.iter().filter(|a| !rows.contains(&a.kind)) {
                let holds = ours.and_then(|o| {
                    let (e, w) = (o.assets.get(&a.uuid)?, want.get(&a.key())?);
                    let (id, changed_on) = e.seen.as_ref()?;
                    (e.marker == marker_of(&o.salt, a, w, changed_on)).then_some((
                        a.uuid.as_str(),
                        *id,
                        changed_on.as_str(),
                    ))
                });
                let slot = seen.entry(a.kind).or_insert_with(|| Some(Vec::new()));
                match (slot.as_mut(), holds) {
                    (Some(list), Some(h)) => list.push(h),
                    _ => *slot = None,
                }
            }
        }
        let unsure = pick(&|k| seen.get(k).is_some_and(Option::is_none));
        let (unmoved, found) = tokio::join!(self.unmoved_kinds(&seen), self.list_all(&unsure));
        let unmoved = unmoved?;
        let moved = self.list_all(&pick(&|k| seen.get(k).is_some_and(Option::is_some) && !unmoved.contains(k))).await?;
        for (kind, rows) in found?.into_iter().chain(moved) {
            listed.entry(kind).or_default().extend(rows);
        }
        for kind in unmoved {
            let rows = seen[&kind].iter().flatten().map(|(uuid, id, changed_on)| {
                let l = Listed {
                    id: *id,
                    changed_on: (*changed_on).to_owned(),
                    title: String::new(),
                    roles: Vec::new(),
                    owners: Vec::new(),
                    holds: true,
                };
                ((*uuid).to_owned(), l)
            });
            listed.entry(kind).or_default().extend(rows);
        }
        Ok((all, listed))
    }

    pub(crate) async fn read_assets(&self, desired: &[Resource]) -> Result<Vec<Option<Live>>, ProviderError> {
        let bundles = desired
            .iter()
            .map(|r| self.bundle(r).map_err(|e| ProviderError::new(format!("{}: {e}", r.address))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut wanted = Wanted::new();
        for a in bundles.iter().flat_map(|b| b.iter()) {
            wanted.entry(a.kind).or_default().insert(a.uuid.as_str());
        }
        // Then the owned assets the bundles no longer hold (none in a no-op plan), which only
        // the markers name.
        let (all, mut listed) = self.markers_and_listed(desired, &bundles, &wanted).await?;
        // Owners are listed by id; the plan names them.
        let users: BTreeMap<i64, String> = if desired.iter().any(|r| !str_list(r.get("owners")).is_empty()) {
            self.users().await?.into_iter().map(|(name, (id, _))| (id, name)).collect()
        } else {
            BTreeMap::new()
        };
        let mut leaving = Wanted::new();
        for r in desired {
            let name = str_attr(&r.attrs, "name");
            let Some(ours) = all.iter().find(|m| m.deployment == self.deployment && m.name == name) else { continue };
            for (uuid, e) in &ours.assets {
                if !wanted.get(&e.kind).is_some_and(|u| u.contains(uuid.as_str())) {
                    leaving.entry(e.kind).or_default().insert(uuid.as_str());
                }
            }
        }
        if !leaving.is_empty() {
            for (kind, found) in self.list_all(&leaving).await? {
                listed.entry(kind).or_default().extend(found);
            }
        }
        let mut out = Vec::with_capacity(desired.len());
        for (r, assets) in desired.iter().zip(&bundles) {
            let name = str_attr(&r.attrs, "name");
            self.owned_elsewhere(name, assets, &all)?;
            let Some(ours) = all.iter().find(|m| m.deployment == self.deployment && m.name == name) else {
                out.push(None);
                continue;
            };
            let want = want_of(r);
            // The assets whose live side differs from the plan's; those equal to it are only
            // named, and copied in at the end unless all are (then the plan's own document is
            // the live side: no copy, and the engine compares two pointers).
            let mut live = Map::new();
            let mut equal = Vec::new();
            let mut moved: BTreeMap<Kind, Vec<(&Listed, &Asset)>> = BTreeMap::new();
            for a in assets.iter() {
                let (Some(l), Some(w)) = (listed[&a.kind].get(&a.uuid), want.get(&a.key())) else { continue };
                if l.holds
                    || ours.assets.get(&a.uuid).is_some_and(|e| e.marker == marker_of(&ours.salt, a, w, &l.changed_on))
                {
                    // Roles and owners live in tables of their own: changing them leaves
                    // `changed_on` as it was, so they are compared from the list row.
                    let access = access(w, l, &users);
                    if access.iter().all(|(k, v)| w.get(k) == Some(v)) {
                        equal.push(a.key());
                    } else {
                        let mut got = w.clone();
                        overlay(&mut got, access);
                        live.insert(a.key(), got);
                    }
                } else {
                    moved.entry(a.kind).or_default().push((l, a));
                }
            }
            for (kind, items) in moved {
                let ids: Vec<i64> = items.iter().map(|(l, _)| l.id).collect();
                let mut exported = self.exported(kind, &ids).await?;
                for (l, a) in items {
                    let (key, w) = (a.key(), &want[&a.key()]);
                    // Gone since it was listed: absent.
                    let Some(got) = exported.remove(&a.uuid) else { continue };
                    let mut got = compare::project(kind, got, w);
                    overlay(&mut got, access(w, l, &users));
                    live.insert(key, if &got == w { Json::String(UNRECORDED.into()) } else { got });
                }
            }
            let held: BTreeSet<&str> = assets.iter().map(|a| a.uuid.as_str()).collect();
            for (uuid, e) in ours.assets.iter().filter(|(u, _)| !held.contains(u.as_str())) {
                if let Some(l) = listed[&e.kind].get(uuid) {
                    let why = if e.kind == Kind::Database { RELEASED } else { LEAVING };
                    live.insert(key(e.kind, uuid, &l.title), Json::String(why.into()));
                }
            }
            let mut attrs: BTreeMap<String, Value> =
                r.attrs.iter().filter(|(k, _)| *k != "assets").map(|(k, v)| (k.clone(), v.clone())).collect();
            let assets = match r.get("assets") {
                Some(all) if live.is_empty() && equal.len() == want.len() => all.clone(),
                _ => {
                    live.extend(equal.into_iter().map(|k| (k.clone(), want[&k].clone())));
                    Value::Json(Arc::new(Json::Object(live)))
                }
            };
            attrs.insert("assets".into(), assets);
            out.push(Some(Live { attrs, ..Live::default() }));
        }
        Ok(out)
    }

    /// Imports what differs from `before` (the live side the plan read; everything when
    /// `None`), deletes the owned assets the bundle no longer holds, records the markers.
    pub(crate) async fn sync_assets(&self, r: &Resource, before: Option<&Json>) -> Result<(), ProviderError> {
        let name = str_attr(&r.attrs, "name");
        let assets = self.bundle(r).map_err(|e| ProviderError::new(format!("{}: {e}", r.address)))?;
        let all = self.all_markers().await?;
        self.owned_elsewhere(name, &assets, &all)?;
        let mut ours = all
            .into_iter()
            .find(|m| m.deployment == self.deployment && m.name == name)
            .unwrap_or_else(|| Markers::new(&self.deployment, name));
        let owners = str_list(r.get("owners"));
        let comparable: BTreeMap<String, Json> = assets.iter().map(|a| (a.uuid.clone(), wanted(a, &owners))).collect();
        let import: Vec<&Asset> =
            assets.iter().filter(|a| before.and_then(|b| b.get(a.key())) != Some(&comparable[&a.uuid])).collect();
        if !import.is_empty() {
            self.import(&import).await?;
            self.set_access(&import, r).await?;
        }
        let held: BTreeSet<&str> = assets.iter().map(|a| a.uuid.as_str()).collect();
        let leaving: Vec<(String, Kind)> =
            ours.assets.iter().filter(|(u, _)| !held.contains(u.as_str())).map(|(u, e)| (u.clone(), e.kind)).collect();
        if import.is_empty() && leaving.is_empty() {
            return Ok(());
        }
        // Connections are released: only a whole bundle's destroy deletes them.
        let deleting: Vec<(String, Kind)> = leaving.iter().filter(|(_, k)| *k != Kind::Database).cloned().collect();
        self.delete_assets(&deleting).await?;
        let imported: BTreeSet<&str> = import.iter().map(|a| a.uuid.as_str()).collect();
        // Every asset of the bundle, not only the imported ones: each entry that holds is seen
        // now, so the latest `changed_on` seen is a bound for any later save (markers.rs).
        let listed = self.list_all(&wanted_of(&assets)).await?;
        let mut recorded = BTreeMap::new();
        for a in assets.iter() {
            let l = listed[&a.kind].get(&a.uuid);
            let marker = |l: &Listed| marker_of(&ours.salt, a, &comparable[&a.uuid], &l.changed_on);
            let entry = if imported.contains(a.uuid.as_str()) {
                let Some(l) = l else { continue };
                Entry { kind: a.kind, marker: marker(l), seen: Some(l.seen()) }
            } else {
                let Some(old) = ours.assets.get(&a.uuid) else { continue };
                match l {
                    Some(l) if old.marker == marker(l) => Entry { seen: Some(l.seen()), ..old.clone() },
                    // Saved in Superset (or deleted) since the plan read it: the next plan
                    // lists this kind and finds out.
                    _ => Entry { seen: None, ..old.clone() },
                }
            };
            recorded.insert(a.uuid.clone(), entry);
        }
        ours.assets = recorded;
        self.write_markers(&mut ours).await
    }

    /// One import request: the zip of `assets` (sparse: the importer finds the rest of the
    /// bundle in Superset) and the passwords of its databases.
    async fn import(&self, assets: &[&Asset]) -> Result<(), ProviderError> {
        let zip = archive::import_zip(assets.iter().copied()).map_err(ProviderError::new)?;
        let form = Payload::Form(vec![
            ("bundle", Field::Zip(zip)),
            ("passwords", Field::Text(passwords(assets.iter().copied()))),
            ("overwrite", Field::Text(Secret::new("true"))),
            ("sparse", Field::Text(Secret::new("true"))),
        ]);
        let result = self.call_with(Method::POST, "/api/v1/assets/import/", &form).await;
        aspects_engine::fault::after_write();
        result.map(drop).map_err(|e| {
            self.err(&e, &format!("importing {} assets", assets.len())).with_hint(
                "Superset says why only in its own log (an import fails whole, nothing of it stays): look there for \
                 the first error",
            )
        })
    }

    /// What the importer takes none of: the roles Aspects gives each dashboard, and the bundle's
    /// `owners` on every chart and dashboard (Aspects' SUPERSET_OWNERS). One PUT per asset that
    /// has either, before the markers are recorded (it moves `changed_on`).
    async fn set_access(&self, imported: &[&Asset], r: &Resource) -> Result<(), ProviderError> {
        let owners = str_list(r.get("owners"));
        let needs = |a: &&&Asset| {
            (a.kind == Kind::Dashboard && !a.roles.is_empty())
                || (!owners.is_empty() && matches!(a.kind, Kind::Chart | Kind::Dashboard))
        };
        let targets: Vec<&&Asset> = imported.iter().filter(needs).collect();
        if targets.is_empty() {
            return Ok(());
        }
        let roles: BTreeMap<String, i64> = self.roles().await?.into_iter().map(|r| (r.name, r.id)).collect();
        let users = if owners.is_empty() { BTreeMap::new() } else { self.users().await? };
        let owner_ids = owners
            .iter()
            .map(|name| {
                users.get(*name).map(|(id, _)| *id).ok_or_else(|| {
                    ProviderError::new(format!(
                        "{}: Superset has no user {name:?} to own the bundle's assets",
                        r.address
                    ))
                    .with_hint(
                        "declare it as a superset_user and refer to it (owners = [\"${superset_user.NAME.username}\"])",
                    )
                })
            })
            .collect::<Result<Vec<i64>, _>>()?;
        let of = |kind: Kind| targets.iter().filter(|a| a.kind == kind).map(|a| a.uuid.as_str()).collect::<Vec<_>>();
        let (chart_uuids, dashboard_uuids) = (of(Kind::Chart), of(Kind::Dashboard));
        let (charts, dashboards) =
            tokio::try_join!(self.listed(Kind::Chart, &chart_uuids), self.listed(Kind::Dashboard, &dashboard_uuids))?;
        for a in targets {
            let mut body = Map::new();
            if a.kind == Kind::Dashboard && !a.roles.is_empty() {
                let ids = a
                    .roles
                    .iter()
                    .map(|name| {
                        roles.get(name).copied().ok_or_else(|| {
                            ProviderError::new(format!("{} ({}): Superset has no role {name:?}", a.key(), a.source))
                                .with_hint(
                                    "declare it as a superset_role and list it in the bundle's depends_on, so it \
                                     exists first (Aspects' locale copies want `<role> - <locale>`)",
                                )
                        })
                    })
                    .collect::<Result<Vec<i64>, _>>()?;
                body.insert("roles".into(), Json::from(ids));
            }
            if !owner_ids.is_empty() {
                body.insert("owners".into(), Json::from(owner_ids.clone()));
            }
            let listed = if a.kind == Kind::Chart { &charts } else { &dashboards };
            let Some(l) = listed.get(&a.uuid) else { continue };
            self.write(
                Method::PUT,
                &format!("{}{}", a.kind.api(), l.id),
                Some(&Json::Object(body)),
                &format!("setting the roles and owners of {}", a.key()),
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes assets (dashboards, then charts, then datasets, then connections): one request
    /// per kind, connections one by one (Superset has no bulk delete for them). Gone counts as done.
    async fn delete_assets(&self, assets: &[(String, Kind)]) -> Result<(), ProviderError> {
        if assets.is_empty() {
            return Ok(());
        }
        let mut wanted = Wanted::new();
        for (uuid, kind) in assets {
            wanted.entry(*kind).or_default().insert(uuid.as_str());
        }
        let listed = self.list_all(&wanted).await?;
        for kind in Kind::ALL.into_iter().rev() {
            let ids: Vec<i64> =
                assets.iter().filter(|(_, k)| *k == kind).filter_map(|(u, _)| Some(listed[&kind].get(u)?.id)).collect();
            if ids.is_empty() {
                continue;
            }
            let paths: Vec<String> = if kind == Kind::Database {
                ids.iter().map(|id| format!("{}{id}", kind.api())).collect()
            } else {
                let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                vec![format!("{}?q=!({list})", kind.api())]
            };
            for path in paths {
                let result = self.call(Method::DELETE, &path, None).await;
                aspects_engine::fault::after_write();
                match result {
                    Ok(_) | Err(SsError { status: Some(StatusCode::NOT_FOUND), .. }) => {}
                    Err(e) => return Err(self.err(&e, &format!("deleting {}s", kind.word()))),
                }
            }
        }
        Ok(())
    }

    /// Destroys a bundle: every asset it owns, connections included, then its markers.
    pub(crate) async fn remove_assets(&self, name: &str) -> Result<(), ProviderError> {
        let all = self.all_markers().await?;
        let Some(ours) = all.into_iter().find(|m| m.deployment == self.deployment && m.name == name) else {
            return Ok(());
        };
        let owned: Vec<(String, Kind)> = ours.assets.iter().map(|(u, e)| (u.clone(), e.kind)).collect();
        self.delete_assets(&owned).await?;
        self.delete_markers(&ours).await
    }

    /// The names of this deployment's bundles that have markers.
    pub(crate) async fn bundles_recorded(&self) -> Result<BTreeSet<String>, ProviderError> {
        Ok(self.all_markers().await?.into_iter().filter(|m| m.deployment == self.deployment).map(|m| m.name).collect())
    }
}

//! A bundle as the plan describes it: every YAML file under a folder rendered by the shared
//! Jinja environment (Tutor's semantics; Superset's own runtime Jinja stays inside `{% raw %}`,
//! as Aspects writes it), parsed, its Aspects keys (`_file_name`, `_roles`) taken out, database
//! passwords moved out of the URIs, and the datasets, charts and dashboards copied per locale
//! the way Aspects' `create_assets.py` does. Nothing here talks to Superset.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aspects_core::{Secret, Value};
use serde_json::{Map, Value as Json};
use sha1::{Digest, Sha1};

use crate::uri;

/// The four kinds of asset, in import order (deletion runs the other way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Database,
    Dataset,
    Chart,
    Dashboard,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Database, Kind::Dataset, Kind::Chart, Kind::Dashboard];

    pub fn word(self) -> &'static str {
        match self {
            Kind::Database => "database",
            Kind::Dataset => "dataset",
            Kind::Chart => "chart",
            Kind::Dashboard => "dashboard",
        }
    }

    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.word() == word)
    }

    /// The folder of the import zip the importer picks the schema by.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Database => "databases",
            Kind::Dataset => "datasets",
            Kind::Chart => "charts",
            Kind::Dashboard => "dashboards",
        }
    }

    /// The key holding the asset's name: also how Aspects tells the kind of a file.
    pub fn title_key(self) -> &'static str {
        match self {
            Kind::Database => "database_name",
            Kind::Dataset => "table_name",
            Kind::Chart => "slice_name",
            Kind::Dashboard => "dashboard_title",
        }
    }

    /// The column lists show the last save in (databases have no `changed_on_utc`).
    pub fn changed_key(self) -> &'static str {
        if self == Kind::Database { "changed_on" } else { "changed_on_utc" }
    }

    /// The REST collection (`/api/v1/chart/`).
    pub fn api(self) -> &'static str {
        match self {
            Kind::Database => "/api/v1/database/",
            Kind::Dataset => "/api/v1/dataset/",
            Kind::Chart => "/api/v1/chart/",
            Kind::Dashboard => "/api/v1/dashboard/",
        }
    }

    /// Aspects' ASSET_FOLDER_MAPPING, in its order.
    fn of(content: &Map<String, Json>) -> Option<Kind> {
        [Kind::Dashboard, Kind::Chart, Kind::Database, Kind::Dataset]
            .into_iter()
            .find(|k| content.contains_key(k.title_key()))
    }
}

/// One asset to import.
#[derive(Clone, Debug)]
pub struct Asset {
    pub kind: Kind,
    pub uuid: String,
    pub title: String,
    /// The file it came from, relative to the bundle's folder (for messages).
    pub source: String,
    /// Where it goes in the import zip, below the root folder (`charts/Foo-fr.yaml`).
    pub zip_path: String,
    /// The YAML content as Superset imports it (no Aspects keys; database URIs masked).
    pub content: Json,
    /// Dashboards: the roles Aspects gives them (`Admin` on originals that declare `_roles`,
    /// `<role> - <locale>` on their locale copies).
    pub roles: Vec<String>,
    /// The `_roles` the file declared, which the locale copies are given.
    declared_roles: Vec<String>,
    /// Databases: the password taken out of the URI, sent in the import's `passwords` field.
    pub password: Option<Secret>,
}

impl Asset {
    /// How the plan names it: `chart 3f2b... "Course Info"`.
    pub fn key(&self) -> String {
        key(self.kind, &self.uuid, &self.title)
    }
}

pub fn key(kind: Kind, uuid: &str, title: &str) -> String {
    format!("{} {uuid} {title:?}", kind.word())
}

/// What a bundle's inputs are, from the resource's attributes.
pub struct Inputs<'a> {
    pub directory: PathBuf,
    pub templates: PathBuf,
    pub context: Option<&'a Value>,
    pub locales: Vec<String>,
}

/// Renders and parses every asset. Errors name the file (and line and column where the YAML
/// or the template says), with secrets scrubbed.
pub fn load(inputs: &Inputs) -> Result<Vec<Asset>, String> {
    let root =
        inputs.directory.canonicalize().map_err(|e| format!("the asset folder {}: {e}", inputs.directory.display()))?;
    let env = aspects_files::render::environment(Some(&inputs.templates));
    let mut secrets = Vec::new();
    let context = aspects_files::render::context(inputs.context, &mut secrets);
    let scrub = aspects_core::Redactor::new(secrets.clone());
    let mut assets = Vec::new();
    let mut paths = BTreeSet::new();
    let mut uuids = BTreeMap::new();
    let mut bases = Vec::new();
    for file in yaml_files(&root)? {
        let source = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{source}: {e}"))?;
        let rendered = env
            .render_named_str(&source, &text, &context)
            .map_err(|e| format!("{source}: {}", aspects_files::render::error_message(&e, &secrets)))?;
        let content: Json = serde_norway::from_str(&rendered).map_err(|e| {
            let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
            scrub.scrub(&format!("{source}{at}: not valid YAML: {e}"))
        })?;
        bases.push(parse(content, &source)?);
    }
    let physical: BTreeSet<String> = bases.iter().filter(|a| is_physical(a)).map(|a| a.uuid.clone()).collect();
    for base in bases {
        let mut copies = Vec::new();
        if base.kind != Kind::Database && !physical.contains(&base.uuid) {
            copies.extend(inputs.locales.iter().map(|l| localised(&base, l, &physical)));
        }
        copies.insert(0, base);
        for asset in copies {
            if !paths.insert(asset.zip_path.clone()) {
                return Err(format!(
                    "{}: two assets would be written to {}; give one another _file_name",
                    asset.source, asset.zip_path
                ));
            }
            if let Some(other) = uuids.insert(asset.uuid.clone(), asset.source.clone()) {
                return Err(format!("{}: uuid {} is also the uuid of an asset in {other}", asset.source, asset.uuid));
            }
            assets.push(asset);
        }
    }
    assets.sort_by(|a, b| (a.kind, &a.zip_path).cmp(&(b.kind, &b.zip_path)));
    Ok(assets)
}

/// Every `.yaml`/`.yml` file under `root`, sorted; a link leading outside `root` is refused.
fn yaml_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            let real = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
            if !real.starts_with(root) {
                let shown = path.strip_prefix(root).unwrap_or(&path).display().to_string();
                return Err(format!(
                    "{shown} leads outside the asset folder (to {}); assets must live inside it",
                    real.display()
                ));
            }
            if real.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One parsed file as an asset.
fn parse(content: Json, source: &str) -> Result<Asset, String> {
    let Json::Object(mut map) = content else {
        return Err(format!("{source}: an asset file holds one YAML mapping"));
    };
    let kind = Kind::of(&map).ok_or_else(|| {
        format!("{source}: not a Superset asset: it has none of dashboard_title, slice_name, database_name, table_name")
    })?;
    let file_name = match map.remove("_file_name") {
        Some(Json::String(name)) => name,
        Some(_) => return Err(format!("{source}: _file_name must be a file name")),
        None => source.rsplit('/').next().unwrap_or(source).to_owned(),
    };
    if file_name.is_empty() || file_name.contains(['/', '\\', '\0']) || file_name.starts_with('.') {
        return Err(format!("{source}: _file_name {file_name:?} must be a plain file name, without a folder"));
    }
    let roles = match map.remove("_roles") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(list)) => list
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{source}: _roles must be a list of role names"))?,
        Some(_) => return Err(format!("{source}: _roles must be a list of role names")),
    };
    let uuid = map.get("uuid").and_then(Json::as_str).unwrap_or_default().to_ascii_lowercase();
    parse_uuid(&uuid).ok_or_else(|| format!("{source}: uuid {uuid:?} is not a UUID"))?;
    map.insert("uuid".into(), Json::String(uuid.clone()));
    let title = match map.get(kind.title_key()) {
        Some(Json::String(t)) if !t.trim().is_empty() => t.clone(),
        _ => return Err(format!("{source}: {} must be a non-empty string", kind.title_key())),
    };
    if kind == Kind::Dashboard
        && let Some(Json::Object(position)) = map.get_mut("position")
    {
        drop_dangling_children(position);
    }
    let mut password = None;
    if kind == Kind::Database {
        let full = map.get("sqlalchemy_uri").and_then(Json::as_str).unwrap_or_default().to_owned();
        uri::check(&full).map_err(|e| format!("{source}: {e}"))?;
        let masked = uri::masked(&full);
        if masked != full {
            password = uri::password(&full).map(Secret::new);
        }
        map.insert("sqlalchemy_uri".into(), Json::String(masked));
    }
    // Aspects gives originals only to Admin; the roles go to the locale copies.
    let base_roles = if roles.is_empty() { Vec::new() } else { vec!["Admin".to_owned()] };
    Ok(Asset {
        kind,
        uuid,
        title,
        source: source.to_owned(),
        zip_path: format!("{}/{file_name}", kind.folder()),
        content: Json::Object(map),
        roles: base_roles,
        declared_roles: roles,
        password,
    })
}

/// Drops, from each element's `children`, the ids the position does not hold. Superset's
/// dashboard API refuses every update of a dashboard whose stored position has one (its `tabs`
/// walk fails with a KeyError), so its roles could not be set; its frontend skips them anyway.
/// Aspects 6.1.0's Operator dashboard names a tab `TAB-nXpinnLEX` that is not there.
fn drop_dangling_children(position: &mut Map<String, Json>) {
    let ids: BTreeSet<String> = position.keys().cloned().collect();
    for element in position.values_mut() {
        if let Some(Json::Array(children)) = element.get_mut("children") {
            children.retain(|c| c.as_str().is_none_or(|id| ids.contains(id)));
        }
    }
}

/// A dataset of a table (no SQL of its own).
fn is_physical(a: &Asset) -> bool {
    a.kind == Kind::Dataset && a.content.get("sql").and_then(Json::as_str).is_none_or(str::is_empty)
}

/// The copy of `base` for `locale`, as Aspects' `generate_translated_asset` makes it. Aspects
/// also translates titles through its compiled `locale.yaml`; the released package ships no
/// translations, so titles stay as written (its `get_translation` falls back the same way).
/// One difference: Aspects also copies a dataset of a table (no SQL), and Superset merges the
/// copies into the one row of that table (its key is the table, not the UUID), keeping the last
/// UUID written; so there are no such copies here, and the locale charts of such a dataset
/// point at the dataset itself, which is where Aspects' own import leaves them.
fn localised(base: &Asset, locale: &str, physical: &BTreeSet<String>) -> Asset {
    let mut copy = base.clone();
    copy.uuid = localized_uuid(&base.uuid, locale);
    copy.roles = base.declared_roles.iter().map(|r| format!("{r} - {locale}")).collect();
    let stem = base.zip_path.rsplit_once('.').map_or(base.zip_path.as_str(), |(s, _)| s);
    copy.zip_path = format!("{stem}-{locale}.yaml");
    let map = copy.content.as_object_mut().expect("assets are mappings");
    map.insert("uuid".into(), Json::String(copy.uuid.clone()));
    match base.kind {
        Kind::Dashboard => {
            let slug = map.get("slug").and_then(Json::as_str).unwrap_or_default();
            map.insert("slug".into(), Json::String(format!("{slug}-{locale}")));
            if let Some(Json::Object(position)) = map.get_mut("position") {
                for element in position.values_mut() {
                    if let Some(Json::String(uuid)) = element.pointer_mut("/meta/uuid") {
                        *uuid = localized_uuid(uuid, locale);
                    }
                }
            }
        }
        Kind::Dataset => {
            copy.title = format!("{}_{locale}", base.title);
            map.insert("table_name".into(), Json::String(copy.title.clone()));
        }
        Kind::Chart => {
            if let Some(Json::String(dataset)) = map.get_mut("dataset_uuid")
                && !physical.contains(dataset.as_str())
            {
                *dataset = localized_uuid(dataset, locale);
            }
        }
        Kind::Database => {}
    }
    copy
}

/// Aspects' `get_localized_uuid`: `uuid5(uuid5(UUID(base), "superset"), locale)`, the locale
/// lowercased with `-` as `_`.
pub fn localized_uuid(base: &str, locale: &str) -> String {
    let normalized = locale.to_lowercase().replace('-', "_");
    let namespace = uuid5(&parse_uuid(base).unwrap_or_default(), "superset");
    format_uuid(&uuid5(&namespace, &normalized))
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    if groups != [8, 4, 4, 4, 12] {
        return None;
    }
    let bytes = hex::decode(s.replace('-', "")).ok()?;
    bytes.try_into().ok()
}

fn format_uuid(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// RFC 4122 name-based UUID, version 5 (SHA-1), as Python's `uuid.uuid5`.
fn uuid5(namespace: &[u8; 16], name: &str) -> [u8; 16] {
    let mut h = Sha1::new();
    h.update(namespace);
    h.update(name.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out[6] = (out[6] & 0x0f) | 0x50;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The project's bundle with one locale, as Aspects expands it.
    #[test]
    fn the_fixture_renders_and_expands_per_locale() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/superset-assets");
        let context: BTreeMap<String, Value> = [
            ("ID", Value::from("0badc0de")),
            ("PREFIX", Value::from("p_")),
            ("CLICKHOUSE_DATABASE", Value::from("default")),
            ("DASHBOARD_ROLE", Value::from("Viewer")),
            ("CLICKHOUSE_URI", Value::Sensitive(Secret::new("clickhousedb+connect://u:p%40ss@h:8123/default"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let context = Value::Map(context);
        let inputs = Inputs {
            directory: dir.join("assets"),
            templates: dir.clone(),
            context: Some(&context),
            locales: vec!["fr_CA".into()],
        };
        let assets = load(&inputs).unwrap();
        let find = |uuid: &str| assets.iter().find(|a| a.uuid == uuid).unwrap_or_else(|| panic!("{uuid}"));
        let count = |k: Kind| assets.iter().filter(|a| a.kind == k).count();
        // The table dataset `one` has no locale copy (see `localised`).
        assert_eq!([1, 3, 6, 2], Kind::ALL.map(count));
        let db = find("0badc0de-0000-4000-8000-000000000001");
        assert_eq!(db.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(db.content["sqlalchemy_uri"], "clickhousedb+connect://u:XXXXXXXXXX@h:8123/default");
        let sql = find("0badc0de-0000-4000-8000-000000000002").content["sql"].as_str().unwrap().to_owned();
        assert!(sql.contains("from system.one") && sql.contains("{% if filter_values(\"course\") != [] %}"), "{sql}");
        let fr = |base: &str| localized_uuid(&format!("0badc0de-0000-4000-8000-0000000000{base}"), "fr_CA");
        let dataset = find(&fr("02"));
        assert_eq!(
            (dataset.title.as_str(), dataset.zip_path.as_str()),
            ("p_course_events_fr_CA", "datasets/course_events-fr_CA.yaml")
        );
        assert_eq!(find(&fr("11")).content["dataset_uuid"], fr("02").as_str());
        assert_eq!(find(&fr("13")).content["dataset_uuid"], "0badc0de-0000-4000-8000-000000000003");
        let dash = find(&fr("21"));
        assert_eq!(dash.content["slug"], "p_fixture-fr_CA");
        assert_eq!(dash.roles, ["Viewer - fr_CA"]);
        assert_eq!(dash.content["position"]["CHART-1"]["meta"]["uuid"], fr("11").as_str());
        assert_eq!(find("0badc0de-0000-4000-8000-000000000021").roles, ["Admin"]);
    }

    #[test]
    fn localized_uuids_are_aspects_ones() {
        // python3 -c 'import uuid; b=uuid.UUID("21174b6c-4d40-4958-8161-d6c3cf5e77b6");
        //             print(uuid.uuid5(uuid.uuid5(b, "superset"), "fr_ca"))'
        assert_eq!(
            localized_uuid("21174b6c-4d40-4958-8161-d6c3cf5e77b6", "fr-CA"),
            "cec769d2-bb7d-53f7-8ae7-8848fed3493f"
        );
    }
}

//! How an asset is compared with what Superset exports: structurally, never as text. Fields
//! Superset stores as JSON inside a string (`params`, `query_context`, `position_json`,
//! `json_metadata`, dataset `extra` ...) are parsed, so they diff by key and path. What the
//! importer rewrites with ids of this Superset (a chart's datasource, a dashboard's chart ids)
//! is put back in terms of UUIDs, or left out where the export has no UUID for it, on both
//! sides with the same function, so an imported asset compares equal to its export.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::bundle::Kind;
use crate::uri;

/// Keys whose value Superset keeps as a JSON string (YAML may write them either way).
const JSON_STRINGS: [&str; 8] =
    ["params", "query_context", "position", "metadata", "json_metadata", "position_json", "extra", "template_params"];

/// The form both sides are compared in (and fingerprinted in).
pub fn comparable(kind: Kind, content: &Json) -> Json {
    let mut map = content.as_object().cloned().unwrap_or_default();
    map.remove("_file_name");
    map.remove("_roles");
    // The asset importer takes no tags (only the per-kind importers do, with TAGGING_SYSTEM).
    map.remove("tags");
    for key in JSON_STRINGS {
        if let Some(Json::String(text)) = map.get(key)
            && let Ok(parsed @ (Json::Object(_) | Json::Array(_))) = serde_json::from_str::<Json>(text)
        {
            map.insert(key.to_owned(), parsed);
        }
    }
    match kind {
        Kind::Database => database(&mut map),
        Kind::Chart => chart(&mut map),
        Kind::Dashboard => dashboard(&mut map),
        Kind::Dataset => {
            // Superset lists them in its own order: compared by name.
            keyed(map.get_mut("columns"), "column_name");
            keyed(map.get_mut("metrics"), "metric_name");
        }
    }
    for v in map.values_mut() {
        prune_empty(v);
    }
    Json::Object(map)
}

/// Below the top level, a key that is null, `[]` or `{}` is the same as no key: Superset's
/// export writes every field it has, with its empty default, where a bundle may leave it out.
/// (At the top level, `description: null` is a value the bundle sets.)
fn prune_empty(v: &mut Json) {
    match v {
        Json::Object(m) => {
            m.values_mut().for_each(prune_empty);
            m.retain(|_, v| !is_empty(v));
        }
        Json::Array(items) => items.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

fn is_empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Array(a) => a.is_empty(),
        Json::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// A list of objects as an object keyed by each one's `key`, so lists diff by name and not by
/// position (left as it is when an entry has no such key, or two share one).
fn keyed(list: Option<&mut Json>, key: &str) {
    let Some(list) = list else { return };
    let Json::Array(items) = list else { return };
    let names: Option<Vec<String>> = items.iter().map(|i| i.get(key)?.as_str().map(str::to_owned)).collect();
    let Some(names) = names else { return };
    if names.iter().collect::<std::collections::BTreeSet<_>>().len() != names.len() {
        return;
    }
    let items = std::mem::take(items);
    *list = Json::Object(names.into_iter().zip(items).collect());
}

/// The URI as plans show it; the importer's renames of upload settings (`csv` became `file`)
/// applied on both sides, as the export still writes the old names.
fn database(map: &mut Map<String, Json>) {
    if let Some(Json::String(u)) = map.get_mut("sqlalchemy_uri") {
        *u = uri::shown(&uri::masked(u));
    }
    if let Some(v) = map.remove("allow_csv_upload") {
        map.insert("allow_file_upload".into(), v);
    }
    if let Some(Json::Object(extra)) = map.get_mut("extra")
        && let Some(v) = extra.remove("schemas_allowed_for_csv_upload")
    {
        extra.insert("schemas_allowed_for_file_upload".into(), v);
    }
}

/// The importer points `params.datasource` and `query_context`'s datasources at this
/// Superset's dataset id; `dataset_uuid` says the same thing portably.
fn chart(map: &mut Map<String, Json>) {
    if let Some(Json::Object(params)) = map.get_mut("params") {
        params.remove("datasource");
    }
    if let Some(Json::Object(qc)) = map.get_mut("query_context") {
        qc.remove("datasource");
        if let Some(Json::Object(form)) = qc.get_mut("form_data") {
            form.remove("datasource");
        }
        if let Some(Json::Array(queries)) = qc.get_mut("queries") {
            for q in queries.iter_mut().filter_map(Json::as_object_mut) {
                q.remove("datasource");
            }
        }
    }
}

/// Chart ids in a dashboard become `chart:<uuid>` through the dashboard's own position (each
/// CHART element holds both), in exactly the places the importer remaps (`update_id_refs`):
/// ids it cannot map it drops, and so does this. `chartsInScope` the importer keeps as written.
fn dashboard(map: &mut Map<String, Json>) {
    let mut ids: BTreeMap<i64, String> = BTreeMap::new();
    if let Some(Json::Object(position)) = map.get_mut("position") {
        for element in position.values_mut().filter_map(Json::as_object_mut) {
            if let Some(Json::Object(meta)) = element.get_mut("meta")
                && let Some(uuid) = meta.get("uuid").and_then(Json::as_str).map(str::to_owned)
                && let Some(id) = meta.remove("chartId").and_then(|i| i.as_i64())
            {
                ids.insert(id, uuid);
            }
        }
    }
    let Some(Json::Object(metadata)) = map.get_mut("metadata") else { return };
    metadata.remove("show_native_filters");
    let one = |v: &Json| v.as_i64().and_then(|id| ids.get(&id)).map(|u| Json::String(format!("chart:{u}")));
    let list = |v: &mut Json| {
        if let Json::Array(items) = v {
            *items = items.iter().filter_map(one).collect();
        }
    };
    let keys = |v: &mut Json| {
        if let Json::Object(m) = v {
            *m = std::mem::take(m)
                .into_iter()
                .filter_map(|(k, val)| Some((format!("chart:{}", ids.get(&k.parse::<i64>().ok()?)?), val)))
                .collect();
        }
    };
    if let Some(v) = metadata.get_mut("timed_refresh_immune_slices") {
        list(v);
    }
    for key in ["expanded_slices", "filter_scopes"] {
        if let Some(v) = metadata.get_mut(key) {
            keys(v);
        }
    }
    if let Some(Json::Object(scopes)) = metadata.get_mut("filter_scopes") {
        for columns in scopes.values_mut().filter_map(Json::as_object_mut) {
            for attributes in columns.values_mut() {
                if let Some(v) = attributes.get_mut("immune") {
                    list(v);
                }
            }
        }
    }
    if let Some(Json::String(text)) = metadata.get("default_filters")
        && let Ok(mut filters) = serde_json::from_str::<Json>(text)
    {
        keys(&mut filters);
        metadata.insert("default_filters".into(), filters);
    }
    if let Some(Json::Array(filters)) = metadata.get_mut("native_filter_configuration") {
        for f in filters.iter_mut() {
            if let Some(v) = f.pointer_mut("/scope/excluded") {
                list(v);
            }
        }
    }
    if let Some(v) = metadata.get_mut("global_chart_configuration").and_then(|g| g.pointer_mut("/scope/excluded")) {
        list(v);
    }
    if let Some(v) = metadata.get_mut("chart_configuration") {
        keys(v);
        if let Json::Object(configs) = v {
            for config in configs.values_mut() {
                if let Some(id) = config.get("id").and_then(one) {
                    config["id"] = id;
                }
                if let Some(v) = config.pointer_mut("/crossFilters/scope/excluded") {
                    list(v);
                }
            }
        }
    }
}

/// Only the keys `desired` sets: Superset's export also writes every field it has a default
/// for, which a hand-written bundle may leave out. Within a dataset's columns and metrics too
/// (a bundle writes `is_dttm: null` where Superset stores and exports `false`): an attribute of
/// a column the bundle leaves unset is not compared; a column it does not name still is.
pub fn project(kind: Kind, live: Json, desired: &Json) -> Json {
    let (Json::Object(mut live), Json::Object(want)) = (live, desired) else { return Json::Null };
    let mut out: Map<String, Json> = want.keys().filter_map(|k| live.remove(k).map(|v| (k.clone(), v))).collect();
    if kind == Kind::Dataset {
        for list in ["columns", "metrics"] {
            if let (Some(Json::Object(items)), Some(Json::Object(wanted))) = (out.get_mut(list), want.get(list)) {
                for (name, item) in items.iter_mut() {
                    if let (Json::Object(fields), Some(Json::Object(w))) = (item, wanted.get(name)) {
                        fields.retain(|k, _| w.contains_key(k));
                    }
                }
            }
        }
    }
    Json::Object(out)
}

/// What this asset's import is identified by: its comparable form, its roles and its password,
/// salted (a marker must not let anyone test passwords offline).
pub fn fingerprint(salt: &str, comparable: &Json, roles: &[String], password: Option<&str>) -> String {
    let mut text = String::new();
    canonical(comparable, &mut text);
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    h.update([0]);
    h.update(roles.join("\n").as_bytes());
    h.update([0]);
    h.update(password.unwrap_or_default().as_bytes());
    hex::encode(h.finalize())
}

/// The marker of an asset: its fingerprint bound to the `changed_on` Superset showed right
/// after the import. Any later save moves `changed_on`; any change to the bundle moves the
/// fingerprint.
pub fn marker(fingerprint: &str, changed_on: &str) -> String {
    hex::encode(&Sha256::digest(format!("{fingerprint}\n{changed_on}").as_bytes())[..12])
}

/// JSON with object keys sorted, so the same content always hashes the same.
fn canonical(v: &Json, out: &mut String) {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Json::String(k.clone()));
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn import_rewrites_compare_equal() {
        let yaml = json!({
            "slice_name": "c", "params": {"datasource": "7__table", "metric": "count"},
            "query_context": "{\"datasource\": {\"id\": 7}, \"form_data\": {\"datasource\": \"7__table\", \"x\": 1}}",
        });
        let live = json!({
            "slice_name": "c", "params": {"datasource": "42__table", "metric": "count"},
            "query_context": {"datasource": {"id": 42}, "form_data": {"datasource": "42__table", "x": 1}},
        });
        assert_eq!(comparable(Kind::Chart, &yaml), comparable(Kind::Chart, &live));
        let dash = |id: i64, other: i64| {
            json!({
                "position": {"CHART-1": {"type": "CHART", "meta": {"chartId": id, "uuid": "u1"}},
                             "CHART-2": {"type": "CHART", "meta": {"chartId": other, "uuid": "u2"}}},
                "metadata": {"chart_configuration": {id.to_string(): {"id": id, "crossFilters": {"scope": {"excluded": [other, 999]}, "chartsInScope": [5]}}},
                             "expanded_slices": {other.to_string(): true}, "show_native_filters": true},
            })
        };
        let (a, b) = (comparable(Kind::Dashboard, &dash(1, 2)), comparable(Kind::Dashboard, &dash(30, 31)));
        assert_eq!(a, b);
        assert_eq!(
            a["metadata"]["chart_configuration"]["chart:u1"]["crossFilters"]["scope"]["excluded"],
            json!(["chart:u2"])
        );
        assert_ne!(comparable(Kind::Dashboard, &dash(1, 2)), comparable(Kind::Dashboard, &json!({"position": {}})));
    }

    #[test]
    fn columns_compare_by_name_on_the_attributes_the_bundle_sets() {
        let want = json!({"table_name": "t", "columns": [{"column_name": "a", "is_dttm": null, "type": "String"}]});
        let live = json!({"table_name": "t", "id": 3, "columns": [
            {"column_name": "b", "type": "UInt8"}, {"column_name": "a", "is_dttm": false, "type": "String"}]});
        let want = comparable(Kind::Dataset, &want);
        assert_eq!(
            project(Kind::Dataset, comparable(Kind::Dataset, &live), &want),
            json!({"table_name": "t", "columns": {
                "b": {"column_name": "b", "type": "UInt8"}, "a": {"column_name": "a", "type": "String"}}})
        );
    }

    #[test]
    fn fingerprints_are_salted_and_order_free() {
        let (a, b) = (json!({"x": 1, "y": [1, {"b": 2, "a": 1}]}), json!({"y": [1, {"a": 1, "b": 2}], "x": 1}));
        assert_eq!(fingerprint("s", &a, &[], None), fingerprint("s", &b, &[], None));
        assert_ne!(fingerprint("s", &a, &[], None), fingerprint("t", &a, &[], None));
        assert_ne!(fingerprint("s", &a, &[], Some("pw")), fingerprint("s", &a, &[], Some("pw2")));
        assert_ne!(marker("f", "2026-01-01T00:00:00"), marker("f", "2026-01-01T00:00:01"));
    }
}

//! The zip files Superset's asset endpoints speak: the import bundle (every file under one root
//! folder, `metadata.yaml` first, as Superset's own export lays it out) and the export zips read
//! back for a structural comparison.

use std::io::{Cursor, Read, Write};

use serde_json::Value as Json;
use zip::write::SimpleFileOptions;

use super::bundle::{Asset, Kind};

/// The root folder inside the import zip (the importer wants exactly one).
const ROOT: &str = "bundle";

/// The import zip of `assets`. `query_context` goes as a JSON string: the importer's schema
/// takes nothing else (a YAML mapping there fails the whole import with a bare 500).
pub fn import_zip<'a>(assets: impl IntoIterator<Item = &'a Asset>) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut add = |path: &str, text: &str| -> Result<(), String> {
        zip.start_file(format!("{ROOT}/{path}"), options).map_err(|e| e.to_string())?;
        zip.write_all(text.as_bytes()).map_err(|e| e.to_string())
    };
    // The importer reads only `version` and `type`; the timestamp is informative.
    add("metadata.yaml", "version: 1.0.0\ntype: assets\ntimestamp: '1970-01-01T00:00:00+00:00'\n")?;
    for asset in assets {
        let mut content = asset.content.clone();
        if let Some(qc) = content.get_mut("query_context")
            && !matches!(qc, Json::String(_) | Json::Null)
        {
            *qc = Json::String(qc.to_string());
        }
        let yaml = serde_norway::to_string(&content).map_err(|e| format!("{}: {e}", asset.source))?;
        add(&asset.zip_path, &yaml)?;
    }
    let bytes = zip.finish().map_err(|e| e.to_string())?;
    Ok(bytes.into_inner())
}

/// The `kind` assets in an export zip (it also holds their dependencies), as parsed YAML.
pub fn read_export(bytes: &[u8], kind: Kind) -> Result<Vec<Json>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("the export is not a zip: {e}"))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(|e| e.to_string())?;
        let name = file.name().map_err(|e| e.to_string())?.into_owned();
        if name.split('/').nth(1) != Some(kind.folder()) || !name.ends_with(".yaml") {
            continue;
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| format!("{name}: {e}"))?;
        out.push(serde_norway::from_str(&text).map_err(|e| format!("{name}: {e}"))?);
    }
    Ok(out)
}

//! What a bundle imported: one CSS template per `superset_assets` resource, `aspects assets:
//! DEPLOYMENT/NAME`, holding for each asset it owns the kind and a marker (its fingerprint bound
//! to the `changed_on` Superset showed right after the import; compare.rs). It is also the
//! ownership record of each asset: only assets listed here are ever deleted.
//!
//! Each write lists every asset of the bundle again and keeps, beside each marker that still
//! holds, the asset's id and `changed_on` as seen then. Any later save stamps a `changed_on` at
//! least as late as the latest one seen, so a kind whose seen assets all still exist and whose
//! latest `changed_on` is still that one has not moved since: a plan checks that with one
//! request per kind (`Handle::unmoved`) instead of listing every asset.
//!
//! Why here and not on the assets: the list endpoints give uuid and `changed_on` cheaply but
//! none of the JSON fields a marker could hide in (they are content, edited in the UI and
//! compared), and one PUT records a whole import, so `kill -9` leaves the old document or the
//! new one. Writes happen under the Superset apply lock, like the ownership records.

use std::collections::BTreeMap;

use aspects_engine::provider::ProviderError;
use reqwest::Method;
use serde_json::{Value as Json, json};

use super::bundle::Kind;
use crate::client::Handle;

const PREFIX: &str = "aspects assets: ";
const TEMPLATES: &str = "/api/v1/css_template/";

#[derive(Clone, Debug)]
pub struct Markers {
    pub template: Option<i64>,
    pub deployment: String,
    pub name: String,
    pub salt: String,
    pub assets: BTreeMap<String, Entry>,
}

/// One owned asset.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub kind: Kind,
    pub marker: String,
    /// Its id and `changed_on` when the document was written, where the marker held then.
    pub seen: Option<(i64, String)>,
}

impl Markers {
    pub fn new(deployment: &str, name: &str) -> Markers {
        Markers {
            template: None,
            deployment: deployment.to_owned(),
            name: name.to_owned(),
            salt: hex::encode(rand::random::<[u8; 16]>()),
            assets: BTreeMap::new(),
        }
    }

    fn template_name(&self) -> String {
        format!("{PREFIX}{}/{}", self.deployment, self.name)
    }

    /// The document as CSS: JSON inside a comment (`*/` cannot occur: names are escaped).
    fn css(&self) -> String {
        let assets: serde_json::Map<String, Json> = self
            .assets
            .iter()
            .map(|(uuid, e)| {
                let entry = match &e.seen {
                    Some((id, changed_on)) => json!([e.kind.word(), e.marker, id, changed_on]),
                    None => json!([e.kind.word(), e.marker]),
                };
                (uuid.clone(), entry)
            })
            .collect();
        let doc = json!({"deployment": self.deployment, "name": self.name, "salt": self.salt, "assets": assets});
        format!(
            "/* Superset assets the aspects bundle `{}` imported. Written by aspects under its apply lock: do not \
             edit. */\n/* {} */\n",
            self.name.replace("*/", "* /"),
            doc.to_string().replace("*/", "*\\/")
        )
    }

    fn parse(template: i64, css: &str) -> Option<Markers> {
        let json = css.split_once("\n/* ")?.1.trim_end().strip_suffix("*/")?;
        let doc: Json = serde_json::from_str(json).ok()?;
        let s = |k: &str| doc.get(k).and_then(Json::as_str).map(str::to_owned);
        let mut assets = BTreeMap::new();
        for (uuid, entry) in doc.get("assets")?.as_object()? {
            let kind = Kind::parse(entry.get(0)?.as_str()?)?;
            let seen = match (entry.get(2), entry.get(3)) {
                (Some(id), Some(changed_on)) => Some((id.as_i64()?, changed_on.as_str()?.to_owned())),
                _ => None,
            };
            assets.insert(uuid.clone(), Entry { kind, marker: entry.get(1)?.as_str()?.to_owned(), seen });
        }
        Some(Markers {
            template: Some(template),
            deployment: s("deployment")?,
            name: s("name")?,
            salt: s("salt")?,
            assets,
        })
    }
}

impl Handle {
    /// Every bundle's markers on this Superset, of every deployment.
    pub(crate) async fn all_markers(&self) -> Result<Vec<Markers>, ProviderError> {
        let rows = self.aspects_templates().await?;
        rows.iter()
            .filter(|row| row.get("template_name").and_then(Json::as_str).is_some_and(|n| n.starts_with(PREFIX)))
            .map(|row| {
                let id = row.get("id").and_then(Json::as_i64).unwrap_or_default();
                let css = row.get("css").and_then(Json::as_str).unwrap_or_default();
                Markers::parse(id, css).ok_or_else(|| {
                    ProviderError::new(format!("the asset markers in CSS template {id} on Superset at {} are damaged", self.target))
                        .with_hint("delete that CSS template by hand; the next plan compares every asset of its bundle with Superset's export and imports what differs")
                })
            })
            .collect()
    }

    /// Writes the document: one PUT (one POST the first time).
    pub(crate) async fn write_markers(&self, markers: &mut Markers) -> Result<(), ProviderError> {
        let body = json!({"template_name": markers.template_name(), "css": markers.css()});
        let doing = format!("recording the assets of bundle {:?}", markers.name);
        match markers.template {
            Some(t) => self.write(Method::PUT, &format!("{TEMPLATES}{t}"), Some(&body), &doing).await.map(drop),
            None => {
                let answer = self.write(Method::POST, TEMPLATES, Some(&body), &doing).await?;
                markers.template = answer.get("id").and_then(Json::as_i64);
                Ok(())
            }
        }
    }

    pub(crate) async fn delete_markers(&self, markers: &Markers) -> Result<(), ProviderError> {
        let Some(t) = markers.template else { return Ok(()) };
        self.write(Method::DELETE, &format!("{TEMPLATES}{t}"), None, &format!("forgetting bundle {:?}", markers.name))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_through_css() {
        let mut m = Markers::new("prod", "a */ b");
        m.assets.insert("u1".into(), Entry { kind: Kind::Chart, marker: "abc".into(), seen: None });
        let seen = Some((7, "2026-12-01T22:09:23.000000+0000".into()));
        m.assets.insert("u2".into(), Entry { kind: Kind::Dataset, marker: "d".into(), seen });
        let css = m.css();
        assert!(!css.contains("a */ b"), "{css}");
        let back = Markers::parse(1, &css).unwrap();
        assert_eq!((back.name, back.salt, back.assets), (m.name, m.salt, m.assets));
        assert!(Markers::parse(1, "/* hand-edited */").is_none());
    }
}

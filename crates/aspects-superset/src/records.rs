//! Ownership records. Superset's users and roles have no field a tool may use for a marker
//! (a role is only a name; a user's fields are all shown and edited in the UI), so each
//! deployment keeps its records in one CSS template named `aspects records: <deployment>`: free
//! text Superset stores and never interprets unless a dashboard author picks it, listed in one
//! request for every deployment (so a claim sees other deployments' records), with the asset
//! markers. Each write is one
//! PUT of the whole document, atomic on its own, so `kill -9` leaves the old document or the new
//! one. Every write happens under the Superset apply lock (`lock.rs`), which every deployment
//! takes, so the copy a write handle keeps is the current one and a claim's owner check still
//! holds when its record is written. Within one run, record writes are serialised by a mutex.

use std::collections::BTreeMap;
use std::sync::Arc;

use aspects_engine::ownership::{State, owned_elsewhere};
use aspects_engine::provider::ProviderError;
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::client::{Handle, filter};
use crate::schema::deployment_scoped;

const PREFIX: &str = "aspects records: ";
const TEMPLATES: &str = "/api/v1/css_template/";
/// What the names of both kinds of aspects' CSS templates (records, asset markers) start with.
const ASPECTS: &str = "aspects ";

/// One record: the object is (kind, identity value); `name` is the address it was created under.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub name: String,
    pub state: State,
}

/// One deployment's records and the CSS template holding them.
#[derive(Clone, Debug, Default)]
pub struct Records {
    pub template: Option<i64>,
    pub deployment: String,
    pub entries: BTreeMap<(String, String), Record>,
}

impl Records {
    /// The document as CSS: the JSON inside a comment (`*/` in a name is written `*\/`, which
    /// JSON reads back as the same text).
    fn css(&self) -> String {
        let entries: Vec<Json> = self
            .entries
            .iter()
            .map(|((kind, id), r)| json!({"kind": kind, "id": id, "name": r.name, "state": r.state.as_str()}))
            .collect();
        let doc = json!({"deployment": self.deployment, "records": entries}).to_string().replace("*/", "*\\/");
        format!(
            "/* Objects the aspects deployment `{}` created or adopted in this Superset. Written by aspects under its \
             apply lock: do not edit. */\n/* {doc} */\n",
            self.deployment.replace("*/", "* /")
        )
    }

    fn parse(template: i64, deployment: &str, css: &str) -> Option<Records> {
        let json = css.split_once("\n/* ")?.1.trim_end().strip_suffix("*/")?;
        let doc: Json = serde_json::from_str(json).ok()?;
        let mut entries = BTreeMap::new();
        for e in doc.get("records")?.as_array()? {
            let s = |k: &str| e.get(k).and_then(Json::as_str).map(str::to_owned);
            let record = Record { name: s("name")?, state: State::parse(&s("state")?) };
            entries.insert((s("kind")?, s("id")?), record);
        }
        Some(Records { template: Some(template), deployment: deployment.to_owned(), entries })
    }
}

impl Handle {
    /// Every CSS template aspects writes, records and asset markers of every deployment: one
    /// list (a page per 100). A read-only handle reads it once (a plan's reads all want it);
    /// a write handle reads it afresh, since its own writes move it.
    pub(crate) async fn aspects_templates(&self) -> Result<Arc<Vec<Json>>, ProviderError> {
        let read = || async {
            let columns = ["id", "template_name", "css"];
            let rows = self
                .list(TEMPLATES, "template_name", &columns, &[filter("template_name", "sw", ASPECTS)])
                .await
                .map_err(|e| self.err(&e, "reading the ownership records and asset markers"))?;
            Ok(Arc::new(rows))
        };
        if self.read_only { self.templates.get_or_try_init(read).await.cloned() } else { read().await }
    }

    /// Every deployment's records on this Superset.
    pub(crate) async fn all_records(&self) -> Result<Vec<Records>, ProviderError> {
        let rows = self.aspects_templates().await?;
        let mut out = Vec::new();
        for row in rows.iter() {
            let name = row.get("template_name").and_then(Json::as_str).unwrap_or_default();
            let Some(deployment) = name.strip_prefix(PREFIX) else { continue };
            let id = row.get("id").and_then(Json::as_i64).unwrap_or_default();
            let css = row.get("css").and_then(Json::as_str).unwrap_or_default();
            let records = Records::parse(id, deployment, css).ok_or_else(|| {
                ProviderError::new(format!(
                    "the ownership records of deployment `{deployment}` on Superset at {} (CSS template {id}) are \
                     damaged",
                    self.target
                ))
                .with_hint("delete that CSS template by hand; the next plan offers to adopt the objects again")
            })?;
            out.push(records);
        }
        Ok(out)
    }

    /// This deployment's records.
    pub(crate) async fn own_records(&self) -> Result<Records, ProviderError> {
        let all = self.all_records().await?;
        Ok(all
            .into_iter()
            .find(|r| r.deployment == self.deployment)
            .unwrap_or_else(|| Records { deployment: self.deployment.clone(), ..Records::default() }))
    }

    /// Claims an object for this deployment (`Creating` before a create, `Adopted` for one that
    /// exists), refusing one another deployment records. Runs under the apply lock, so the
    /// owner read here is still the owner when the record is written.
    pub(crate) async fn claim(&self, kind: &str, id: &str, name: &str, state: State) -> Result<(), ProviderError> {
        let others = if deployment_scoped(kind) { Vec::new() } else { self.all_records().await? };
        for other in others.iter().filter(|r| r.deployment != self.deployment) {
            if let Some(r) = other.entries.get(&(kind.to_owned(), id.to_owned())) {
                return Err(owned_elsewhere(kind, &json!({ "id": id }).to_string(), &other.deployment, r.state));
            }
        }
        self.set_record(kind, id, Some(Record { name: name.to_owned(), state })).await
    }

    /// Writes one record (`None`: drops it): one PUT of this deployment's document.
    pub(crate) async fn set_record(&self, kind: &str, id: &str, record: Option<Record>) -> Result<(), ProviderError> {
        let mut cached = self.records.lock().await;
        if cached.is_none() {
            *cached = Some(self.own_records().await?);
        }
        let records = cached.as_mut().expect("loaded above");
        let key = (kind.to_owned(), id.to_owned());
        let before = records.entries.get(&key).cloned();
        if before == record {
            return Ok(());
        }
        match &record {
            Some(r) => records.entries.insert(key.clone(), r.clone()),
            None => records.entries.remove(&key),
        };
        let body = json!({"template_name": format!("{PREFIX}{}", self.deployment), "css": records.css()});
        let doing = format!("recording ownership of {kind} {id:?}");
        let written = match records.template {
            Some(t) => self.write(Method::PUT, &format!("{TEMPLATES}{t}"), Some(&body), &doing).await,
            None => self.write(Method::POST, TEMPLATES, Some(&body), &doing).await,
        };
        match written {
            Ok(answer) => {
                if records.template.is_none() {
                    records.template = answer.get("id").and_then(Json::as_i64);
                }
                Ok(())
            }
            Err(e) => {
                // The document on the server is the old one: keep the cache equal to it.
                match before {
                    Some(b) => records.entries.insert(key, b),
                    None => records.entries.remove(&key),
                };
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_through_css() {
        let mut r = Records { template: Some(3), deployment: "prod".into(), entries: BTreeMap::new() };
        r.entries.insert(("superset_role".into(), "a */ b".into()), Record { name: "x".into(), state: State::Created });
        r.entries.insert(("superset_user".into(), "u".into()), Record { name: "lms".into(), state: State::Adopted });
        let css = r.css();
        assert!(!css.contains("a */ b"), "{css}");
        let back = Records::parse(3, "prod", &css).unwrap();
        assert_eq!(back.entries, r.entries);
        assert!(Records::parse(3, "prod", "/* hand-edited */").is_none());
    }
}

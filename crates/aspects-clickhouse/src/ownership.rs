//! Ownership records in the target (`<meta_database>.owned`), so a plan only ever deletes what
//! some apply of the same deployment created or adopted.
//!
//! ClickHouse has no unique keys or transactions. One owner per object holds because (1) the
//! table's sorting key is the object (kind, identity key), so the latest row for an object is its
//! one record (`ReplacingMergeTree(version, deleted)`, read with `argMax` by version), and (2)
//! every write to it happens under the meta database's apply lock (`lock.rs`), which every
//! deployment on the server takes: a claim reads the current owner and writes in that order,
//! with no other writer in between. Each write is one INSERT, atomic on its own, so `kill -9`
//! leaves either the old row or the new one.

use std::collections::BTreeMap;

use aspects_core::Value;
use aspects_engine::provider::ProviderError;
use sha2::{Digest, Sha256};

use crate::client::{ChError, Handle, code, col, ident};
use crate::ddl;

pub use aspects_engine::ownership::{State, identity_json, owned_elsewhere};

/// The current record of one object.
pub struct Record {
    pub kind: String,
    pub key: String,
    pub deployment: String,
    pub name: String,
    pub identity: BTreeMap<String, Value>,
    pub state: State,
    /// What was applied, for kinds that compare against it (`clickhouse_sql`'s statements).
    pub applied: String,
}

pub fn key(kind: &str, identity: &BTreeMap<String, Value>) -> String {
    hex::encode(Sha256::digest(format!("{kind}\n{}", identity_json(identity)).as_bytes()))
}

impl Handle {
    pub(crate) fn owned_table(&self) -> String {
        format!("{}.{}", ident(&self.meta), ident("owned"))
    }

    /// Creates the meta database and the records table; only write handles call this.
    pub(crate) async fn ensure_meta(&self) -> Result<(), ProviderError> {
        let doing = format!("creating the meta database {}", ident(&self.meta));
        let on = self.on_cluster();
        self.execute(&ddl::meta_database(&self.meta, &on), &[], &doing).await?;
        self.execute(&ddl::owned_table(&self.meta, &on), &[], &doing).await
    }

    /// The current records, of one kind or all: one query; none when no apply has written yet.
    pub(crate) async fn records(&self, kind: Option<&str>) -> Result<Vec<Record>, ProviderError> {
        let sql = format!(
            "SELECT kind, ident_key, argMax(deployment, version) AS d, argMax(address, version) AS a, \
             argMax(identity, version) AS i, argMax(state, version) AS s, argMax(applied, version) AS ap, \
             argMax(deleted, version) AS del FROM {} WHERE {{all:Bool}} OR kind = {{kind:String}} \
             GROUP BY kind, ident_key HAVING del = 0",
            self.owned_table()
        );
        let params = [("all", if kind.is_none() { "true" } else { "false" }), ("kind", kind.unwrap_or_default())];
        let rows = match self.rows(&sql, &params).await {
            Ok(rows) => rows,
            Err(ChError { code: code::UNKNOWN_DATABASE | code::UNKNOWN_TABLE, .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(&e, "reading ownership records")),
        };
        rows.iter()
            .map(|r| {
                let json = col(r, "i");
                let Some(identity) = aspects_engine::ownership::identity_from_json(&json) else {
                    return Err(ProviderError::new(format!(
                        "an ownership record in {} on {} is damaged (identity {json:?})",
                        self.owned_table(),
                        self.target
                    ))
                    .with_hint("delete that row by hand; the next plan will offer to adopt the object again"));
                };
                Ok(Record {
                    kind: col(r, "kind"),
                    key: col(r, "ident_key"),
                    deployment: col(r, "d"),
                    name: col(r, "a"),
                    identity,
                    state: State::parse(&col(r, "s")),
                    applied: col(r, "ap"),
                })
            })
            .collect()
    }

    /// The record of one object, if any.
    pub(crate) async fn record(
        &self,
        kind: &str,
        identity: &BTreeMap<String, Value>,
    ) -> Result<Option<Record>, ProviderError> {
        let k = key(kind, identity);
        Ok(self.records(Some(kind)).await?.into_iter().find(|r| r.key == k))
    }

    /// One INSERT: the object's new current row. `deleted`: none for a live row, or the row that
    /// ends the record, written only where the SQL condition given holds (empty: always).
    async fn write_record(
        &self,
        kind: &str,
        name: &str,
        identity: &BTreeMap<String, Value>,
        state: State,
        applied: &str,
        deleted: Option<&str>,
    ) -> Result<(), ProviderError> {
        let condition = deleted.unwrap_or_default();
        let sql = format!(
            "INSERT INTO {} SELECT {{kind:String}}, {{key:String}}, {{dep:String}}, {{name:String}}, {{id:String}}, \
             {{state:String}}, {{applied:String}}, toUnixTimestamp64Nano(now64(9)), {{deleted:UInt8}}{condition}",
            self.owned_table()
        );
        let (k, id) = (key(kind, identity), identity_json(identity));
        let params = [
            ("kind", kind),
            ("key", k.as_str()),
            ("dep", self.deployment.as_str()),
            ("name", name),
            ("id", id.as_str()),
            ("state", state.as_str()),
            ("applied", applied),
            ("deleted", if deleted.is_some() { "1" } else { "0" }),
        ];
        self.execute(&sql, &params, &format!("recording ownership of {kind} {id}")).await
    }

    /// Claims an object for this deployment (`Creating` before a create, `Adopted` for one that
    /// exists). Runs under the apply lock, so the owner read here is still the owner when the
    /// row is written.
    pub(crate) async fn claim(
        &self,
        kind: &str,
        name: &str,
        identity: &BTreeMap<String, Value>,
        state: State,
    ) -> Result<(), ProviderError> {
        if let Some(r) = self.record(kind, identity).await?
            && r.deployment != self.deployment
        {
            return Err(owned_elsewhere(kind, &identity_json(identity), &r.deployment, r.state));
        }
        self.write_record(kind, name, identity, state, "", None).await
    }

    /// The claimed object was created by us (or, for SQL, these statements were applied).
    pub(crate) async fn confirm(
        &self,
        kind: &str,
        name: &str,
        identity: &BTreeMap<String, Value>,
        state: State,
        applied: &str,
    ) -> Result<(), ProviderError> {
        self.write_record(kind, name, identity, state, applied, None).await
    }

    pub(crate) async fn forget(&self, kind: &str, identity: &BTreeMap<String, Value>) -> Result<(), ProviderError> {
        self.write_record(kind, "", identity, State::Adopted, "", Some("")).await
    }

    /// Drops the claim of a create that failed, only while it is still a claim of this
    /// deployment: a run that took over while this one stalled past its lease may have created
    /// the object and confirmed it since. The statement that writes decides, not an earlier read.
    pub(crate) async fn forget_claim(
        &self,
        kind: &str,
        identity: &BTreeMap<String, Value>,
    ) -> Result<(), ProviderError> {
        let condition = format!(
            " WHERE (SELECT argMax(tuple(state, deployment), version) FROM {} WHERE kind = {{kind:String}} \
             AND ident_key = {{key:String}}) = tuple('{}', {{dep:String}})",
            self.owned_table(),
            State::Creating.as_str()
        );
        self.write_record(kind, "", identity, State::Adopted, "", Some(&condition)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_kind_specific() {
        let id: BTreeMap<String, Value> =
            [("database", "a'b"), ("name", "t")].map(|(k, v)| (k.to_owned(), Value::from(v))).into();
        assert_eq!(identity_json(&id), r#"{"database":"a'b","name":"t"}"#);
        assert_eq!(key("clickhouse_table", &id), key("clickhouse_table", &id.clone()));
        assert_ne!(key("clickhouse_table", &id), key("clickhouse_database", &id));
    }
}

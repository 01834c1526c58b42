//! Ownership records in the target itself (`<meta_database>.owned`), so a plan only ever deletes
//! what some apply of the same deployment created or adopted, and the engine stays stateless.

use std::collections::BTreeMap;

use aspects_core::Value;
use aspects_engine::provider::ProviderError;
use sha1::{Digest, Sha1};

use crate::connect::{Handle, text};
use crate::error;
use crate::sql::ident;

/// One owned object: the resource name it was created under and its identity attributes.
pub struct Record {
    pub kind: String,
    pub name: String,
    pub identity: BTreeMap<String, Value>,
}

/// Identity attributes as JSON text with sorted keys: stable, so it can be hashed and compared.
pub fn identity_json(identity: &BTreeMap<String, Value>) -> String {
    serde_json::Value::Object(identity.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()).to_string()
}

/// The primary key of a record: identities can be longer than an index allows.
pub fn key(kind: &str, identity: &BTreeMap<String, Value>) -> String {
    hex::encode(Sha1::digest(format!("{kind}\n{}", identity_json(identity)).as_bytes()).as_slice())
}

/// "Unknown database" and "table doesn't exist": a server no apply has written to yet.
const NO_META: &[u16] = &[1049, 1146];

impl Handle {
    fn owned_table(&self) -> String {
        format!("{}.{}", ident(&self.meta), ident("owned"))
    }

    pub(crate) fn locks_table(&self) -> String {
        format!("{}.{}", ident(&self.meta), ident("locks"))
    }

    /// Creates the meta database and its tables; only write handles call this.
    pub(crate) async fn ensure_meta(&self) -> Result<(), ProviderError> {
        let doing = format!("creating the meta database {}", ident(&self.meta));
        self.run(
            &format!("CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", ident(&self.meta)),
            &doing,
            &[],
        )
        .await?;
        self.run(
            &format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                 deployment VARCHAR(190) NOT NULL, \
                 kind VARCHAR(64) NOT NULL, \
                 ident_key CHAR(40) NOT NULL COMMENT 'sha1 of kind and identity', \
                 address VARCHAR(1024) NOT NULL COMMENT 'resource name within its kind', \
                 identity TEXT NOT NULL COMMENT 'identity attributes as JSON', \
                 created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
                 PRIMARY KEY (deployment, kind, ident_key)\
                 ) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin COMMENT 'objects owned by aspects deployments'",
                self.owned_table()
            ),
            &doing,
            &[],
        )
        .await?;
        self.run(
            &format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                 name VARCHAR(64) NOT NULL PRIMARY KEY, \
                 holder VARCHAR(1024) NOT NULL, \
                 acquired_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP\
                 ) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin COMMENT 'who holds each aspects deployment lock'",
                self.locks_table()
            ),
            &doing,
            &[],
        )
        .await
    }

    /// Who owns what for one kind: identity key -> deployments (one query; none when the meta
    /// tables do not exist). Every deployment's records, so a conflict can be refused.
    pub(crate) async fn owners(&self, kind: &str) -> Result<BTreeMap<String, Vec<String>>, ProviderError> {
        let sql = format!("SELECT ident_key, deployment FROM {} WHERE kind = ?", self.owned_table());
        match self.rows(&sql, &[kind]).await {
            Ok(rows) => {
                let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for r in &rows {
                    out.entry(text(r, 0)?).or_default().push(text(r, 1)?);
                }
                Ok(out)
            }
            Err(e) if error::number(&e).is_some_and(|n| NO_META.contains(&n)) => Ok(BTreeMap::new()),
            Err(e) => Err(self.err(&e, "reading ownership records")),
        }
    }

    /// Every record of this deployment (one query).
    pub(crate) async fn owned_records(&self) -> Result<Vec<Record>, ProviderError> {
        let sql = format!(
            "SELECT kind, address, identity FROM {} WHERE deployment = ? ORDER BY kind, address",
            self.owned_table()
        );
        let rows = match self.rows(&sql, &[&self.deployment]).await {
            Ok(rows) => rows,
            Err(e) if error::number(&e).is_some_and(|n| NO_META.contains(&n)) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err(&e, "reading ownership records")),
        };
        rows.iter()
            .map(|r| {
                let (kind, name, json) = (text(r, 0)?, text(r, 1)?, text(r, 2)?);
                let identity = match serde_json::from_str::<serde_json::Value>(&json) {
                    Ok(serde_json::Value::Object(map)) => map
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().map_or_else(|| Value::Json(v.clone()), Value::from)))
                        .collect(),
                    _ => {
                        return Err(ProviderError::new(format!(
                            "the ownership record of {kind}.{name} in {} on {} is damaged (identity {json:?})",
                            self.owned_table(),
                            self.target
                        ))
                        .with_hint("delete that row by hand; the next plan will offer to adopt the object again"));
                    }
                };
                Ok(Record { kind, name, identity })
            })
            .collect()
    }

    /// Records (or re-records) ownership; done before creating, so a crash leaves a record
    /// without an object, which the next plan turns into a create.
    pub(crate) async fn record(
        &self,
        kind: &str,
        name: &str,
        identity: &BTreeMap<String, Value>,
    ) -> Result<(), ProviderError> {
        let sql = format!(
            "INSERT INTO {} (deployment, kind, ident_key, address, identity) VALUES (?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE address = VALUES(address), identity = VALUES(identity)",
            self.owned_table()
        );
        let json = identity_json(identity);
        self.rows(&sql, &[&self.deployment, kind, &key(kind, identity), name, &json])
            .await
            .map(drop)
            .map_err(|e| self.err(&e, &format!("recording ownership of {kind}.{name}")))
    }

    /// Drops a record; done after the object is gone.
    pub(crate) async fn forget(&self, kind: &str, identity: &BTreeMap<String, Value>) -> Result<(), ProviderError> {
        let sql = format!("DELETE FROM {} WHERE deployment = ? AND kind = ? AND ident_key = ?", self.owned_table());
        self.rows(&sql, &[&self.deployment, kind, &key(kind, identity)])
            .await
            .map(drop)
            .map_err(|e| self.err(&e, &format!("removing the ownership record of {kind} {}", identity_json(identity))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_json_is_sorted_and_keys_are_stable() {
        let id: BTreeMap<String, Value> =
            [("user", "a'b"), ("host", "%")].map(|(k, v)| (k.to_owned(), Value::from(v))).into();
        assert_eq!(identity_json(&id), r#"{"host":"%","user":"a'b"}"#);
        assert_eq!(key("mysql_user", &id), key("mysql_user", &id.clone()));
        assert_ne!(key("mysql_user", &id), key("mysql_grant", &id));
        assert_eq!(key("k", &id).len(), 40);
    }
}

//! Ownership records in the target itself (`<meta_database>.owned`), so a plan only ever deletes
//! what some apply of the same deployment created or adopted, and the engine stays stateless.
//! One design for every provider on a MySQL-protocol server: the table's unique key on (kind,
//! object) decides concurrent claims between deployments.

use std::collections::BTreeMap;

use aspects_core::{Address, Live, Orphan, ProviderId, Value};
use aspects_engine::provider::ProviderError;
use sha1::{Digest, Sha1};
use sqlx::mysql::MySqlRow;

use crate::Server;
use crate::error;
use crate::quote::ident;
use crate::session::text;

pub use aspects_engine::ownership::{State, identity_json, mark_owner, owned_elsewhere, unplanned};

/// One record of this deployment: the resource name it was made under and its identity.
pub struct Record {
    pub kind: String,
    pub name: String,
    pub identity: BTreeMap<String, Value>,
    /// Its `ident_key` as stored: [`key`] of `kind` and `identity`, not recomputed per record.
    pub key: String,
    pub state: State,
}

/// A record of this deployment the plan no longer names, with the attributes of its object
/// when that exists.
pub type Stale = (Record, Option<BTreeMap<String, Value>>);

/// The orphans stale records show: objects that exist and that a record proves this deployment
/// owns. The rest (object gone, create never confirmed) prove nothing: [`Server::prune`] drops
/// them without counting them as destroys.
pub fn orphans(stale: Vec<Stale>, provider: &ProviderId) -> impl Iterator<Item = Orphan> + '_ {
    stale.into_iter().filter_map(move |(rec, attrs)| {
        let attrs = attrs.filter(|_| rec.state.owns())?;
        Some(unplanned(Address::new(rec.kind, rec.name), rec.identity, attrs, provider, rec.state))
    })
}

/// Who records an object: a deployment and how far it got.
pub struct Owner {
    pub deployment: String,
    pub state: State,
}

/// The key of a record: identities can be longer than an index allows.
pub fn key(kind: &str, identity: &BTreeMap<String, Value>) -> String {
    let digest = Sha1::new().chain_update(kind).chain_update("\n").chain_update(identity_json(identity)).finalize();
    hex::encode(digest)
}

/// "Unknown database" and "table doesn't exist": a server no apply has written to yet.
const NO_META: &[u16] = &[1049, 1146];
/// A concurrent migration got there first: duplicate column, duplicate key name.
const ALREADY_MIGRATED: &[u16] = &[1060, 1061];
/// Duplicate entry for a unique key.
const DUPLICATE: u16 = 1062;
/// A column the table does not have (yet).
const UNKNOWN_COLUMN: u16 = 1054;

impl Server {
    pub fn owned_table(&self) -> String {
        format!("{}.{}", ident(&self.meta), ident("owned"))
    }

    pub fn locks_table(&self) -> String {
        format!("{}.{}", ident(&self.meta), ident("locks"))
    }

    /// Creates the meta database and its tables, or brings tables made by an older version up to
    /// date; only write handles call this.
    pub async fn ensure_meta(&self) -> Result<(), ProviderError> {
        let doing = format!("creating the meta database {}", ident(&self.meta));
        self.sql
            .run(
                &format!(
                    "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                    ident(&self.meta)
                ),
                &doing,
                &[],
            )
            .await?;
        // The unique key on (kind, ident_key) is what makes one owner per object hold whatever
        // the timing: a second deployment's claim fails in the server, not in our reasoning.
        self.sql
            .run(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {} (\
                 deployment VARCHAR(190) NOT NULL, \
                 kind VARCHAR(64) NOT NULL, \
                 ident_key CHAR(40) NOT NULL COMMENT 'sha1 of kind and identity', \
                 address VARCHAR(1024) NOT NULL COMMENT 'resource name within its kind', \
                 identity TEXT NOT NULL COMMENT 'identity attributes as JSON', \
                 created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
                 {STATE_COLUMN}, \
                 PRIMARY KEY (deployment, kind, ident_key), \
                 UNIQUE KEY one_owner (kind, ident_key)\
                 ) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin COMMENT 'objects owned by aspects deployments'",
                    self.owned_table()
                ),
                &doing,
                &[],
            )
            .await?;
        self.sql
            .run(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {} (\
                 name VARCHAR(64) NOT NULL PRIMARY KEY, \
                 holder VARCHAR(1024) NOT NULL, \
                 acquired_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
                 {CONNECTION_COLUMN}\
                 ) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin COMMENT 'who holds each aspects deployment lock'",
                    self.locks_table()
                ),
                &doing,
                &[],
            )
            .await?;
        self.migrate_meta().await
    }

    /// Tables created before records had states and one owner per object: add what is missing.
    /// Rows from then carry no proof of creation, so they become `adopted` (destroy keeps them).
    async fn migrate_meta(&self) -> Result<(), ProviderError> {
        let doing = format!("upgrading the meta tables in {}", ident(&self.meta));
        let present: Vec<String> = self
            .sql
            .rows(
                "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN ('owned', 'locks') \
                 UNION ALL SELECT CONCAT(TABLE_NAME, '.', INDEX_NAME) FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'owned'",
                &[&self.meta, &self.meta],
            )
            .await
            .map_err(|e| self.sql.err(&e, &doing))?
            .iter()
            .map(|r| text(r, 0))
            .collect::<Result<_, _>>()?;
        let has = |what: &str| present.iter().any(|p| p == what);
        let mut steps = Vec::new();
        if !has("owned.state") {
            steps.push(format!("ALTER TABLE {} ADD COLUMN {STATE_COLUMN}", self.owned_table()));
        }
        if !has("locks.connection_id") {
            steps.push(format!("ALTER TABLE {} ADD COLUMN {CONNECTION_COLUMN}", self.locks_table()));
        }
        if !has("owned.one_owner") {
            self.refuse_shared_records().await?;
            steps.push(format!("ALTER TABLE {} ADD UNIQUE KEY one_owner (kind, ident_key)", self.owned_table()));
        }
        for sql in steps {
            match self.sql.execute(&sql, false).await {
                Err(e) if error::number(&e).is_some_and(|n| ALREADY_MIGRATED.contains(&n)) => {}
                Err(e) if error::number(&e) == Some(DUPLICATE) => {
                    // Shared records appeared after the check (an older aspects still writing):
                    // name them, and never carry on without the one-owner key.
                    self.refuse_shared_records().await?;
                    return Err(self
                        .sql
                        .err(&e, &doing)
                        .with_hint("other runs wrote ownership records meanwhile; run again"));
                }
                r => r.map_err(|e| self.sql.err(&e, &doing))?,
            }
        }
        Ok(())
    }

    /// Objects that several deployments recorded (possible before the unique key existed) have
    /// no single owner; a person must say which deployment keeps each.
    async fn refuse_shared_records(&self) -> Result<(), ProviderError> {
        let sql = format!(
            "SELECT kind, MIN(identity), GROUP_CONCAT(deployment ORDER BY deployment SEPARATOR ', ') FROM {} \
             GROUP BY kind, ident_key HAVING COUNT(*) > 1",
            self.owned_table()
        );
        let rows = self.sql.rows(&sql, &[]).await.map_err(|e| self.sql.err(&e, "reading ownership records"))?;
        if rows.is_empty() {
            return Ok(());
        }
        let shared = rows
            .iter()
            .map(|r| Ok(format!("{} {} (deployments {})", text(r, 0)?, text(r, 1)?, text(r, 2)?)))
            .collect::<Result<Vec<_>, ProviderError>>()?;
        // The message names the first few; -v logs every one.
        for s in &shared {
            tracing::info!("owned by more than one deployment: {s}");
        }
        Err(ProviderError::new(format!(
            "{} on {} records objects owned by more than one deployment: {}",
            self.owned_table(),
            self.sql.endpoint.target,
            aspects_engine::few_joined(&shared, "; ")
        ))
        .with_hint(format!(
            "an object has one owner: for each, delete the rows of the deployments that should not own it \
             (DELETE FROM {} WHERE deployment = '...' AND kind = '...' AND identity = '...'), then run again",
            self.owned_table()
        )))
    }

    /// Who records what for one kind: identity key -> owners (one query; none when the meta
    /// tables do not exist). Every deployment's records, so a conflict can be refused.
    pub async fn owners(&self, kind: &str) -> Result<BTreeMap<String, Owner>, ProviderError> {
        let sql = format!("SELECT ident_key, deployment, {{state}} FROM {} WHERE kind = ?", self.owned_table());
        self.records_query(&sql, kind)
            .await?
            .iter()
            .map(|r| Ok((text(r, 0)?, Owner { deployment: text(r, 1)?, state: State::parse(&text(r, 2)?) })))
            .collect()
    }

    /// How this deployment records one object, if it does.
    pub async fn own_state(
        &self,
        kind: &str,
        identity: &BTreeMap<String, Value>,
    ) -> Result<Option<State>, ProviderError> {
        let owners = self.owners(kind).await?;
        Ok(owners.get(&key(kind, identity)).filter(|o| o.deployment == self.deployment).map(|o| o.state))
    }

    /// A query over the records, `{state}` standing for the state column. No meta tables means no
    /// records; tables no apply has upgraded yet (plan runs read-only) have no states: their rows
    /// read as `adopted`, as the upgrade will make them.
    async fn records_query(&self, sql: &str, bind: &str) -> Result<Vec<MySqlRow>, ProviderError> {
        let mut result = self.sql.rows(&sql.replace("{state}", "state"), &[bind]).await;
        if matches!(&result, Err(e) if error::number(e) == Some(UNKNOWN_COLUMN)) {
            result = self.sql.rows(&sql.replace("{state}", "'adopted'"), &[bind]).await;
        }
        match result {
            Ok(rows) => Ok(rows),
            Err(e) if error::number(&e).is_some_and(|n| NO_META.contains(&n)) => Ok(Vec::new()),
            Err(e) => Err(self.sql.err(&e, "reading ownership records")),
        }
    }

    /// Every record of this deployment (one query), in kind and address order. Sorted here, not
    /// by the server: with the identity TEXT column in every row, MariaDB's filesort of 9,000
    /// records took 139 ms of a 9,000-resource no-op plan.
    pub async fn owned_records(&self) -> Result<Vec<Record>, ProviderError> {
        let sql = format!(
            "SELECT kind, address, identity, {{state}}, ident_key FROM {} WHERE deployment = ?",
            self.owned_table()
        );
        let mut records = self
            .records_query(&sql, &self.deployment)
            .await?
            .iter()
            .map(|r| {
                let (kind, name, json, state, key) = (text(r, 0)?, text(r, 1)?, text(r, 2)?, text(r, 3)?, text(r, 4)?);
                let Some(identity) = aspects_engine::ownership::identity_from_json(&json) else {
                    return Err(ProviderError::new(format!(
                        "the ownership record of {kind}.{name} in {} on {} is damaged (identity {json:?})",
                        self.owned_table(),
                        self.sql.endpoint.target
                    ))
                    .with_hint("delete that row by hand; the next plan will offer to adopt the object again"));
                };
                Ok(Record { kind, name, identity, key, state: State::parse(&state) })
            })
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_unstable_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        Ok(records)
    }

    /// Claims an object for this deployment: `Creating` before a create, `Adopted` for an object
    /// that exists. The unique key decides between deployments claiming at the same moment; the
    /// loser gets an error naming the owner and has changed nothing.
    pub async fn claim(
        &self,
        kind: &str,
        name: &str,
        identity: &BTreeMap<String, Value>,
        state: State,
    ) -> Result<(), ProviderError> {
        let (k, json) = (key(kind, identity), identity_json(identity));
        let doing = format!("recording ownership of {kind}.{name}");
        let insert = format!(
            "INSERT INTO {} (deployment, kind, ident_key, address, identity, state) VALUES (?, ?, ?, ?, ?, ?)",
            self.owned_table()
        );
        // A row can vanish between the failed insert and the look-up (its owner pruned it): retry.
        for _ in 0..3 {
            match self.write_record(&insert, &[&self.deployment, kind, &k, name, &json, state.as_str()]).await {
                Ok(_) => return Ok(()),
                Err(e) if error::number(&e) == Some(DUPLICATE) => {}
                Err(e) => return Err(self.sql.err(&e, &doing)),
            }
            let select =
                format!("SELECT deployment, state FROM {} WHERE kind = ? AND ident_key = ?", self.owned_table());
            let rows = self.sql.rows(&select, &[kind, &k]).await.map_err(|e| self.sql.err(&e, &doing))?;
            let Some(row) = rows.first() else { continue };
            let owner = text(row, 0)?;
            if owner != self.deployment {
                return Err(owned_elsewhere(kind, &json, &owner, State::parse(&text(row, 1)?)));
            }
            // Ours already (a crash left it, or the object is being made again).
            let update = format!(
                "UPDATE {} SET address = ?, identity = ?, state = ? WHERE deployment = ? AND kind = ? AND ident_key = ?",
                self.owned_table()
            );
            return self
                .write_record(&update, &[name, &json, state.as_str(), &self.deployment, kind, &k])
                .await
                .map(drop)
                .map_err(|e| self.sql.err(&e, &doing));
        }
        Err(ProviderError::new(format!(
            "{doing} on {} did not settle: other runs keep changing it",
            self.sql.endpoint.target
        ))
        .with_hint("run apply again"))
    }

    /// Claims the object, runs `make` (a create that fails if the object exists, so a success
    /// proves this deployment made it), then confirms the record. A failed create drops the
    /// claim: a record never outlives a create that did not happen.
    pub async fn create_owned(
        &self,
        kind: &str,
        name: &str,
        identity: &BTreeMap<String, Value>,
        make: impl Future<Output = Result<(), ProviderError>>,
    ) -> Result<(), ProviderError> {
        self.claim(kind, name, identity, State::Creating).await?;
        if let Err(e) = make.await {
            if let Err(forget) = self.forget(kind, identity).await {
                // The claim stays `creating`, which proves nothing: the next apply claims it again,
                // or prunes it once the resource has left the plan.
                tracing::warn!("{forget}");
            }
            return Err(e);
        }
        self.confirm_created(kind, identity).await
    }

    /// Marks each object read for a desired resource (`live`, in the order of `identities`) as
    /// this deployment's or another's, from the records of `kind` (one query, none when nothing
    /// exists).
    pub async fn mark_owners(
        &self,
        kind: &str,
        live: &mut [Option<Live>],
        identities: impl Iterator<Item = BTreeMap<String, Value>>,
    ) -> Result<(), ProviderError> {
        if live.iter().all(Option::is_none) {
            return Ok(());
        }
        let owners = self.owners(kind).await?;
        for (l, id) in live.iter_mut().zip(identities) {
            if let (Some(l), Some(owner)) = (l, owners.get(&key(kind, &id))) {
                mark_owner(l, &self.deployment, &owner.deployment, owner.state);
            }
        }
        Ok(())
    }

    /// Drops the stale records [`orphans`] does not show; returns how many.
    pub async fn prune(&self, stale: Vec<Stale>) -> Result<usize, ProviderError> {
        let mut pruned = 0;
        for (rec, attrs) in stale {
            if attrs.is_none() || !rec.state.owns() {
                tracing::debug!(kind = rec.kind, address = rec.name, "pruning an ownership record that proves nothing");
                self.forget(&rec.kind, &rec.identity).await?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// A write to the records: a crash point like any other write (see `aspects_engine::fault`).
    async fn write_record(&self, sql: &str, binds: &[&str]) -> Result<Vec<MySqlRow>, sqlx::Error> {
        let result = self.sql.rows(sql, binds).await;
        aspects_engine::fault::after_write();
        result
    }

    /// A claimed object was created by us: the record now proves it.
    pub async fn confirm_created(&self, kind: &str, identity: &BTreeMap<String, Value>) -> Result<(), ProviderError> {
        let sql =
            format!("UPDATE {} SET state = ? WHERE deployment = ? AND kind = ? AND ident_key = ?", self.owned_table());
        self.write_record(&sql, &[State::Created.as_str(), &self.deployment, kind, &key(kind, identity)])
            .await
            .map(drop)
            .map_err(|e| self.sql.err(&e, &format!("recording the creation of {kind} {}", identity_json(identity))))
    }

    /// Drops a record; done after the object is gone, after a failed create, or to release it.
    pub async fn forget(&self, kind: &str, identity: &BTreeMap<String, Value>) -> Result<(), ProviderError> {
        let sql = format!("DELETE FROM {} WHERE deployment = ? AND kind = ? AND ident_key = ?", self.owned_table());
        self.write_record(&sql, &[&self.deployment, kind, &key(kind, identity)]).await.map(drop).map_err(|e| {
            self.sql.err(&e, &format!("removing the ownership record of {kind} {}", identity_json(identity)))
        })
    }
}

const STATE_COLUMN: &str =
    "state VARCHAR(16) NOT NULL DEFAULT 'adopted' COMMENT 'creating (claimed, not yet made), created or adopted'";
const CONNECTION_COLUMN: &str = "connection_id BIGINT NULL COMMENT 'the server connection holding the lock'";

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

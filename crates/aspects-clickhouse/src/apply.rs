//! Carrying out one planned change. Every step is safe to repeat after a crash: ownership is
//! claimed before an object is created (with a statement that fails if it exists, so success
//! proves this deployment made it), records go after the object, and dropping something
//! already gone counts as done.

use std::collections::BTreeMap;

use aspects_core::{Action, Change, KindSchema, Resource, Value};
use aspects_engine::provider::ProviderError;

use crate::client::{ChError, Handle, code, ident};
use crate::ddl::{self, Table, column_name};
use crate::ownership::State;
use crate::read::explicit;
use crate::schema::{self, DATABASE, FUNCTION, GRANT, ROLE, SQL, TABLE, USER, str_attr, str_list};

type Identity = BTreeMap<String, Value>;

impl Handle {
    pub(crate) async fn apply(
        &self,
        kind: &KindSchema,
        change: &Change,
        desired: Option<&Resource>,
    ) -> Result<(), ProviderError> {
        tracing::debug!(address = %change.address, action = ?change.action, "apply");
        let kind = kind.kind;
        let desired = || aspects_engine::provider::desired_for(change, desired);
        match change.action {
            Action::NoOp => Ok(()),
            Action::Adopt => self.adopt(kind, desired()?).await,
            Action::Create => self.create(kind, desired()?).await,
            Action::Update => {
                let r = desired()?;
                if change.adopt {
                    self.adopt(kind, r).await?;
                }
                if kind == GRANT {
                    return self.converge_grant(r, Some(change)).await;
                }
                self.update(kind, r).await
            }
            Action::Replace => {
                let r = desired()?;
                let new = schema::identity(kind, &r.attrs);
                match &change.old_identity {
                    Some(old) if schema::identity(kind, old) != new => {
                        self.create(kind, r).await?;
                        let old = schema::identity(kind, old);
                        let adopted = self.record(kind, &old).await?.is_some_and(|rec| rec.state == State::Adopted);
                        if adopted { self.forget(kind, &old).await } else { self.destroy(kind, &old).await }
                    }
                    _ => {
                        self.remove(kind, &new).await?;
                        self.create(kind, r).await
                    }
                }
            }
            Action::Delete | Action::Release => {
                let old = change.old_identity.as_ref().ok_or_else(|| {
                    ProviderError::new(format!("{}: the engine passed no identity to remove", change.address))
                })?;
                let id = schema::identity(kind, old);
                if change.action == Action::Delete {
                    self.destroy(kind, &id).await
                } else {
                    self.forget(kind, &id).await
                }
            }
        }
    }

    async fn adopt(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        self.claim(kind, &r.address.name, &schema::identity(kind, &r.attrs), State::Adopted).await
    }

    /// Claim, create with a statement that fails if the object exists, confirm. A failed create
    /// drops the claim.
    async fn create(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        let id = schema::identity(kind, &r.attrs);
        self.claim(kind, &r.address.name, &id, State::Creating).await?;
        let made = match kind {
            SQL => self.run_statements(r).await,
            _ => self.make(kind, r).await,
        };
        if let Err(e) = made {
            if let Err(forget) = self.forget_claim(kind, &id).await {
                // The claim stays `creating`, which proves nothing: pruned or claimed again later.
                tracing::warn!("{forget}");
            }
            return Err(e);
        }
        self.confirm(kind, &r.address.name, &id, State::Created, &applied(kind, r)).await?;
        self.settle(kind, r).await
    }

    async fn destroy(&self, kind: &str, id: &Identity) -> Result<(), ProviderError> {
        self.remove(kind, id).await?;
        self.forget(kind, id).await
    }

    async fn make(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        let a = &r.attrs;
        let on = self.on_cluster();
        let (sql, what, exists) = match kind {
            DATABASE => (
                ddl::create_database(str_attr(a, "name"), str_attr(a, "engine"), &on),
                format!("database {}", ident(str_attr(a, "name"))),
                code::DATABASE_ALREADY_EXISTS,
            ),
            TABLE => (ddl::create_table(a, &on), table_name(a), code::TABLE_ALREADY_EXISTS),
            ROLE => {
                (self.create_role_sql(r), format!("role {}", ident(str_attr(a, "name"))), code::USER_ALREADY_EXISTS)
            }
            GRANT => return self.converge_grant(r, None).await,
            FUNCTION => (
                ddl::create_function(a, &on, false),
                format!("function {}", ident(str_attr(a, "name"))),
                code::FUNCTION_ALREADY_EXISTS,
            ),
            USER => {
                let what = format!("user {}", ident(str_attr(a, "name")));
                return match self.set_user(r, true).await? {
                    Err(e) if e.code == code::USER_ALREADY_EXISTS => Err(self.err(&e, &format!("creating {what}")).with_hint(format!(
                        "{what} appeared after the plan was read, so this deployment did not create it and recorded \
                         nothing; run plan again: it offers to adopt it"
                    ))),
                    result => result.map_err(|e| self.err(&e, &format!("creating {what}"))),
                };
            }
            other => return Err(ProviderError::new(format!("the clickhouse provider cannot create a `{other}`"))),
        };
        let doing = format!("creating {what}");
        tracing::debug!(sql, "statement");
        let result = self.query(&sql, &[]).await;
        aspects_engine::fault::after_write();
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code == exists => Err(self.err(&e, &doing).with_hint(format!(
                "{what} appeared after the plan was read, so this deployment did not create it and recorded nothing; \
                 run plan again: it offers to adopt it if it matches"
            ))),
            Err(e) => Err(self.err(&e, &doing)),
        }
    }

    async fn update(&self, kind: &str, r: &Resource) -> Result<(), ProviderError> {
        match kind {
            TABLE => {
                self.alter_table(r).await?;
                self.settle(kind, r).await
            }
            FUNCTION => {
                let sql = ddl::create_function(&r.attrs, &self.on_cluster(), true);
                self.execute(&sql, &[], &format!("replacing function {}", ident(str_attr(&r.attrs, "name")))).await?;
                self.settle(kind, r).await
            }
            USER => {
                let what = format!("setting the password of user {}", ident(str_attr(&r.attrs, "name")));
                self.set_user(r, false).await?.map_err(|e| self.err(&e, &what))
            }
            SQL => {
                self.run_statements(r).await?;
                let id = schema::identity(kind, &r.attrs);
                self.confirm(kind, &r.address.name, &id, State::Created, &applied(kind, r)).await
            }
            // Every database attribute forces a replace.
            _ => Ok(()),
        }
    }

    /// The in-place changes of a table: new columns added where the plan puts them, changed ones
    /// modified, TTL and settings set or reset. Removing a column would lose its data: refused.
    async fn alter_table(&self, r: &Resource) -> Result<(), ProviderError> {
        let a = &r.attrs;
        let name = table_name(a);
        let want = self.desired_tables(&[(r, ddl::create_table(a, &self.on_cluster()))]).await?.remove(0);
        let live = self.tables([(str_attr(a, "database"), str_attr(a, "name"))]).await?;
        let Some(Some(have)) = live.into_values().next() else {
            return Err(ProviderError::new(format!("{name} is gone or is not a table; run plan again")));
        };
        let on = self.on_cluster();
        let alter = |change: String| ddl::alter_table(str_attr(a, "database"), str_attr(a, "name"), &on, &change);
        for statement in table_changes(&name, &want, &have)? {
            self.execute(&alter(statement), &[], &format!("altering {name}")).await?;
        }
        Ok(())
    }

    async fn run_statements(&self, r: &Resource) -> Result<(), ProviderError> {
        for (i, sql) in str_list(r.attrs.get("statements")).into_iter().enumerate() {
            self.execute(sql, &[], &format!("running statement {} of {}", i + 1, r.address)).await?;
        }
        Ok(())
    }

    /// Drops the object; already gone counts as done.
    async fn remove(&self, kind: &str, id: &Identity) -> Result<(), ProviderError> {
        let on = self.on_cluster();
        let (sql, what) = match kind {
            DATABASE => (
                ddl::drop_database(str_attr(id, "name"), &on),
                format!("dropping database {}", ident(str_attr(id, "name"))),
            ),
            TABLE => (
                ddl::drop_table(str_attr(id, "database"), str_attr(id, "name"), &on),
                format!("dropping {}", table_name(id)),
            ),
            FUNCTION => (
                ddl::drop_function(str_attr(id, "name"), &on),
                format!("dropping function {}", ident(str_attr(id, "name"))),
            ),
            USER => {
                let name = ident(str_attr(id, "name"));
                (format!("DROP USER IF EXISTS {name}{on}"), format!("dropping user {name}"))
            }
            ROLE => {
                let name = ident(str_attr(id, "name"));
                (format!("DROP ROLE IF EXISTS {name}{on}"), format!("dropping role {name}"))
            }
            GRANT => return self.revoke(id).await,
            // Extra SQL leaves nothing to drop.
            _ => return Ok(()),
        };
        let result = self.query(&sql, &[]).await;
        aspects_engine::fault::after_write();
        match result {
            Ok(_) | Err(ChError { code: code::UNKNOWN_DATABASE, .. }) => Ok(()),
            Err(e) => Err(self.err(&e, &what)),
        }
    }
}

/// What a record keeps of the applied resource: the statements of extra SQL.
fn applied(kind: &str, r: &Resource) -> String {
    if kind == SQL {
        serde_json::to_string(&str_list(r.attrs.get("statements"))).unwrap_or_default()
    } else {
        String::new()
    }
}

fn table_name(a: &Identity) -> String {
    format!("table {}.{}", ident(str_attr(a, "database")), ident(str_attr(a, "name")))
}

/// The live table is what `want` describes (both canonical): nothing is left to change.
pub(crate) fn converged(want: &Table, have: &Table) -> bool {
    ddl::without_replica_args(&want.engine) == ddl::without_replica_args(&have.engine)
        && want.clauses == have.clauses
        && table_changes("", want, have).is_ok_and(|c| c.is_empty())
}

/// The ALTER clauses that take `have` to `want` (both canonical), in order; an error when that
/// would lose data or is not possible in place.
fn table_changes(name: &str, want: &Table, have: &Table) -> Result<Vec<String>, ProviderError> {
    let refuse = |what: String| {
        ProviderError::new(format!("{name}: {what}")).with_hint(
            "change it by hand, or remove the table from the plan, apply with --allow-destroy, and add it back \
             (that drops the data)",
        )
    };
    let named = |t: &Table| -> BTreeMap<String, String> {
        t.columns.iter().filter_map(|c| column_name(c).map(|n| (n, c.clone()))).collect()
    };
    let (want_cols, have_cols) = (named(want), named(have));
    let elements = |t: &Table| t.columns.iter().filter(|c| column_name(c).is_none()).cloned().collect::<Vec<_>>();
    if elements(want) != elements(have) {
        return Err(refuse(
            "its indexes, projections or constraints differ, which aspects does not change in place".into(),
        ));
    }
    if let Some(gone) = have_cols.keys().find(|n| !want_cols.contains_key(*n)) {
        return Err(refuse(format!("column {} is not in the plan; dropping it would lose its data", ident(gone))));
    }
    let mut out = Vec::new();
    let mut previous: Option<String> = None;
    for def in &want.columns {
        let Some(col) = column_name(def) else { continue };
        match have_cols.get(&col) {
            None => {
                let place = previous.as_ref().map_or_else(|| "FIRST".to_owned(), |p| format!("AFTER {}", ident(p)));
                out.push(format!("ADD COLUMN {def} {place}"));
            }
            Some(current) if current != def => out.push(format!("MODIFY COLUMN {def}")),
            Some(_) => {}
        }
        previous = Some(col);
    }
    match (want.clauses.get("ttl"), have.clauses.get("ttl")) {
        (Some(w), h) if Some(w) != h => out.push(format!("MODIFY TTL {w}")),
        (None, Some(_)) => out.push("REMOVE TTL".into()),
        _ => {}
    }
    for (k, v) in &want.settings {
        if have.settings.get(k) != Some(v) {
            out.push(format!("MODIFY SETTING {k} = {v}"));
        }
    }
    for k in explicit(&have.settings).keys().filter(|k| !want.settings.contains_key(*k)) {
        out.push(format!("RESET SETTING {k}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[&str], ttl: Option<&str>, settings: &[(&str, &str)]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            engine: "MergeTree".into(),
            clauses: ttl.map(|t| ("ttl", t.to_owned())).into_iter().collect(),
            settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            other: Vec::new(),
        }
    }

    #[test]
    fn in_place_changes_are_additive_and_losses_refused() {
        let have = table(&["`a` UInt8", "`c` String"], Some("d + 1"), &[("index_granularity", "8192"), ("x", "1")]);
        let want = table(&["`z` UInt8", "`a` UInt16", "`b` String", "`c` String"], None, &[("y", "2")]);
        insta::assert_snapshot!(table_changes("t", &want, &have).unwrap().join("\n"), @r"
        ADD COLUMN `z` UInt8 FIRST
        MODIFY COLUMN `a` UInt16
        ADD COLUMN `b` String AFTER `a`
        REMOVE TTL
        MODIFY SETTING y = 2
        RESET SETTING x
        ");
        let err = table_changes("t", &table(&["`a` UInt8"], None, &[]), &have).unwrap_err();
        assert!(err.message.contains("column `c` is not in the plan"), "{err}");
        let indexed = table(&["`a` UInt8", "`c` String", "INDEX i a TYPE minmax GRANULARITY 1"], None, &[]);
        assert!(table_changes("t", &indexed, &have).unwrap_err().message.contains("indexes"));
        assert!(table_changes("t", &have, &have).unwrap().is_empty());
    }
}

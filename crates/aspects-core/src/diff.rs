//! Desired vs live, attribute by attribute. Both sides arrive normalised by the provider's one
//! normaliser; this module only compares and classifies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resource::{Address, Live, Orphan, ProviderId, Resource, Verification};
use crate::schema::{KindSchema, UpdateMode};
use crate::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    NoOp,
    /// The object exists and matches, but this deployment does not own it yet: record ownership.
    Adopt,
    Create,
    Update,
    Replace,
    Delete,
    /// The deployment stops owning an object it adopted: its record goes, the object stays.
    Release,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Adopt => "=",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Release => ">",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Action::NoOp => "is unchanged",
            Action::Adopt => "will be adopted (it exists and matches; ownership is recorded)",
            Action::Create => "will be created",
            Action::Update => "will be updated in place",
            Action::Replace => "must be replaced",
            Action::Delete => "will be destroyed",
            Action::Release => "will be released: no longer owned, the object is kept",
        }
    }
}

/// How one attribute changes. `None` means absent (create/delete) or unreadable (write-only).
#[derive(Clone, Debug)]
pub struct AttrChange {
    pub name: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub forces_replace: bool,
    pub sensitive: bool,
    /// Why a write-only attribute could not be verified, if it could not.
    pub unverifiable: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Change {
    pub address: Address,
    pub provider: ProviderId,
    pub action: Action,
    /// Only the attributes that change (all of them for create and delete).
    pub attrs: Vec<AttrChange>,
    pub reason: Option<String>,
    /// For delete, the object to remove; for a replace that moves identity, the old object.
    pub old_identity: Option<BTreeMap<String, Value>>,
    pub data_bearing: bool,
    /// The object exists but is not yet recorded as owned by this deployment.
    pub adopt: bool,
    /// For an adoption: the attributes that already match, so the plan shows what it takes over.
    pub unchanged: Vec<AttrChange>,
    pub origin: Option<String>,
    pub depends_on: Vec<Address>,
}

/// Compares one desired resource with what was read for it. `previous` is an owned object that
/// was created under the same address with another identity (a renamed user): that is a replace.
pub fn diff(schema: &KindSchema, desired: &Resource, live: Option<&Live>, previous: Option<&Orphan>) -> Change {
    let mut change = Change {
        address: desired.address.clone(),
        provider: desired.provider.clone(),
        action: Action::NoOp,
        attrs: Vec::new(),
        reason: None,
        old_identity: None,
        data_bearing: schema.data_bearing,
        adopt: false,
        unchanged: Vec::new(),
        origin: Some(desired.origin.clone()),
        depends_on: desired.depends_on.iter().cloned().collect(),
    };
    let Some(live) = live else {
        let before = previous.map(|p| &p.attrs);
        for attr in &schema.attrs {
            let Some(after) = desired.get(attr.name) else { continue };
            let old = before.and_then(|b| b.get(attr.name));
            if previous.is_some() && old == Some(after) {
                continue;
            }
            change.attrs.push(AttrChange {
                name: attr.name.to_owned(),
                before: old.cloned(),
                after: Some(after.clone()),
                forces_replace: previous.is_some() && attr.identity,
                sensitive: attr.sensitive,
                unverifiable: None,
            });
        }
        match previous {
            Some(p) => {
                change.action = Action::Replace;
                change.old_identity = Some(p.identity.clone());
                change.reason = Some(replace_reason(&change.attrs));
            }
            None => change.action = Action::Create,
        }
        return change;
    };

    for attr in &schema.attrs {
        let Some(after) = desired.get(attr.name) else { continue };
        let mut unverifiable = None;
        let differs = if attr.write_only {
            match live.verified.get(attr.name) {
                Some(Verification::Matches) => false,
                Some(Verification::Differs) => true,
                Some(Verification::Unknown(why)) => {
                    unverifiable = Some(why.clone());
                    true
                }
                None => {
                    unverifiable = Some("the provider did not verify it".into());
                    true
                }
            }
        } else {
            live.attrs.get(attr.name) != Some(after)
        };
        // Built only when kept: an unchanged attribute of an owned object costs no copy (a
        // bundle's `assets` is megabytes of JSON).
        if !differs && live.owned {
            continue;
        }
        let a = AttrChange {
            name: attr.name.to_owned(),
            before: if attr.write_only { None } else { live.attrs.get(attr.name).cloned() },
            after: Some(after.clone()),
            forces_replace: differs && attr.update == UpdateMode::Replace,
            sensitive: attr.sensitive,
            unverifiable,
        };
        if differs {
            change.attrs.push(a);
        } else {
            change.unchanged.push(a);
        }
    }
    change.adopt = !live.owned;
    change.action = if change.attrs.iter().any(|a| a.forces_replace) {
        change.reason = Some(replace_reason(&change.attrs));
        Action::Replace
    } else if !change.attrs.is_empty() {
        Action::Update
    } else if change.adopt {
        Action::Adopt
    } else {
        Action::NoOp
    };
    change
}

fn replace_reason(attrs: &[AttrChange]) -> String {
    let names: Vec<&str> = attrs.iter().filter(|a| a.forces_replace).map(|a| a.name.as_str()).collect();
    match names.as_slice() {
        [] => "replacement requested".into(),
        [one] => format!("changing {one} forces replacement"),
        many => format!("changing {} forces replacement", many.join(", ")),
    }
}

/// An owned object that the plan no longer names: destroyed.
pub fn delete(schema: &KindSchema, orphan: &Orphan) -> Change {
    removal(schema, orphan, Action::Delete)
}

/// An owned object to remove or, for [`Action::Release`], to stop owning.
pub fn removal(schema: &KindSchema, orphan: &Orphan, action: Action) -> Change {
    let release = action == Action::Release;
    let attrs = ordered(schema, &orphan.attrs).map(|(name, v)| AttrChange {
        name: name.clone(),
        before: Some(v.clone()),
        // A released object keeps every attribute: shown unchanged, without a sign.
        after: release.then(|| v.clone()),
        forces_replace: false,
        sensitive: schema.attr(name).is_some_and(|a| a.sensitive),
        unverifiable: None,
    });
    let (attrs, unchanged) = if release { (Vec::new(), attrs.collect()) } else { (attrs.collect(), Vec::new()) };
    Change {
        address: orphan.address.clone(),
        provider: orphan.provider.clone(),
        action,
        attrs,
        reason: Some(orphan.reason.clone()),
        old_identity: Some(orphan.identity.clone()),
        data_bearing: schema.data_bearing,
        adopt: false,
        unchanged,
        origin: None,
        depends_on: Vec::new(),
    }
}

/// Attributes in the kind's declared order, then any the schema does not name.
fn ordered<'a>(
    schema: &'a KindSchema,
    attrs: &'a BTreeMap<String, Value>,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    let known = schema.attrs.iter().filter_map(|a| attrs.get_key_value(a.name));
    known.chain(attrs.iter().filter(|(k, _)| schema.attr(k).is_none()))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub adopt: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub release: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Every change the engine found, sorted by address. No-ops are kept: the saved-plan check and
/// the JSON document need to know what was looked at.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub deployment: String,
    pub changes: Vec<Change>,
    /// `Some` when `--target` narrowed the plan: the addresses asked for.
    pub targets: Option<Vec<Address>>,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::NoOp => {}
                Action::Adopt => s.adopt += 1,
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
                Action::Release => s.release += 1,
            }
            if c.adopt && c.action != Action::Adopt {
                s.adopt += 1;
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }

    /// Changes that would destroy user data.
    pub fn destroys_data(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.data_bearing && matches!(c.action, Action::Delete | Action::Replace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{AttrSchema, AttrType};
    use crate::secret::Secret;

    fn schema() -> KindSchema {
        KindSchema {
            kind: "t_user",
            attrs: vec![
                AttrSchema::new("name", AttrType::String, "").identity(),
                AttrSchema::new("comment", AttrType::String, ""),
                AttrSchema::new("password", AttrType::String, "").write_only_secret(),
            ],
            data_bearing: false,
            rank: 0,
            doc: "",
            ..Default::default()
        }
    }

    fn desired(comment: &str) -> Resource {
        Resource {
            address: Address::new("t_user", "a"),
            provider: "t".into(),
            attrs: [
                ("name".to_owned(), Value::from("a")),
                ("comment".to_owned(), Value::from(comment)),
                ("password".to_owned(), Value::Sensitive(Secret::new("pw"))),
            ]
            .into(),
            depends_on: Default::default(),
            origin: "f:1:1".into(),
            ..Default::default()
        }
    }

    fn live(comment: &str, pw: Verification, owned: bool) -> Live {
        Live {
            attrs: [("name".to_owned(), Value::from("a")), ("comment".to_owned(), Value::from(comment))].into(),
            verified: [("password".to_owned(), pw)].into(),
            owned,
            other_owner: None,
        }
    }

    #[test]
    fn absent_is_create_with_every_attribute() {
        let c = diff(&schema(), &desired("x"), None, None);
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.attrs.len(), 3);
    }

    #[test]
    fn equal_and_owned_is_noop_but_unowned_is_adopt() {
        let d = desired("x");
        assert_eq!(diff(&schema(), &d, Some(&live("x", Verification::Matches, true)), None).action, Action::NoOp);
        assert_eq!(diff(&schema(), &d, Some(&live("x", Verification::Matches, false)), None).action, Action::Adopt);
    }

    #[test]
    fn only_changed_attributes_are_listed_and_passwords_come_from_the_verifier() {
        let c = diff(&schema(), &desired("y"), Some(&live("x", Verification::Differs, true)), None);
        assert_eq!(c.action, Action::Update);
        let names: Vec<_> = c.attrs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["comment", "password"]);
        assert!(c.attrs[1].before.is_none() && c.attrs[1].sensitive);
    }

    #[test]
    fn unknown_verification_is_a_change_with_its_reason() {
        let c = diff(
            &schema(),
            &desired("x"),
            Some(&live("x", Verification::Unknown("plugin ed25519".into()), true)),
            None,
        );
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.attrs[0].unverifiable.as_deref(), Some("plugin ed25519"));
    }

    #[test]
    fn a_release_keeps_the_object_counts_apart_and_is_never_gated() {
        let mut s = schema();
        s.data_bearing = true;
        let o = Orphan {
            address: Address::new("t_user", "a"),
            identity: [("name".to_owned(), Value::from("a"))].into(),
            attrs: [("name".to_owned(), Value::from("a")), ("comment".to_owned(), Value::from("x"))].into(),
            provider: "t".into(),
            reason: String::new(),
            adopted: true,
        };
        let c = removal(&s, &o, Action::Release);
        assert!(c.attrs.is_empty());
        let kept: Vec<_> = c.unchanged.iter().map(|a| (a.name.as_str(), a.after.clone())).collect();
        assert_eq!(kept, [("name", Some(Value::from("a"))), ("comment", Some(Value::from("x")))]);
        let plan = Plan { changes: vec![c, delete(&s, &o)], ..Plan::default() };
        let summary = plan.summary();
        assert_eq!((summary.release, summary.destroy), (1, 1));
        assert_eq!(plan.destroys_data().count(), 1, "only the delete needs --allow-destroy");
    }

    #[test]
    fn identity_moved_under_same_address_is_replace() {
        let prev = Orphan {
            address: Address::new("t_user", "a"),
            identity: [("name".to_owned(), Value::from("old"))].into(),
            attrs: [("name".to_owned(), Value::from("old")), ("comment".to_owned(), Value::from("x"))].into(),
            provider: "t".into(),
            reason: String::new(),
            adopted: false,
        };
        let c = diff(&schema(), &desired("x"), None, Some(&prev));
        assert_eq!(c.action, Action::Replace);
        assert_eq!(c.reason.as_deref(), Some("changing name forces replacement"));
        let names: Vec<_> = c.attrs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["name", "password"]);
    }
}

//! What every provider's ownership records share: the states a record goes through, the refusal
//! when another deployment owns an object, and the schema defaults every normaliser starts from.
//! How records are stored is each target's business (a MySQL table with a unique key, a
//! ClickHouse ReplacingMergeTree written under a lease lock).

use std::collections::BTreeMap;

use aspects_core::{Address, KindSchema, Live, Orphan, Resource, Value};

use crate::provider::ProviderError;

/// How a record came to be. Only `Created` and `Adopted` mean "owned": a `Creating` record is a
/// claim taken before a create, which proves nothing until the create is confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Creating,
    Created,
    Adopted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Created => "created",
            State::Adopted => "adopted",
        }
    }

    /// Unknown text is read as `Adopted`: the state that never lets `destroy` drop an object.
    pub fn parse(s: &str) -> State {
        match s {
            "creating" => State::Creating,
            "created" => State::Created,
            _ => State::Adopted,
        }
    }

    pub fn owns(self) -> bool {
        self != State::Creating
    }
}

/// Another deployment records the object.
pub fn owned_elsewhere(kind: &str, identity_json: &str, owner: &str, state: State) -> ProviderError {
    let how = match state {
        State::Creating => "is creating it right now, or a run of it stopped mid-create",
        State::Created => "created it",
        State::Adopted => "adopted it",
    };
    ProviderError::new(format!(
        "{kind} {identity_json} is owned by deployment `{owner}`, which {how}; nothing was changed"
    ))
    .with_hint(
        "two deployments cannot manage one object (either could destroy it); give this one its own names, \
             or remove the resource from one of the plans",
    )
}

/// Identity attributes as JSON text with sorted keys: stable, so it can be hashed and compared.
/// Written piece by piece (not through a `serde_json::Value`): every plan computes it for every
/// resource.
pub fn identity_json(identity: &BTreeMap<String, Value>) -> String {
    let mut out = vec![b'{'];
    for (i, (k, v)) in identity.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let key = serde_json::to_writer(&mut out, k);
        out.push(b':');
        let value = match v {
            Value::Str(s) => serde_json::to_writer(&mut out, s),
            other => serde_json::to_writer(&mut out, &other.to_json()),
        };
        key.and(value).expect("JSON written to memory");
    }
    out.push(b'}');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The identity a record stored with [`identity_json`]; `None` when the text is damaged.
pub fn identity_from_json(json: &str) -> Option<BTreeMap<String, Value>> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(map)) => Some(
            map.into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| Value::Json(std::sync::Arc::new(v.clone())), Value::from)))
                .collect(),
        ),
        _ => None,
    }
}

/// What a record says about a live object this deployment plans: owned (a claim whose create was
/// never confirmed proves nothing, so it is adopted visibly), or another deployment's.
pub fn mark_owner(live: &mut Live, deployment: &str, owner: &str, state: State) {
    if owner == deployment {
        live.owned = state.owns();
    } else {
        live.other_owner = Some(owner.to_owned());
    }
}

/// An object a record says this deployment owns and the plan no longer names: what `orphans()`
/// returns for it (destroyed, or released when it was adopted).
pub fn unplanned(
    address: Address,
    identity: BTreeMap<String, Value>,
    attrs: BTreeMap<String, Value>,
    provider: &str,
    state: State,
) -> Orphan {
    Orphan {
        address,
        identity,
        attrs,
        provider: provider.to_owned(),
        reason: "not in the plan".into(),
        adopted: state == State::Adopted,
    }
}

/// Fills the schema's defaults into a desired resource: the first step of every normaliser.
pub fn fill_defaults(kind: &KindSchema, resource: &mut Resource) {
    for attr in &kind.attrs {
        if let (Some(default), false) = (&attr.default, resource.attrs.contains_key(attr.name)) {
            resource.attrs.insert(attr.name.to_owned(), default.clone());
        }
    }
}

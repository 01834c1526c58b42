//! The systems this binary knows. A new provider crate is added here and nowhere else.

use std::collections::BTreeMap;

use aspects_core::Registry;
use aspects_engine::Connector;

pub fn connectors() -> BTreeMap<&'static str, Box<dyn Connector>> {
    let list: Vec<Box<dyn Connector>> = vec![
        Box::new(aspects_mysql::MySql),
        Box::new(aspects_clickhouse::ClickHouse),
        Box::new(aspects_superset::Superset),
        Box::new(aspects_lms::Lms),
        Box::new(aspects_files::Files),
        Box::new(aspects_exec::Exec),
    ];
    list.into_iter().map(|c| (c.schema().system, c)).collect()
}

pub fn registry(connectors: &BTreeMap<&'static str, Box<dyn Connector>>) -> Registry {
    connectors.values().fold(Registry::default(), |r, c| r.with(c.schema()))
}

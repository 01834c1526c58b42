//! What this provider's errors say: the shared mapping of [`aspects_sql::error`] with MySQL's
//! names and what the provider user needs.

use aspects_sql::System;

pub use aspects_sql::error::number;

pub static MYSQL: System = System {
    server: "MySQL",
    block: "[providers.mysql]",
    privileges: "the provider user needs CREATE USER, every privilege it grants WITH GRANT OPTION, SELECT on the \
                 `mysql` schema and CREATE, ALTER, SELECT, INSERT, UPDATE, DELETE on the meta database; \
                 e.g. `GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION`",
    meta_default: crate::schema::DEFAULT_META_DATABASE,
    lock_prefix: "aspects",
    url_check: aspects_sql::names::check_url,
};

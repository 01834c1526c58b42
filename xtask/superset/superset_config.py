"""Superset configuration of the local stack (`cargo xtask stack up`, xtask/src/superset.rs).

The secrets stay out of this file and out of every process argument: the secret key is read from
the file the stack generated (0600, under target/stack/superset/), the metadata database URL from
the environment the stack sets.
"""

import hashlib
import os
from datetime import timedelta
from pathlib import Path

_STATE = Path(os.environ["ASPECTS_SUPERSET_STATE"])

SECRET_KEY = (_STATE / "secret_key").read_text().strip()
# Derived, so the stack keeps one secret; distinct from SECRET_KEY as Superset asks.
GUEST_TOKEN_JWT_SECRET = hashlib.sha256(b"guest-token:" + SECRET_KEY.encode()).hexdigest()

# The stack's MariaDB, database `superset` (utf8mb4), as Aspects runs it.
SQLALCHEMY_DATABASE_URI = os.environ["ASPECTS_SUPERSET_METADATA_URI"]

if SQLALCHEMY_DATABASE_URI.startswith("mysql"):
    # SQLAlchemy 1.4 (Superset pins < 2) turns sequences on for MariaDB >= 10.3 and writes
    # `NO CYCLE` for Flask-AppBuilder's Sequence(cycle=False), which MariaDB rejects
    # (apache/superset#37578, sqlalchemy#13073): use AUTO_INCREMENT as on MySQL.
    from sqlalchemy.dialects.mysql.base import MySQLDialect as _MySQLDialect

    _initialize = _MySQLDialect.initialize

    def _initialize_without_sequences(self, connection):
        _initialize(self, connection)
        self.supports_sequences = False

    _MySQLDialect.initialize = _initialize_without_sequences

FEATURE_FLAGS = {"EMBEDDED_SUPERSET": True}
# Plain HTTP on 127.0.0.1: no HTTPS headers, and the tests log in many times a minute.
TALISMAN_ENABLED = False
RATELIMIT_ENABLED = False
WTF_CSRF_TIME_LIMIT = None
JWT_ACCESS_TOKEN_EXPIRES = timedelta(hours=2)
# Per-process caches; filter state and explore form data keep their default (the metadata
# database), which both gunicorn workers share.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache"}

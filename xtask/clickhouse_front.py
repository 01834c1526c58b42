"""The local stack's ClickHouse: the real ClickHouse engine (chdb, in process) behind an HTTP front
that speaks the part of ClickHouse's HTTP protocol that reqwest, the Rust `clickhouse` crate and
clickhouse-connect use. Started and stopped by `cargo xtask stack up|down`; never a production
server.

Why Python: no ClickHouse server >= 23 installs on these machines, and the engine is only published
as the chdb Python extension (its shared object exports no C API to link from Rust).

What is REAL: every query, its parser, its errors and its results come from the ClickHouse engine.
What is EMULATED (labelled `EMULATION` below; a real server does it otherwise):
  - authentication: chdb always runs queries as `default` and never checks a password. The front
    checks the credentials itself against its own user list (`default` without password, plus the
    users made below) and answers 516 AUTHENTICATION_FAILED like a server does;
  - SQL users, roles and grants (RBAC): chdb has no writable access storage (CREATE USER, CREATE
    ROLE and GRANT fail whatever the configuration). The front keeps users and roles in
    data/access.json and takes CREATE / ALTER / DROP USER, CREATE / DROP ROLE, GRANT and REVOKE
    itself, each only after the real parser accepted and canonicalised it (formatQuerySingleLine).
    Users: `IDENTIFIED WITH sha256_hash BY '...' SALT '...'` or no authentication, `ADD IDENTIFIED`
    and `RESET AUTHENTICATION METHODS TO NEW` (several methods per user, as ClickHouse >= 24.9);
    names must be XML element names. Privileges are kept per user and role as the ordered list of
    GRANT / REVOKE statements it received (so partial revokes and grant options replay exactly),
    role grants as a set with their admin option. The front writes all of it to a users.xml and
    restarts the engine on it, so `system.users`, `system.roles`, `system.grants`,
    `system.role_grants` and `SHOW GRANTS` come from the real engine, which canonicalises the
    privileges itself. That engine is a second one, in a child process on an empty data
    directory, which answers the queries that read access entities and restarts (when the model
    changed) before such a query; the data engine never restarts (users.xml holds one
    authentication method, so `system.users` shows only a user's newest one while the front accepts
    any). chdb enforces no privileges: every query still runs as `default`;
  - the `storage` of users and roles: chdb loads one users.xml and nothing else, so every entity
    would show `users_xml`. A server keeps SQL-made users and roles in `local_directory` and only
    the users its users.xml defines (here `default`) in `users_xml`, and SQL can alter only the
    former. The front answers `system.users` and `system.roles` from views of them that say so
    (the query is rewritten to read the views; see STORAGE_VIEWS);
  - one engine connection serves every request, one at a time (a server runs queries in parallel);
    settings sent as URL parameters are set before the query and reset after it; a request with
    `readonly` set runs on a second session that is read-only for good (`readonly` cannot be reset
    once set, so it never touches the shared session);
  - multi-statement requests are refused with the parser's own error, as the HTTP interface does
    (chdb alone would run them all).

Usage: python clickhouse_front.py --port P --data DIR --pid-file FILE   (listens on 127.0.0.1 only)
"""

import argparse
import base64
import email.parser
import email.policy
import gzip
import hashlib
import hmac
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from xml.sax.saxutils import escape as xml_escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb

try:  # only for compressed request bodies (the `clickhouse` crate's LZ4 inserts, clickhouse-connect)
    import lz4.block
    import lz4.frame
except ImportError:
    lz4 = None

# URL parameters the HTTP interface consumes itself; every other one is a setting.
HTTP_PARAMS = {
    "query", "database", "default_format", "compress", "decompress", "user", "password", "quota_key",
    "query_id", "session_id", "session_timeout", "session_check", "close_session", "role", "stacktrace",
    "wait_end_of_query", "buffer_size", "client_protocol_version",
}
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Status per error name, as ClickHouse's exceptionCodeToHTTPStatus decides it; names are mapped
# to this engine's own codes at start-up (errorCodeToName), so no number is guessed here.
STATUS_BY_NAME = {
    401: ["REQUIRED_PASSWORD"],
    403: ["UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"],
    400: ["BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE",
          "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
          "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
          "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
          "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST",
          "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
          "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"],
    404: ["UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
          "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
          "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"],
    413: ["QUERY_IS_TOO_LARGE"],
    501: ["NOT_IMPLEMENTED"],
    503: ["SOCKET_TIMEOUT", "CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK"],
    411: ["HTTP_LENGTH_REQUIRED"],
    408: ["TIMEOUT_EXCEEDED"],
    415: ["UNSUPPORTED_MEDIA_TYPE"],
}


class QueryError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


CONFIG = """<clickhouse>
    <user_directories><users_xml><path>users.xml</path></users_xml></user_directories>
</clickhouse>
"""
XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
NAME = r"(?P<name>`(?:[^`\\]|\\.)*`|[A-Za-z_][A-Za-z0-9_]*)"
CLUSTER = r"(?: ON CLUSTER (?:`(?:[^`\\]|\\.)*`|\S+))?"
AUTH = r"IDENTIFIED WITH sha256_hash BY '(?P<hash>[0-9A-Fa-f]{64})' SALT '(?P<salt>[0-9A-Za-z]*)'"
CREATE_OR_ALTER = re.compile(
    r"^(?P<verb>CREATE|ALTER) USER (?P<if>IF NOT EXISTS |IF EXISTS )?" + NAME + CLUSTER
    + r"(?: (?P<add>ADD )?" + AUTH + r"| (?P<reset>RESET AUTHENTICATION METHODS TO NEW))?$")
DROP = re.compile(r"^DROP (?P<what>USER|ROLE) (?P<if>IF EXISTS )?(?P<names>.+?)" + CLUSTER + "$")
CREATE_ROLE = re.compile(r"^CREATE ROLE (?P<if>IF NOT EXISTS |OR REPLACE )?(?P<names>.+?)" + CLUSTER + "$")
GRANT_OR_REVOKE = re.compile(r"^(?P<verb>GRANT|REVOKE) (?:ON CLUSTER (?:`(?:[^`\\]|\\.)*`|\S+) )?"
                             r"(?P<option>GRANT OPTION FOR |ADMIN OPTION FOR )?(?P<rest>.+)$")


READS_ACCESS = re.compile(r"system\W+(users|roles|grants|role_grants|user_directories|enabled_roles|current_roles)\b"
                          r"|\bSHOW\s+(GRANTS|USERS|ROLES|ACCESS|CREATE\s+(USER|ROLE))\b|\bEXISTS\s+(USER|ROLE)\b", re.I)
READ_ONLY_QUERY = re.compile(r"\s*(SELECT|SHOW|WITH|EXISTS|DESC|DESCRIBE)\b", re.I)
ACCESS_STATEMENT = re.compile(r"\s*((CREATE|ALTER|DROP)\s+(USER|ROLE)|GRANT|REVOKE)\b", re.I)


# EMULATION: the users a server's users.xml defines (read-only to SQL); every other entity was made
# by SQL, so a server keeps it in its writable `local_directory` storage.
XML_USERS = ("default",)
# Access-engine views that show each entity's storage as a server would; reads of the system
# tables are rewritten to them (the views keep every column, in order).
STORAGE_VIEWS = [
    "CREATE DATABASE IF NOT EXISTS emulated_access ENGINE = Memory",
    "CREATE OR REPLACE VIEW emulated_access.users AS SELECT * REPLACE (if(name IN ("
    + ", ".join(f"'{n}'" for n in XML_USERS) + "), 'users_xml', 'local_directory') AS storage) FROM system.users",
    "CREATE OR REPLACE VIEW emulated_access.roles AS SELECT * REPLACE ('local_directory' AS storage) FROM system.roles",
]
SYSTEM_STORAGE_TABLE = re.compile(r"(?:\bsystem|`system`)\s*\.\s*(?:`(users|roles)`|(users|roles)\b)", re.I)


def with_storage_views(sql):
    return SYSTEM_STORAGE_TABLE.sub(lambda m: "emulated_access." + (m[1] or m[2]).lower(), sql)


def load_model(saved):
    """access.json; an older front kept only users, as name -> null or [hash, salt]."""
    if "users" in saved and isinstance(saved.get("roles"), dict):
        return saved
    return {"users": {n: {"auth": [a] if a else [], "log": [], "roles": {}} for n, a in saved.items()}, "roles": {}}


def users_xml(model):
    """EMULATION: users, roles and grants as a users.xml (default keeps full rights). Every entity
    gets `<grants>`, even empty: a user without one would hold ALL."""
    def grants(e):
        lines = list(e["log"]) + [f"GRANT {quote_ident(r)}" + (" WITH ADMIN OPTION" if admin else "")
                                  for r, admin in sorted(e["roles"].items())]
        return "<grants>" + "".join(f"<query>{xml_escape(q)}</query>" for q in lines) + "</grants>"

    out = ["<clickhouse>", "<profiles><default/></profiles>", "<users>",
           "<default><password></password><access_management>1</access_management></default>"]
    for name, e in sorted(model["users"].items()):
        # users.xml holds one method: the newest (the front itself accepts every one).
        cred = f"<password_sha256_hex>{e['auth'][-1][0]}</password_sha256_hex>" if e["auth"] else "<no_password/>"
        out.append(f"<{name}>{cred}{grants(e)}</{name}>")
    out += ["</users>", "<roles>"]
    out += [f"<{name}>{grants(e)}</{name}>" for name, e in sorted(model["roles"].items())]
    out += ["</roles>", "</clickhouse>", ""]
    return "\n".join(out)


class AccessEngine:
    """EMULATION: a second chdb engine, in a child process (chdb is one engine per process), on
    an empty data directory and the users.xml of the model. It answers the queries that read
    access entities and restarts on every change in 50-200 ms, while the data engine runs on."""

    # chdb does not give back the memory of an engine it closes: a child that reloaded all day
    # grew to 9 GB. So a reload starts a new child every RELOADS_PER_CHILD reloads.
    RELOADS_PER_CHILD = 20

    def __init__(self, root):
        self.root = root
        self.proc = None
        self.reloads = 0
        self.call({"reload": True})

    def spawn(self):
        if self.proc is not None:
            self.close()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--access-engine", self.root],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.reloads = 0

    def call(self, request):
        dead = self.proc is None or self.proc.poll() is not None
        if request.get("reload"):
            if dead or self.reloads >= self.RELOADS_PER_CHILD:
                self.spawn()
            self.reloads += 1
        elif dead:
            # A child that died (killed, out of memory) comes back on the users.xml last written.
            self.call({"reload": True})
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline() or b'{"error": "the access engine stopped"}')
        if "error" in answer:
            text = answer["error"]
            m = re.match(r"Code: (\d+)\. ", text)
            raise QueryError(int(m.group(1)) if m else 1001, text if m else f"Code: 1001. DB::Exception: {text}")
        return base64.b64decode(answer["out"])

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=10)


def access_engine_main(root):
    """The child side of AccessEngine: one JSON request per line on stdin, one answer per line."""
    os.chdir(root)
    with open("ch-config.xml", "w") as f:
        f.write(CONFIG)
    url = f"file:{os.path.join(root, 'engine')}?config-file={os.path.join(root, 'ch-config.xml')}"
    conn = None
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            if request.get("reload"):
                if conn is not None:
                    conn.close()
                    conn = None
                conn = chdb.connect(url)
                for sql in STORAGE_VIEWS:
                    conn.query(sql)
                out = b""
            else:
                out = conn.query(request["sql"], request["fmt"], params=request.get("params")).bytes() or b""
            answer = {"out": base64.b64encode(out).decode()}
        except Exception as e:
            answer = {"error": str(e)}
        sys.stdout.buffer.write(json.dumps(answer).encode() + b"\n")
        sys.stdout.buffer.flush()
    return 0


def unquote(name):
    return re.sub(r"\\(.)", r"\1", name[1:-1]) if name.startswith("`") else name


def top_level(text, sep):
    """Positions of `sep` in the text outside quotes, backticks and brackets."""
    out, depth, quote, i = [], 0, None, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "`'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            out.append(i)
        i += 1
    return out


def split_top(text, sep):
    cuts = top_level(text, sep)
    starts = [0] + [c + len(sep) for c in cuts]
    ends = cuts + [len(text)]
    return [text[a:b] for a, b in zip(starts, ends)]


def names_of(text):
    """A canonical name list (`a, b`); anything else (ALL, EXCEPT, CURRENT_USER) is refused."""
    out = []
    for raw in split_top(text, ", "):
        if not re.fullmatch(r"`(?:[^`\\]|\\.)*`|[A-Za-z_][A-Za-z0-9_]*", raw) or raw in ("ALL", "CURRENT_USER"):
            return None
        out.append(unquote(raw))
    return out


def entity():
    """EMULATION: one user or role. `auth`: [[sha256 hex, salt], ...] (empty = no password);
    `log`: the privilege GRANT/REVOKE statements in order; `roles`: granted role -> admin option."""
    return {"auth": [], "log": [], "roles": {}}


class Engine:
    """The one chdb engine (a read-write and a read-only session), serialised behind a lock."""

    def __init__(self, root):
        self.lock = threading.Lock()
        self.root = root
        self.data = os.path.join(root, "engine")
        self.access = os.path.join(root, "access.json")
        # EMULATION: {"users": name -> entity(), "roles": name -> entity()}; `default` stays in users.xml.
        self.model = {"users": {}, "roles": {}}
        if os.path.exists(self.access):
            with open(self.access) as f:
                self.model = load_model(json.load(f))
        # The data engine's users.xml holds only `default`: access entities live in the access
        # engine, which restarts on every change without disturbing the data.
        with open(os.path.join(root, "ch-config.xml"), "w") as f:
            f.write(CONFIG)
        with open(os.path.join(root, "users.xml"), "w") as f:
            f.write(users_xml({"users": {}, "roles": {}}))
        self.access_lock = threading.Lock()
        self.access_root = os.path.join(root, "access")
        os.makedirs(self.access_root, exist_ok=True)
        self.write_users()
        self.access_engine = AccessEngine(self.access_root)
        self.connect()
        self.loaded, self.dirty = json.loads(json.dumps(self.model)), False
        names = self.run("SELECT number, errorCodeToName(number) FROM numbers(2000) "
                         "WHERE errorCodeToName(number) != ''", "TSV").decode()
        self.code_of = {name: int(code) for code, name in (line.split("\t") for line in names.splitlines())}
        self.status = {self.code_of[n]: s for s, ns in STATUS_BY_NAME.items() for n in ns if n in self.code_of}

    def connect(self):
        url = f"file:{self.data}?config-file={os.path.join(self.root, 'ch-config.xml')}"
        self.conn = chdb.connect(url)
        # Another session on the same engine; 2 = no writes, settings may still change.
        self.read_only = chdb.connect(url)
        self.read_only.query("SET readonly = 2")

    def close(self):
        self.read_only.close()
        self.conn.close()

    def write_users(self):
        """EMULATION: the model as the access engine's users.xml, and access.json."""
        tmp = os.path.join(self.access_root, "users.xml.tmp")
        with open(tmp, "w") as f:
            f.write(users_xml(self.model))
        os.replace(tmp, os.path.join(self.access_root, "users.xml"))
        tmp = self.access + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.model, f)
        os.replace(tmp, self.access)

    def access_statement(self, text, conn):
        """EMULATION of the RBAC statements (see the module docstring): the real parser judges and
        canonicalises the statement, the front applies it to a copy of its model, and the engine
        restarts on the new users.xml (the old one comes back if the engine refuses it)."""
        if conn is self.read_only:
            raise self.error("READONLY", "default: Cannot execute query in readonly mode")
        ok = self.run("SELECT formatQuerySingleLineOrNull({q:String}) AS f", "JSONEachRow", {"q": text})
        canonical = json.loads(ok)["f"]
        if canonical is None:
            self.run("SELECT formatQuerySingleLine({q:String})", "TSV", {"q": text})  # raises the parser's error
        model = json.loads(json.dumps(self.model))
        if canonical.startswith(("GRANT ", "REVOKE ")):
            self.grant(canonical, model)
        elif canonical.startswith("CREATE ROLE "):
            self.create_role(canonical, model)
        elif canonical.startswith("DROP "):
            self.drop(canonical, model)
        elif canonical.startswith("ALTER ROLE "):
            raise self.unsupported("ALTER ROLE")
        else:
            self.user(canonical, model)
        with self.access_lock:
            self.model = model
            self.write_users()
            self.dirty = True
        return b""

    def read_access(self, sql, fmt, params):
        """EMULATION: a query that reads access entities (system.users/roles/grants/role_grants,
        SHOW GRANTS ...) runs on the access engine, restarted first if the model changed; so the
        statements of one apply cost one restart. If the engine refuses the new users.xml, the
        model goes back to what it last loaded, and this query fails."""
        with self.access_lock:
            if self.dirty:
                self.dirty = False
                try:
                    self.access_engine.call({"reload": True})
                    self.loaded = json.loads(json.dumps(self.model))
                except QueryError:
                    self.model = self.loaded
                    self.write_users()
                    self.access_engine.call({"reload": True})
                    raise self.error("BAD_ARGUMENTS", "the emulation could not load the latest users, roles and "
                                     "grants (the engine's reason is on the front's stderr); they are undone") from None
            return self.access_engine.call({"sql": with_storage_views(sql), "fmt": fmt, "params": params})

    def unsupported(self, what):
        return self.error("NOT_IMPLEMENTED", f"the emulation does not take {what}")

    def manageable(self, name, what):
        if not XML_NAME.match(name) or name == "default":
            raise self.error("NOT_IMPLEMENTED", f"the emulation cannot manage {what} {name!r} (users.xml names)")

    def user(self, canonical, model):
        users = model["users"]
        m = CREATE_OR_ALTER.match(canonical)
        if not m:
            raise self.unsupported("this form of CREATE/ALTER USER: only IDENTIFIED WITH sha256_hash BY '...' "
                                   "SALT '...' (or none), ADD IDENTIFIED ... and RESET AUTHENTICATION METHODS TO NEW")
        name = unquote(m["name"])
        self.manageable(name, "user")
        exists = name in users
        if m["verb"] == "CREATE" and exists:
            if m["if"]:
                return
            raise self.error("ACCESS_ENTITY_ALREADY_EXISTS",
                             f"user `{name}`: cannot insert because user `{name}` already exists in local_directory")
        if m["verb"] == "ALTER" and not exists:
            if m["if"]:
                return
            raise self.error("UNKNOWN_USER", f"There is no user `{name}` in user directories")
        if m["verb"] == "CREATE":
            if m["add"] or m["reset"]:
                raise self.unsupported("ADD IDENTIFIED or RESET in CREATE USER")
            users[name] = entity()
        method = [m["hash"].lower(), m["salt"]] if m["hash"] else None
        e = users[name]
        if m["add"]:
            e["auth"].append(method)
        elif m["reset"]:
            e["auth"] = e["auth"][-1:]
        elif method:
            e["auth"] = [method]

    def create_role(self, canonical, model):
        m = CREATE_ROLE.match(canonical)
        names = m and names_of(m["names"])
        if not names:
            raise self.unsupported("this form of CREATE ROLE: only names, IF NOT EXISTS and OR REPLACE")
        for name in names:
            self.manageable(name, "role")
            if name in model["roles"] and not m["if"]:
                raise self.error("ACCESS_ENTITY_ALREADY_EXISTS",
                                 f"role `{name}`: cannot insert because role `{name}` already exists in local_directory")
            if name not in model["roles"] or m["if"] == "OR REPLACE ":
                model["roles"][name] = entity()

    def drop(self, canonical, model):
        m = DROP.match(canonical)
        names = m and names_of(m["names"])
        if not names:
            raise self.unsupported("this form of DROP USER / DROP ROLE")
        kind = m["what"].lower()
        table = model["users" if kind == "user" else "roles"]
        for name in names:
            if name == "default":
                raise self.unsupported("dropping user `default`")
            if name not in table and not m["if"]:
                code = "UNKNOWN_USER" if kind == "user" else "UNKNOWN_ROLE"
                raise self.error(code, f"There is no {kind} `{name}` in user directories")
            table.pop(name, None)
            if kind == "role":  # a dropped role leaves every grantee
                for e in list(model["users"].values()) + list(model["roles"].values()):
                    e["roles"].pop(name, None)

    def grant(self, canonical, model):
        """GRANT / REVOKE of privileges (appended to each grantee's log, replayed in order by the
        engine) or of roles (kept as a set with the admin option)."""
        m = GRANT_OR_REVOKE.match(canonical)
        verb, option, rest = m["verb"], (m["option"] or "").strip(), m["rest"]
        flags = []
        for flag in (" WITH REPLACE OPTION", " WITH GRANT OPTION", " WITH ADMIN OPTION"):
            if rest.endswith(flag) and verb == "GRANT":
                rest = rest[:-len(flag)]
                flags.append(flag.strip())
        cut = top_level(rest, " TO " if verb == "GRANT" else " FROM ")
        grantees = names_of(rest[cut[-1] + (4 if verb == "GRANT" else 6):]) if cut else None
        if not grantees:
            raise self.unsupported("grantees other than a list of names (ALL, EXCEPT, CURRENT_USER)")
        what = rest[:cut[-1]]
        on = top_level(what, " ON ")
        targets = []
        for g in grantees:
            e = model["users"].get(g) or model["roles"].get(g)
            if e is None:
                raise self.error("UNKNOWN_USER", f"There is no user or role `{g}` in user directories")
            targets.append(e)
        replace = "WITH REPLACE OPTION" in flags
        if on:  # privileges
            privileges, obj = what[:on[-1]], what[on[-1] + 4:]
            if not re.match(r"(\*|`(?:[^`\\]|\\.)*`|[A-Za-z_][A-Za-z0-9_]*)\.", obj):
                raise self.unsupported("an object without a database (write db.table)")
            if verb == "GRANT":
                line = f"GRANT {privileges} ON {obj}" + (" WITH GRANT OPTION" if "WITH GRANT OPTION" in flags else "")
            else:
                line = "REVOKE " + (f"{option} " if option else "") + f"{privileges} ON {obj}"
            for e in targets:
                if replace:
                    e["log"] = []
                e["log"].append(line)
            return
        roles = names_of(what)
        if not roles:
            raise self.unsupported("this list of roles")
        for r in roles:
            if r not in model["roles"]:
                raise self.error("UNKNOWN_ROLE", f"There is no role `{r}` in user directories")
        for e in targets:
            if replace:
                e["roles"] = {}
            for r in roles:
                if verb == "GRANT":
                    e["roles"][r] = e["roles"].get(r, False) or "WITH ADMIN OPTION" in flags
                elif option == "ADMIN OPTION FOR":
                    if r in e["roles"]:
                        e["roles"][r] = False
                else:
                    e["roles"].pop(r, None)

    def check(self, user, password):
        """EMULATION of authentication: sha256(password + salt) against each of the user's methods."""
        if user == "default":
            return password == ""
        e = self.model["users"].get(user)
        if e is None:
            return False
        if not e["auth"]:
            return password == ""
        return any(hmac.compare_digest(hashlib.sha256((password + salt).encode()).hexdigest(), digest)
                   for digest, salt in e["auth"])

    def run(self, sql, fmt, params=None, conn=None):
        try:
            return (conn or self.conn).query(sql, fmt, params=params).bytes() or b""
        except Exception as e:  # chdb raises its own error type with the server's message
            text = str(e)
            m = re.match(r"Code: (\d+)\. ", text)
            if not m:
                raise QueryError(1001, f"Code: 1001. DB::Exception: {text}") from None
            raise QueryError(int(m.group(1)), text) from None

    def http_status(self, code):
        return self.status.get(code, 500)

    def error(self, name, message):
        code = self.code_of[name]
        return QueryError(code, f"Code: {code}. DB::Exception: {message}. ({name})")

    def query(self, sql, fmt, database, settings, params):
        readonly = settings.pop("readonly", "0") not in ("", "0")
        text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else sql
        if READS_ACCESS.search(text) and READ_ONLY_QUERY.match(text):
            with self.lock:
                self.refuse_multi_statement(sql)
            return self.read_access(text, fmt, params)
        with self.lock:
            conn = self.read_only if readonly else self.conn
            self.run(f"USE {quote_ident(database)}", "TSV", conn=conn)
            applied = []
            try:
                for name, value in settings.items():
                    if not SETTING_NAME.match(name):
                        raise self.error("UNKNOWN_SETTING", f"Unknown setting '{name}'")
                    self.run(f"SET {name} = {quote_string(value)}", "TSV", conn=conn)
                    applied.append(name)
                self.refuse_multi_statement(sql)
                if ACCESS_STATEMENT.match(text):
                    return self.access_statement(text, conn)
                return self.run(sql, fmt, params, conn=conn)
            finally:
                conn = self.read_only if readonly else self.conn
                for name in applied:
                    self.run(f"SET {name} = DEFAULT", "TSV", conn=conn)

    def refuse_multi_statement(self, sql):
        """EMULATION: the HTTP interface runs one statement; chdb would run every one it is given.
        Only a query holding ';' is asked about, and the real parser decides."""
        text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else sql
        if ";" not in text or re.match(r"\s*insert\b", text, re.I):
            return
        ok = self.run("SELECT formatQuerySingleLineOrNull({q:String}) IS NOT NULL", "TSV", {"q": text})
        if ok.strip() != b"1":
            self.run("SELECT formatQuerySingleLine({q:String})", "TSV", {"q": text})  # raises the parser's error


def quote_ident(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unblock(data):
    """ClickHouse compressed-block framing (decompress=1): 16-byte checksum, method byte, u32
    compressed size including the 9-byte header, u32 raw size, payload."""
    out, i = bytearray(), 0
    while i < len(data):
        method = data[i + 16]
        csize, rsize = struct.unpack_from("<II", data, i + 17)
        payload = data[i + 25:i + 16 + csize]
        if method == 0x02:
            out += payload
        elif method == 0x82 and lz4 is not None:
            out += lz4.block.decompress(payload, uncompressed_size=rsize)
        else:
            raise ValueError(f"unsupported compression method 0x{method:02x}")
        i += 16 + csize
    return bytes(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in separate segments stall 40 ms on delayed ACKs
    engine = None

    def log_message(self, *args):  # queries may carry secret material: nothing is logged
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def fail(self, err, query_id):
        body = err.args[0].encode() + b"\n"
        self.reply(self.engine.http_status(err.code), body,
                   [("Content-Type", "text/plain; charset=UTF-8"),
                    ("X-ClickHouse-Exception-Code", str(err.code)), ("X-ClickHouse-Query-Id", query_id)])

    def do_GET(self):
        self.serve(b"")

    def do_POST(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = bytearray()
            while (n := int(self.rfile.readline().split(b";")[0], 16)):
                body += self.rfile.read(n)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        decode = {"gzip": gzip.decompress, "deflate": zlib.decompress, "": bytes}
        if lz4 is not None:
            decode["lz4"] = lz4.frame.decompress
        enc = (self.headers.get("Content-Encoding") or "").lower()
        if enc not in decode:
            return self.reply(415, f"Unsupported Content-Encoding: {enc}\n".encode())
        self.serve(decode[enc](bytes(body)))

    def credentials(self, params):
        """X-ClickHouse-User/Key headers, then Basic auth, then user/password parameters."""
        user, key = self.headers.get("X-ClickHouse-User"), self.headers.get("X-ClickHouse-Key")
        auth = self.headers.get("Authorization") or ""
        if user is None and auth.lower().startswith("basic "):
            user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        if user is None:
            user, key = params.get("user"), params.get("password")
        return user or "default", key or ""

    def serve(self, body):
        url = urlsplit(self.path)
        if url.path == "/ping" or (url.path == "/" and not url.query and not body and self.command == "GET"):
            return self.reply(200, b"Ok.\n")
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        ctype = self.headers.get("Content-Type") or ""
        if ctype.startswith("multipart/form-data") and body:  # the `clickhouse` crate's form fields
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
            for part in msg.iter_parts():
                params[part.get_param("name", header="content-disposition")] = part.get_payload(decode=True).decode()
            body = b""
        user, key = self.credentials(params)
        if not self.engine.check(user, key):
            return self.fail(self.engine.error(
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name"), query_id)
        try:
            if params.get("decompress") == "1" and body:
                body = unblock(body)
        except ValueError as e:
            return self.fail(self.engine.error("CANNOT_DECOMPRESS", str(e)), query_id)
        query = params.get("query", "").encode()
        sql = query + b"\n" + body if query and body else query or body
        fmt = params.get("default_format") or "TabSeparated"
        qparams = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if k not in HTTP_PARAMS and not k.startswith("param_")}
        started = time.monotonic()
        try:
            if not sql.strip():
                raise self.engine.error("SYNTAX_ERROR", "Empty query")
            # chdb takes bytes (binary INSERT data) unless there are parameters to substitute.
            out = self.engine.query(sql.decode() if qparams else sql, fmt, params.get("database") or "default",
                                    settings, qparams or None)
        except QueryError as e:
            return self.fail(e, query_id)
        summary = {"elapsed_ns": str(int((time.monotonic() - started) * 1e9))}
        self.reply(200, out, [("Content-Type", "text/plain; charset=UTF-8"), ("X-ClickHouse-Format", fmt),
                              ("X-ClickHouse-Query-Id", query_id), ("X-ClickHouse-Timezone", "UTC"),
                              ("X-ClickHouse-Server-Display-Name", "aspects-stack-chdb"),
                              ("X-ClickHouse-Summary", json.dumps(summary))])


def main():
    if sys.argv[1:2] == ["--access-engine"]:
        return access_engine_main(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--pid-file", required=True)
    args = ap.parse_args()
    os.makedirs(args.data, exist_ok=True)
    # clickhouse-local reads ./config.xml from the working directory: run from the data dir.
    os.chdir(args.data)
    Handler.engine = Engine(args.data)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    # The pid file appears only once the port is bound: `stack up` waits for both.
    tmp = args.pid_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, args.pid_file)
    try:
        server.serve_forever()
    finally:
        with Handler.engine.lock:
            Handler.engine.close()
            Handler.engine.access_engine.close()
        try:
            os.remove(args.pid_file)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    sys.exit(main())

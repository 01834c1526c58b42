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
  - SQL users: chdb has no writable access storage (CREATE USER fails whatever the configuration).
    The front keeps the users in data/access.json and takes CREATE / ALTER / DROP USER itself,
    after the real parser accepted and canonicalised the statement (formatQuerySingleLine): only
    the forms `IDENTIFIED WITH sha256_hash BY '...' SALT '...'` or no authentication, names that
    are XML element names. It writes them to a users.xml and restarts the engine on it, so
    `system.users` and `SHOW CREATE USER` come from the real engine (storage `users_xml`; the
    restart empties Memory tables). Users have no privileges (`<grants/>`), and chdb enforces none
    anyway: every query still runs as `default`;
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
import sys
import threading
import time
import uuid
import zlib
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
CREATE_OR_ALTER = re.compile(
    r"^(?P<verb>CREATE|ALTER) USER (?P<if>IF NOT EXISTS |IF EXISTS )?" + NAME + r"(?: ON CLUSTER \S+)?"
    r"(?: IDENTIFIED WITH sha256_hash BY '(?P<hash>[0-9A-Fa-f]{64})' SALT '(?P<salt>[0-9A-Za-z]*)')?$")
DROP = re.compile(r"^DROP USER (?P<if>IF EXISTS )?(?P<names>.+?)(?: ON CLUSTER \S+)?$")


def unquote(name):
    return re.sub(r"\\(.)", r"\1", name[1:-1]) if name.startswith("`") else name


class Engine:
    """The one chdb engine (a read-write and a read-only session), serialised behind a lock."""

    def __init__(self, root):
        self.lock = threading.Lock()
        self.root = root
        self.data = os.path.join(root, "engine")
        self.access = os.path.join(root, "access.json")
        self.users = {"default": None}  # EMULATION: name -> None (no password) or [sha256 hex, salt]
        if os.path.exists(self.access):
            with open(self.access) as f:
                self.users.update(json.load(f))
        with open(os.path.join(root, "ch-config.xml"), "w") as f:
            f.write(CONFIG)
        self.write_users()
        self.connect()
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
        """EMULATION: the user list as a users.xml the engine loads (default keeps full rights)."""
        out = ["<clickhouse>", "<profiles><default/></profiles>", "<users>",
               "<default><password></password><access_management>1</access_management></default>"]
        for name, auth in sorted(self.users.items()):
            if name == "default":
                continue
            cred = "<no_password/>" if auth is None else f"<password_sha256_hex>{auth[0]}</password_sha256_hex>"
            out.append(f"<{name}>{cred}<grants/></{name}>")
        out += ["</users>", "</clickhouse>", ""]
        tmp = os.path.join(self.root, "users.xml.tmp")
        with open(tmp, "w") as f:
            f.write("\n".join(out))
        os.replace(tmp, os.path.join(self.root, "users.xml"))
        tmp = self.access + ".tmp"
        with open(tmp, "w") as f:
            json.dump({k: v for k, v in self.users.items() if k != "default"}, f)
        os.replace(tmp, self.access)

    def user_statement(self, text, conn):
        """EMULATION of CREATE / ALTER / DROP USER (see the module docstring)."""
        if conn is self.read_only:
            raise self.error("READONLY", "default: Cannot execute query in readonly mode")
        ok = self.run("SELECT formatQuerySingleLineOrNull({q:String}) AS f", "JSONEachRow", {"q": text})
        canonical = json.loads(ok)["f"]
        if canonical is None:
            self.run("SELECT formatQuerySingleLine({q:String})", "TSV", {"q": text})  # raises the parser's error
        changed = dict(self.users)
        if m := CREATE_OR_ALTER.match(canonical):
            name = unquote(m["name"])
            if not XML_NAME.match(name) or name == "default":
                raise self.error("NOT_IMPLEMENTED", f"the emulation cannot manage user {name!r} (users.xml)")
            exists = name in changed
            if m["verb"] == "CREATE" and exists:
                if m["if"]:
                    return b""
                raise self.error("ACCESS_ENTITY_ALREADY_EXISTS", f"user `{name}`: cannot insert because user `{name}` already exists in users_xml")
            if m["verb"] == "ALTER" and not exists:
                if m["if"]:
                    return b""
                raise self.error("UNKNOWN_USER", f"There is no user `{name}` in users_xml")
            if m["verb"] == "CREATE" or m["hash"]:
                changed[name] = [m["hash"].lower(), m["salt"]] if m["hash"] else None
        elif m := DROP.match(canonical):
            names = [unquote(n.strip()) for n in m["names"].split(", ")]
            for name in names:
                if name == "default":
                    raise self.error("NOT_IMPLEMENTED", "the emulation keeps user `default`")
                if name not in changed and not m["if"]:
                    raise self.error("UNKNOWN_USER", f"There is no user `{name}` in users_xml")
                changed.pop(name, None)
        else:
            raise self.error("NOT_IMPLEMENTED", "the emulation takes only CREATE/ALTER USER ... IDENTIFIED WITH "
                             "sha256_hash BY '...' SALT '...' (or without IDENTIFIED) and DROP USER")
        previous, self.users = self.users, changed
        self.write_users()
        self.close()
        try:
            self.connect()
        except Exception:
            self.users = previous
            self.write_users()
            self.connect()
            raise
        return b""

    def check(self, user, password):
        """EMULATION of authentication: sha256(password + salt) against the stored hash."""
        if user not in self.users:
            return False
        stored = self.users[user]
        if stored is None:
            return password == ""
        digest, salt = stored
        return hmac.compare_digest(hashlib.sha256((password + salt).encode()).hexdigest(), digest)

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
        with self.lock:
            # Looked up under the lock: a user statement reopens the sessions.
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
                text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else sql
                if re.match(r"\s*(CREATE|ALTER|DROP)\s+USER\b", text, re.I):
                    return self.user_statement(text, conn)
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
        try:
            os.remove(args.pid_file)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    sys.exit(main())

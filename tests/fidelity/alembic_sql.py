"""The SQL tutor-contrib-aspects' Alembic migrations run, in revision order, as JSON on stdout.

Usage: python3 alembic_sql.py VERSIONS_DIR < config.json

VERSIONS_DIR is `tutoraspects/templates/aspects/apps/aspects/migrations/alembic/versions` of the
released wheel (never copied into this repository). Each file is a Jinja template that Tutor
renders before Alembic imports it; the migrations use only plain `{{ NAME }}` substitutions, so
they are rendered here by substitution from config.json (Tutor's config keys), and anything else
(a filter, a `{% %}` block, an unknown key) is refused rather than guessed. The rendered module is
then executed with a stand-in for `alembic.op` that records what `op.execute` receives, and
`upgrade()` is called: the statements are exactly the strings the real migration passes to
Alembic. Output: [{"revision": "0001", "sql": "..."}, ...], following the down_revision chain.

Standard library only, so any python3 runs it.
"""

import json
import os
import re
import sys
import types

PLAIN = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")
OTHER = re.compile(r"{%|{#|{{")


def render(text, config, name):
    def sub(match):
        key = match.group(1)
        if key not in config:
            sys.exit(f"{name}: no value for the Tutor config key {key}")
        return str(config[key])

    out = PLAIN.sub(sub, text)
    leftover = OTHER.search(out)
    if leftover:
        start = max(leftover.start() - 40, 0)
        sys.exit(f"{name}: template syntax this harness does not render: {out[start:leftover.end() + 40]!r}")
    return out


def stub_modules(recorded):
    op = types.SimpleNamespace(execute=lambda sql, *a, **k: recorded.append(str(sql)))
    alembic = types.ModuleType("alembic")
    alembic.op = op
    sys.modules["alembic"] = alembic
    # Imported by some migrations, never used by their upgrade().
    for name in ("sqlalchemy", "clickhouse_sqlalchemy"):
        sys.modules[name] = types.ModuleType(name)


def main():
    versions = sys.argv[1]
    config = json.load(sys.stdin)
    modules = {}
    for file in sorted(os.listdir(versions)):
        if not re.match(r"^\d{4}_.*\.py$", file):
            continue
        text = render(open(os.path.join(versions, file), encoding="utf-8").read(), config, file)
        recorded = []
        stub_modules(recorded)
        module = {"__name__": file[:-3]}
        exec(compile(text, file, "exec"), module)
        modules[module["revision"]] = (module, recorded)
    # Revision order: from the root (down_revision None) along the chain.
    children = {m["down_revision"]: rev for rev, (m, _) in modules.items()}
    if len(children) != len(modules):
        sys.exit("the migrations do not form one chain")
    out = []
    rev = children.get(None)
    while rev is not None:
        module, recorded = modules[rev]
        recorded.clear()
        module["upgrade"]()
        out.extend({"revision": rev, "sql": sql} for sql in recorded)
        rev = children.get(rev)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()

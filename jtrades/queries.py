"""Named SQL queries loaded once from ``sql/queries/*.sql``.

Each query sits under a header ``-- name: family.what($1 user_id, $2 name)``; the parameter list
in the header documents asyncpg's positional ``$n`` arguments. No SQL strings live in Python
outside the store modules that use these names.
"""

from __future__ import annotations

import re
from functools import cache

from jtrades.errors import ConfigError
from jtrades.migrations import sql_dir

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_.]*)", re.MULTILINE)


@cache
def queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        parts = _HEADER.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise ConfigError(f"query {name!r} is defined twice ({path.name})")
            sql = "\n".join(line for line in body.splitlines()[1:]).strip().rstrip(";")
            if not sql:
                raise ConfigError(f"query {name!r} in {path.name} is empty")
            found[name] = sql
    return found


def q(name: str) -> str:
    """The SQL of a named query; an unknown name is a programming error, caught by tests."""
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in sql/queries/") from None

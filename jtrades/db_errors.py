"""A database driver's error told in one line, without secrets.

Its own module because the connection layer (``jtrades.db``), the migrations
(``jtrades.migrations``) and the embedded server (``jtrades.embedded_db``) all describe driver
errors the same way, and ``jtrades.db`` imports the other two.
"""

from __future__ import annotations

import re

from jtrades.config_values import redact_url
from jtrades.logging import scrub

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def describe_error(exc: BaseException) -> str:
    """A driver error as one line without secrets: URLs in it redacted, known secrets cut."""
    text = str(exc) or type(exc).__name__
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return " ".join(scrub(text).splitlines())

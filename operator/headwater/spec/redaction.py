"""Credentials taken out of text before it is logged: passwords in URLs and in connection strings.

Whatever may carry a URL (a setting, the text of an exception from a client library) goes through
:func:`redact` before it reaches a log line.  It masks the forms libraries quote back, malformed ones
included (``postgres//user:password@host``, its ``:`` missing), and would rather mask too much than
too little: in any word with an ``@``, what lies between the first ``:`` and the last ``@`` is masked.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact"]

MASK = "***"

_WORD = re.compile(r"""[^\s'"]*@[^\s'"]*""")
# password=... in a libpq connection string (quoted or not), and secret-looking query parameters.
_KEY_VALUE = re.compile(
    r"""(?P<key>\b(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?token|sig|signature)\s*=\s*)"""
    r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&;,'")]+)""",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    word = match[0]
    at = word.rindex("@")
    start = word.find("//")
    start = 0 if start < 0 or start > at else start + 2
    colon = word.find(":", start, at)
    return word if colon < 0 else f"{word[:colon + 1]}{MASK}{word[at:]}"


def redact(text: object) -> str:
    """``text`` (as ``str()`` shows it) with every password and token-like value in it masked."""
    out = _WORD.sub(_mask_userinfo, str(text))
    return _KEY_VALUE.sub(lambda m: m["key"] + MASK, out)

"""Secrets out of everything mdap prints or stores: one redaction used by errors, logs, reports and run files.

:func:`redact` hides, in any text:

- the userinfo of a URL: ``http://user:KEY@host/v1`` -> ``http://***@host/v1`` (a user name alone is often a
  token, so the whole userinfo goes);
- secret parameters: ``password=``, ``api_key=``, ``token=``, ``key=``, ``secret=``, ``access_token=`` and their
  kin, in a URL query or anywhere else (``?password=s3cret`` -> ``?password=***``), and the same names as JSON
  or Python mapping keys (``"api_key": "sk-..."``);
- command-line flags of those names: ``--api-key abc`` -> ``--api-key ***``;
- auth headers: ``Authorization: Bearer abc`` -> ``Authorization: Bearer ***``, a bare ``Bearer abc``,
  ``X-API-Key: abc``; and OpenAI-style ``sk-...`` keys.

:func:`redact_data` does the same inside JSON-able data (strings anywhere in it; the value of a secret-named
key entirely). Both are idempotent. A leaf module: it imports nothing of mdap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["MASK", "is_secret_name", "redact", "redact_data", "redacting_logs"]

MASK = "***"

# Secret names: these also with any prefix (openai_api_key, x-auth-token, db_password) ...
_STRONG = (
    r"pass(?:word|wd|phrase)?|pwd|api[_-]?key|apikey|access[_-]?key|secret(?:[_-]?key)?|client[_-]?secret"
    r"|(?:access|refresh|auth|id|session|bearer)[_-]?token|token|credentials?"
)
# ... these only as the whole name (sort_key=, step_key= are not secrets).
_WEAK = r"key|auth|sig|signature"
_NAMES = rf"(?:[\w-]*[_-])?(?:{_STRONG})|(?:{_WEAK})"
_SECRET_NAME = re.compile(rf"^(?:{_NAMES}|(?:proxy-)?authorization)$", re.IGNORECASE)

# scheme://userinfo@ -- the userinfo may hold ':' and (unencoded) '@'; it ends at the last '@' of the authority.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^/\s?#'\"<>\\]*)@")
# name=value, in a query string, a command line or a message (the name is checked by is_secret_name).
_PARAM = re.compile(
    r"(?<![\w-])(?P<dash>-{0,2})(?P<name>[A-Za-z_][\w-]*)=(?P<open>\[?[\"']?)(?P<value>[^&\s'\"#;,)\]}]+)"
)
# --api-key VALUE on a command line.
_FLAG = re.compile(r"(?<![\w-])--(?P<name>[A-Za-z][\w-]*)(?P<sep>\s+[\"']?)(?P<value>[^\s'\",-][^\s'\",]*)")
# "api_key": "value" / 'password': ['value'] (JSON, Python reprs) -- a quoted value only.
_KEYED = re.compile(r"(?P<q>[\"'])(?P<name>[\w-]+)(?P=q)(?P<sep>\s*:\s*\[?\s*)(?P<v>[\"'])(?P<value>[^\"']+)(?P=v)")
_AUTH_HEADER = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest)\s+)?)"
    r"(?P<value>[^\s\"',;]+)",
    re.IGNORECASE,
)
_API_KEY_HEADER = re.compile(
    r"(?P<head>\bx-(?:api-key|auth-token)\b[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;]+)", re.IGNORECASE
)
_BEARER = re.compile(r"(?P<head>\bbearer\s+)(?P<value>[A-Za-z0-9\-._~+/]{4,}=*)", re.IGNORECASE)
# Every secret name holds one of these.
_NAME_HINTS = ("pass", "pwd", "key", "token", "secret", "credential", "auth", "sig")
_SK_KEY = re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{16,}")


def is_secret_name(name: str) -> bool:
    """Whether a field, parameter or header called ``name`` holds a secret (``api_key``, ``password``, ...)."""
    return bool(_SECRET_NAME.match(name))


def _param(m: re.Match[str]) -> str:
    return f"{m['dash']}{m['name']}={m['open']}{MASK}" if is_secret_name(m["name"]) else m[0]


def _flag(m: re.Match[str]) -> str:
    return f"--{m['name']}{m['sep']}{MASK}" if is_secret_name(m["name"]) else m[0]


def _keyed(m: re.Match[str]) -> str:
    if not is_secret_name(m["name"]):
        return m[0]
    return f"{m['q']}{m['name']}{m['q']}{m['sep']}{m['v']}{MASK}{m['v']}"


def _masked(m: re.Match[str]) -> str:
    return m["head"] + MASK


def redact(text: str) -> str:
    """``text`` with every credential it shows replaced by ``***`` (see the module docstring)."""
    if not text:
        return text
    low = text.lower()  # each pattern runs only when its marker is in the text: most text has none
    if "@" in text and "://" in text:
        text = _USERINFO.sub(lambda m: m["scheme"] + MASK + "@", text)
    if any(hint in low for hint in _NAME_HINTS):  # a secret-named parameter, flag or key may be there
        if "=" in text:
            text = _PARAM.sub(_param, text)
        if "--" in text:
            text = _FLAG.sub(_flag, text)
        if ":" in text and ("'" in text or '"' in text):
            text = _KEYED.sub(_keyed, text)
    if "authorization" in low:
        text = _AUTH_HEADER.sub(_masked, text)
    if "x-api-key" in low or "x-auth-token" in low:
        text = _API_KEY_HEADER.sub(_masked, text)
    if "bearer" in low:
        text = _BEARER.sub(lambda m: m[0] if m["value"] == MASK else m["head"] + MASK, text)
    if "sk-" in text:
        text = _SK_KEY.sub("sk-" + MASK, text)
    return text


def redact_data(data: Any) -> Any:
    """A copy of JSON-able ``data`` with every string redacted and the value of every secret-named key masked."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        out: dict[Any, Any] = {}
        for k, v in data.items():
            if isinstance(k, str) and is_secret_name(k) and isinstance(v, str) and v:
                out[k] = MASK
            else:
                out[k] = redact_data(v)
        return out
    if isinstance(data, list):
        return [redact_data(v) for v in data]
    if isinstance(data, tuple):
        return tuple(redact_data(v) for v in data)
    return data


@contextmanager
def redacting_logs() -> Iterator[None]:
    """While inside, every log record is redacted, whichever handler writes it (those added inside too).

    It swaps the log record factory: each record's message is formatted and redacted when it is made (only
    records of enabled levels are made), and so is its traceback text.
    """
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for the handler to report
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)

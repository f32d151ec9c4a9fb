"""Keeps secrets out of logs, job errors and Flower's pages: configured secret values, signature-bearing
URL parts and the values of credential-like names (`*_KEY`, `*SECRET*`, `*TOKEN*`, `*PASSWORD*`) are
masked, in text and in nested records (a job error's `console_tail` is a list of lines)."""
from __future__ import annotations

import logging
import re
from typing import Any

from config.settings import Settings

MASK = "***"
_PATTERNS = [
    # presigned URL signatures and credentials (SigV4 and SigV2), JWT/bearer tokens
    re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+"),
    re.compile(r"(?i)((?:AWSAccessKeyId|Signature)=)[^&\s\"']+"),
    re.compile(r"(?i)((?:Bearer|JWT|OAuth)\s+)[A-Za-z0-9._~+/=-]+"),
]
# Every `name=value`, `name: value` and `'name': 'value'` (quotes escaped too, as in a repr of a
# repr); the value is masked when the name is a credential's. Possessive and anchored at a name's
# start, so a long line costs linear time.
_QUOTE = r"(?:\\{0,7}[\"'])?"   # bounded: a run of backslashes must not be rescanned from each of them
_NAMED_VALUE = re.compile(rf"(?<![\w.-])({_QUOTE}[\w.-]++{_QUOTE}\s*+[:=]\s*+{_QUOTE})"
                          r"((?:[^\"'&\s,}\\]|\\(?![\\\"']))++)")
_CREDENTIAL_WORDS = ("secret", "token", "password", "passwd")


def is_credential_name(name: str) -> bool:
    """STRIPE_KEY, x-api-key, client_secret, access_token, DB_PASSWORD: `*_KEY`, `*SECRET*`, `*TOKEN*`, `*PASSWORD*`."""
    lowered = name.lower().strip("\\\"' ")
    return lowered.endswith(("_key", "-key")) or any(word in lowered for word in _CREDENTIAL_WORDS)


def secret_values(settings: Settings) -> list[str]:
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value") and value.get_secret_value():
            values.append(value.get_secret_value())
    # basic-auth "user:password", and "app=secret" entries (per-app secrets): mask each secret alone too
    return values + [v.split(":", 1)[1] for v in values if ":" in v] + [
        entry.split("=", 1)[1] for v in values for entry in v.split() if "=" in entry.rstrip("=")]


# A pattern above can match only where one of these words is (any case): most lines (a task
# received, a task succeeded) have none, and skip the patterns, 60-75 µs a line (bench/README.md,
# "Dispatch overhead").
_PATTERN_WORDS = ("x-amz-", "awsaccesskeyid", "signature", "bearer", "jwt", "oauth", "token", "password",
                  "secret", "_key", "-key")


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    lowered = text.lower()
    if any(word in lowered for word in _PATTERN_WORDS):
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        text = _NAMED_VALUE.sub(_mask_credential, text)
    return text


def _mask_credential(match: re.Match) -> str:
    name = match.group(1).rstrip(" :=\"'\\")
    return match.group(1) + MASK if is_credential_name(name) else match.group(0)


def redact_value(value: Any, secrets: list[str]) -> Any:
    """`value` with every text in it redacted, however deep in lists and dicts, and the value of a
    credential-like key masked whole."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: MASK if isinstance(key, str) and is_credential_name(key) and value[key] not in (None, "")
                else redact_value(value[key], secrets) for key in value}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(item, secrets) for item in value)
    return value


def redact_fields(record: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """A record (a job's error) redacted, nested values and credential-like keys included."""
    return redact_value(record, secrets)


class RedactingFormatter(logging.Formatter):
    """Wraps a handler's formatter so the final text (message and traceback) is redacted."""

    def __init__(self, inner: logging.Formatter | None, secrets: list[str]) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record), self.secrets)


def install(logger: logging.Logger, settings: Settings) -> None:
    secrets = secret_values(settings)
    for handler in logger.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter, secrets))

"""Keeps secrets out of logs and job errors: configured secret values and signature-bearing URL parts are masked."""
from __future__ import annotations

import logging
import re
from typing import Any

from config.settings import Settings

MASK = "***"
_PATTERNS = [
    # presigned URL signatures and credentials (SigV4 and SigV2), JWT/bearer tokens, token fields
    re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+"),
    re.compile(r"(?i)((?:AWSAccessKeyId|Signature)=)[^&\s\"']+"),
    re.compile(r"(?i)((?:Bearer|JWT|OAuth)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)([\"']?(?:access_token|token|password|client_secret)[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"),
]


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
                  "client_secret")


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    lowered = text.lower()
    if any(word in lowered for word in _PATTERN_WORDS):
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def redact_fields(record: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """A record (a job's error) with its text fields redacted."""
    return {key: redact(value, secrets) if isinstance(value, str) else value for key, value in record.items()}


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

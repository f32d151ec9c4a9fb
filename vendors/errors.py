"""Typed errors every vendor client raises, so the task layer classifies retries in one place."""
from __future__ import annotations

from typing import Any

GATEWAY_CUT_OFF = frozenset({502, 504})


class VendorError(Exception):
    """A vendor call that did not succeed. `vendor_message` keeps the vendor's own words."""

    def __init__(self, message: str, *, vendor: str = "", status: int | None = None,
                 vendor_message: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.vendor = vendor
        self.status = status
        self.vendor_message = vendor_message
        self.field = field

    @property
    def answered(self) -> bool:
        """The vendor itself answered, so a call that failed took no effect. A gateway's 502 or 504
        answers for a vendor it gave up on, which may still act on the request: a cut-off."""
        return self.status is not None and self.status not in GATEWAY_CUT_OFF

    def to_dict(self) -> dict[str, Any]:
        data = {"type": type(self).__name__, "message": self.message, "vendor": self.vendor}
        for key in ("status", "vendor_message", "field"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    def __reduce__(self):  # keep keyword arguments through pickling (prefork pools)
        return (rebuild_error, (type(self), self.message, self.__dict__))


def rebuild_error(cls, message, state):
    """An exception of `cls` with its message and attributes, as pickling sends it between processes."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AuthError(VendorError):
    """Credentials refused (after one refresh where the vendor allows it). Never retried."""


class InputError(VendorError):
    """The vendor rejected what we sent (HTTP 400 and friends). Never retried."""


class NotFound(VendorError):
    """The thing addressed does not exist at the vendor."""


class PaymentRequired(VendorError):
    """Not enough credits. Never retried."""


class Conflict(VendorError):
    """The vendor's state does not allow the call now (e.g. a workspace over its limit)."""


class TransientError(VendorError):
    """5xx, 429, timeouts, dropped connections: worth another try after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """HTTP 429 or a vendor rate-limit error; `retry_after` is the vendor's own hint when it gave one."""

"""Redis connections that notice a failover.

A server that stopped being the primary answers writes with `READONLY`: a managed service
(ElastiCache, Memorystore, Azure Cache) demotes the old primary and moves its DNS name, and a
client still connected to the old node gets `READONLY` until it connects again. redis-py raises it
as `ReadOnlyError`, but from inside a Lua script it comes as a plain `ResponseError` quoting
`-READONLY`, and a client blocked in BRPOP or XREADGROUP gets `UNBLOCKED ... instance state
changed`. Only redis-py's Sentinel connections drop the connection on `ReadOnlyError`, and none on
the other two (docs/redis.md, "Managed Redis failover").

The connections here drop themselves on any of the three and raise `NotPrimary`, a
`ConnectionError`: every Redis user of the fleet already rides out a lost connection (retrying,
reconnecting), and connecting again reaches whatever the address names now.
"""
from __future__ import annotations

import functools
from typing import Any

import redis
from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection


class NotPrimary(redis.exceptions.ConnectionError):
    """The server answered as a replica (a failover); the connection was dropped, to be made again."""


def is_read_only(exc: BaseException) -> bool:
    """Whether a Redis error says the server is no longer the primary."""
    if isinstance(exc, (redis.exceptions.ReadOnlyError, NotPrimary)):
        return True
    if not isinstance(exc, redis.exceptions.ResponseError):
        return False
    message = str(exc)
    # A command's answer starts with READONLY; a script's error quotes "-READONLY" after the script's name.
    return message.startswith("READONLY") or "-READONLY" in message or \
        (message.startswith("UNBLOCKED") and "instance state changed" in message)


class _DropsWhenNotPrimary:
    """Mixed into a redis-py connection class."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.exceptions.ResponseError as exc:
            if not is_read_only(exc):
                raise
            self.disconnect()
            raise NotPrimary(f"{exc} (the connection is made again)") from exc


@functools.cache
def dropping_when_not_primary(connection_class: type) -> type:
    """`connection_class` (redis-py's, or one built on it) that drops itself on an answer of a replica."""
    if issubclass(connection_class, _DropsWhenNotPrimary):
        return connection_class
    return type(f"FailoverAware{connection_class.__name__}", (_DropsWhenNotPrimary, connection_class), {})


def connection_class_for(url: str) -> type:
    """The failover-aware connection class for a redis://, rediss:// or unix:// URL."""
    scheme = url.split("://", 1)[0]
    base = {"rediss": redis.SSLConnection, "unix": redis.UnixDomainSocketConnection}.get(scheme, redis.Connection)
    return dropping_when_not_primary(base)


def sentinel_connection_class(ssl: bool = False) -> type:
    """The failover-aware class for connections to the master that the sentinels name."""
    return dropping_when_not_primary(SentinelManagedSSLConnection if ssl else SentinelManagedConnection)

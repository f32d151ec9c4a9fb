"""kombu's Redis transport, made to ride out a Redis restart or failover (the `broker_transport` of the fleet).

What kombu 5.7.0 does when a worker loses its broker connection (read in kombu/transport/redis.py,
kombu/transport/virtual/base.py, kombu/connection.py and celery/worker/consumer/consumer.py):

- Celery's `on_connection_error_after_connected` calls `Connection.collect()`, which closes the
  channel. Closing a virtual channel *restores* every message it delivered and that is not acked
  yet (`QoS.restore_unacked_once`), the tasks still running included. With Redis down the restore
  fails after marking the channel's messages restored; with Redis back already it requeues messages
  whose tasks are still running, and the late ack of the first run then deletes the second
  delivery's unacked entry (same delivery tag).
- `collect()` sets the transport's client to None. Anything that later builds a Redis pool for the
  old channel (a second close, the restore, an ack when a task ends) dies in `_connparams` with
  `AttributeError: 'NoneType' object has no attribute 'hostname'`, which Celery reports as an
  unrecoverable error and the worker exits (celery/kombu#582 is the same path through
  `queue_delete`; the restore and the ack go the same way).
- A task that ends after the reconnection acks through the old channel, so its ack fails too, and
  its message stays in Redis's `unacked` hash until the visibility timeout (an hour) puts it back.
  Nothing restores a reconnected worker's messages sooner (celery/celery#1307, closed unfixed;
  kombu#1836 for SIGTERM).

So this transport, for the worker's main process:

- On connection loss (`Transport._collect`) the channels are marked *lost*: closing one restores
  nothing, because the worker still holds those messages: their tasks go on running
  (`worker_cancel_long_running_tasks_on_connection_loss=False`) and ack or requeue them when they end.
- A lost channel keeps its Redis pool, so those acks reach Redis through it (no AttributeError).
- An ack or requeue that Redis cannot take now (it is down) is kept, and settled by the live channel
  as soon as it connects and at each restore sweep (`unacked_restore_interval`).
- At the worker's shutdown, messages a lost channel still holds (ETA retries that never ran) are
  put back on their queues by the live channel, as kombu does for its own channel.
"""
from __future__ import annotations

import logging
import weakref

from celery.signals import worker_shutting_down
from kombu import connection as kombu_connection
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual

from geoqueue.redis_failover import dropping_when_not_primary

log = logging.getLogger("geoqueue.broker")

# delivery tag -> requeue? (False: ack). Acks and rejects that reached no Redis yet, this process.
_unsettled: dict[str, bool] = {}
# QoS of channels lost with their connection, whose messages this process still holds.
_lost: weakref.WeakSet[QoS] = weakref.WeakSet()
_shutting_down = False


@worker_shutting_down.connect
def _on_worker_shutting_down(**_kwargs) -> None:
    global _shutting_down
    _shutting_down = True


class QoS(kombu_redis.QoS):
    def _errors(self) -> tuple[type[BaseException], ...]:
        return self.channel.connection_errors

    def ack(self, delivery_tag):
        try:
            self._remove_from_indices(delivery_tag).execute()
        except self._errors():
            _unsettled[delivery_tag] = False
            log.warning("ack of %s waits for Redis", delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if requeue and self.channel.lost:
            # A closed channel cannot route a message (its exchange table is gone): the live one does.
            _unsettled[delivery_tag] = True
        else:
            try:
                if requeue:
                    self.restore_by_tag(delivery_tag, leftmost=True)
                else:
                    self._remove_from_indices(delivery_tag).execute()
            except self._errors():
                _unsettled[delivery_tag] = requeue
                log.warning("%s of %s waits for Redis", "requeue" if requeue else "ack", delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked_once(self, stderr=None):
        if self.channel.lost:
            # Held, not abandoned: their tasks are running or due, and ack or requeue them.
            return None
        return super().restore_unacked_once(stderr)

    def restore_unacked(self, client=None):
        super().restore_unacked(client)
        if _shutting_down:
            self._restore_lost(client)

    def _restore_lost(self, client=None) -> None:
        """Put back what lost channels still hold when the worker stops (their tasks are over)."""
        self.settle()
        for qos in list(_lost):
            qos._flush()
            tags = list(qos._delivered)
            for tag in tags:
                self.restore_by_tag(tag, client)
            qos._delivered.clear()
            if tags:
                log.info("restored %d message(s) held since a broker connection loss", len(tags))

    def restore_visible(self, start=0, num=10, interval=10):
        self.settle()
        return super().restore_visible(start, num, interval)

    def settle(self) -> None:
        """Apply the acks and requeues that waited for Redis, through this (live) channel."""
        if not _unsettled:
            return
        settled = 0
        with self.channel.conn_or_acquire() as client:
            for tag, requeue in list(_unsettled.items()):
                if requeue:
                    self.restore_by_tag(tag, client, leftmost=True)
                else:
                    self._remove_from_indices(tag, client.pipeline()).execute()
                _unsettled.pop(tag, None)
                settled += 1
        log.info("settled %d ack(s)/requeue(s) that waited for Redis", settled)


class _Lossless:
    """Mixed into kombu's Redis channels: see the module's docstring."""

    QoS = QoS
    lost = False
    _kept_pool = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            self.qos.settle()
        except self.connection_errors:
            log.debug("Redis went away again before settling", exc_info=True)

    def lose(self) -> None:
        self.lost = True
        if self._qos is not None:
            _lost.add(self._qos)

    def _disconnect_pools(self):
        # Keep the (synchronous) pool: a lost channel still acks its messages through it, and it
        # reconnects by itself once Redis is back.
        if self._pool is not None:
            self._kept_pool = self._pool
        super()._disconnect_pools()

    @property
    def pool(self):
        if self._pool is None and self.lost and self._kept_pool is not None:
            return self._kept_pool
        return super().pool

    def close(self):
        if not self.lost:
            return super().close()
        try:
            return super().close()
        except Exception:  # Redis is down: release what is local and go on
            log.debug("closing a lost channel", exc_info=True)
        if self.closed:
            return None
        try:
            if self.connection is not None:
                self.connection.cycle.discard(self)
            self._disconnect_pools()
            self._close_clients()
        finally:
            virtual.Channel.close(self)
        return None


# A server that answers as a replica (a managed failover: READONLY, or UNBLOCKED in BRPOP) counts as
# a lost connection: kombu reconnects, where it would otherwise hand Celery a ResponseError that
# ends the worker (geoqueue/redis_failover.py; docs/redis.md, "Managed Redis failover").
class Channel(_Lossless, kombu_redis.Channel):
    connection_class = dropping_when_not_primary(kombu_redis.Channel.connection_class)
    connection_class_ssl = dropping_when_not_primary(kombu_redis.Channel.connection_class_ssl)


class SentinelChannel(_Lossless, kombu_redis.SentinelChannel):
    connection_class = dropping_when_not_primary(kombu_redis.SentinelChannel.connection_class)
    connection_class_ssl = dropping_when_not_primary(kombu_redis.SentinelChannel.connection_class_ssl)


class _LosslessTransport:
    def _collect(self, connection):
        """kombu's `Connection.collect()` calls this instead of closing normally; Celery's consumer
        calls that when the broker connection is lost."""
        channels = [*self._avail_channels, *self.channels]
        for channel in channels:
            channel.lose()
        for channel in channels:
            try:
                channel.close()
            except Exception:
                log.debug("closing a channel after a connection loss", exc_info=True)
        self._avail_channels.clear()
        self.channels.clear()
        try:
            self.cycle.close()
        except Exception:
            log.debug("closing the poller after a connection loss", exc_info=True)


class Transport(_LosslessTransport, kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(_LosslessTransport, kombu_redis.SentinelTransport):
    Channel = SentinelChannel


# Shown as the URL schemes they serve (`Connection.info()`/`as_uri()`, used in logs and by Flower,
# whose broker view picks its Redis client by that scheme); kombu reads this table for display only.
kombu_connection.resolve_aliases.update({
    f"{__name__}:Transport": "redis",
    f"{__name__}:SentinelTransport": "sentinel",
})

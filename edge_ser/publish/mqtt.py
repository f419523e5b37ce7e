"""Publish results to an MQTT broker (paho-mqtt >= 2), surviving broker outages.

Topics under the prefix (default `edge_ser/<site>`):
  <prefix>/emotion  one JSON result per window (QoS from settings, not retained)
  <prefix>/status   retained `online` / `offline`; `offline` is also the Last Will
  <prefix>/stats    periodic stats JSON (QoS 0, best effort, never queued)

Results go through our own bounded queue instead of paho's: paho drops the *newest* message when its
queue is full and silently loses QoS 0 messages while disconnected, while we must keep the newest,
drop (and count) the oldest, and deliver in order once the broker is back. One sender thread is the
only caller of paho's publish for results, so order is preserved; paho's own network thread
(loop_start) reconnects with exponential backoff.

`published` counts only results the broker is known to have read. QoS 1/2: its PUBACK/PUBCOMP.
QoS 0 has no acknowledgement, and paho calls a QoS 0 message done once it is in the socket buffer,
which a frozen broker (or a dead link, until keepalive notices) never reads. So after QoS 0 results
the sender writes an UNSUBSCRIBE for a topic it never subscribed to (harmless; no ACL grants or
denies it a delivery) as a barrier: the broker answers it with an UNSUBACK only after it has read
every packet before it on the connection. Results up to a barrier count once its UNSUBACK arrives;
results still unconfirmed when the connection drops go back to the front of the queue and are sent
again after the reconnect (so a subscriber may see one twice, as with QoS 1).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from .. import __version__
from ..errors import ConfigError
from ..message import encode
from ..settings import MqttSettings
from . import ha
from .mqtt_client import login_failure, make_client, open_connection, stop_network, topics_for

log = logging.getLogger("edge_ser.mqtt")

MAX_INFLIGHT = 20
"""Results handed to paho but not yet acknowledged; bounds paho's internal queue."""

BARRIER_TOPIC_SUFFIX = "/emotion"
"""QoS 0 barriers unsubscribe from the results topic (never subscribed: nothing changes)."""

CLOSE_BUDGET_S = 1.0
"""close() returns within about this long, flushing what it can first."""



def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays that slipped into a message become plain JSON numbers/lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether paho is done with a message (PUBACK/PUBCOMP received, or a QoS 0 packet written)."""
    # is_published() raises for rc=NO_CONN even after paho resent the message on reconnect and got
    # it acknowledged, so read the flag it wraps.
    return bool(getattr(info, "_published", False))


class MqttPublisher:
    """Publisher (see base.py) that sends results to an MQTT broker.

    The constructor connects (unless connect=False; then call connect()) and raises UserError with one
    line when the broker cannot be reached, refuses the credentials or fails TLS verification: a
    daemon that cannot reach its broker at start is misconfigured. Later outages are transient:
    results queue up (bounded) and reconnects are retried with backoff.
    """

    name = "mqtt"

    def __init__(self, settings: MqttSettings, site: str, *, connect: bool = True,
                 connect_timeout_s: float = 5.0) -> None:
        if not settings.host:
            raise ConfigError("config key mqtt.host must be set to publish over MQTT")
        self.settings = settings
        self.site = site
        self.topics = topics_for(settings, site)
        self._client_id = settings.client_id or f"edge-ser-{site}-{os.getpid()}"
        self._ha_config: tuple[str, str] | None = None
        if settings.ha_discovery:
            topic, config = ha.discovery(settings, site, self.topics.prefix, self.topics.emotion,
                                         self.topics.status, __version__)
            self._ha_config = (topic, json.dumps(config, separators=(",", ":")))

        self._cond = threading.Condition()
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._inflight: list[tuple[tuple[str, bytes], mqtt.MQTTMessageInfo]] = []
        self._connected = False
        self._ever_connected = False
        self._connack = threading.Event()
        self._refused: str | None = None
        self._closed_early = False
        self._resending = False
        self._closing = False
        self._closed = False
        self._close_deadline = 0.0
        self._outage_logged = False
        self._drop_logged_at = 0.0
        self._published = 0
        self._dropped = 0
        self._disconnects = 0
        self._generation = 0
        """Connections lost so far: a result handed to paho under an older generation went nowhere."""
        self._barrier: tuple[int, int] | None = None
        """QoS 0: (mid of the UNSUBSCRIBE in flight, number of leading _inflight results it covers)."""
        self._unsubacked: set[int] = set()
        """mids of UNSUBACKs received (paho may report one before unsubscribe() has returned it)."""
        self._taken: tuple[str, bytes] | None = None
        """The result the sender thread is handing to paho right now (outside the lock)."""

        self._client = self._make_client()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        if connect:
            self.connect(connect_timeout_s)

    # ----------------------------------------------------------------------------------------- setup

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.settings, self._client_id, self.topics.status, MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def connect(self, timeout_s: float = 5.0) -> None:
        """Connect to the broker and start the network and sender threads; UserError if impossible."""
        open_connection(self._client, self.settings)
        self._client.loop_start()
        if not self._connack.wait(timeout_s) or self._refused or self._closed_early:
            self._stop_network()
            raise login_failure(self.settings, self._refused, self._closed_early, timeout_s)
        self._sender.start()

    # ------------------------------------------------------------------------------- paho callbacks
    # They run on paho's network thread, some while paho holds its own locks: keep them short and
    # never call back into paho while holding self._cond.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            if self._ever_connected:
                log.warning("MQTT broker refused the reconnect: %s; retrying", reason)
            self._connack.set()
            return
        client.publish(self.topics.status, "online", qos=1, retain=True)
        if self._ha_config is not None:
            client.publish(self._ha_config[0], self._ha_config[1], qos=1, retain=True)
        with self._cond:
            self._connected = True
            self._ever_connected = True
            waiting = len(self._pending)
            self._cond.notify_all()
        if self._outage_logged:
            log.info("MQTT broker %s:%s is back; delivering %d queued results",
                     self.settings.host, self.settings.port, waiting)
        else:
            log.info("connected to MQTT broker %s:%s as %s", self.settings.host, self.settings.port,
                     self._client_id)
        self._outage_logged = False
        self._refused = None
        self._connack.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._outage_logged and not self._closing:
            self._outage_logged = True
            log.warning("MQTT broker %s:%s unreachable; results are queued (max %d), retrying with backoff",
                        self.settings.host, self.settings.port, self.settings.queue_size)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not self._connack.is_set():  # closed before any CONNACK: fail connect() at once
            self._closed_early = True
            self._connack.set()
        with self._cond:
            was = self._connected
            self._connected = False
            self._resending = True
            self._generation += 1
            if was and not self._closing:
                self._disconnects += 1
            if self.settings.qos == 0:
                self._requeue_unconfirmed_locked()
            self._cond.notify_all()
        if was and not self._closing:
            self._outage_logged = True
            log.warning("lost MQTT broker %s:%s (%s); results are queued (max %d), reconnecting",
                        self.settings.host, self.settings.port, reason, self.settings.queue_size)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._cond:
            self._cond.notify_all()

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with self._cond:
            self._unsubacked.add(mid)
            self._cond.notify_all()

    # ------------------------------------------------------------------------------------- sending

    def _reap_locked(self) -> None:
        """Count acknowledged results; put results paho lost on a dropped connection back in front."""
        if self.settings.qos == 0:
            self._confirm_qos0_locked()
            return
        still, lost = [], []
        for item, info in self._inflight:
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                if _acknowledged(info):
                    self._published += 1
                else:
                    still.append((item, info))
            else:  # e.g. MQTT_ERR_CONN_LOST: a QoS 0 packet that never left
                lost.append(item)
        self._inflight = still
        if lost:
            self._pending.extendleft(reversed(lost))
            self._trim_locked()

    def _confirm_qos0_locked(self) -> None:
        """QoS 0: the results before an acknowledged barrier were read by the broker."""
        if self._barrier is None or self._barrier[0] not in self._unsubacked:
            return
        covered = self._barrier[1]
        self._published += covered
        del self._inflight[:covered]
        self._barrier = None
        self._unsubacked.clear()

    def _requeue_unconfirmed_locked(self) -> None:
        """QoS 0, connection lost: results the broker may never have read are sent again."""
        again = [item for item, _ in self._inflight] + ([self._taken] if self._taken else [])
        if again:
            self._pending.extendleft(reversed(again))
            self._inflight = []
            self._trim_locked()
        self._barrier = None
        self._unsubacked.clear()

    def _trim_locked(self) -> None:
        over = len(self._pending) - self.settings.queue_size
        for _ in range(max(0, over)):
            self._pending.popleft()
            self._dropped += 1
        if over > 0:
            now = time.monotonic()
            if now - self._drop_logged_at > 60:
                self._drop_logged_at = now
                log.warning("MQTT queue full (%d): dropping the oldest results (%d dropped so far)",
                            self.settings.queue_size, self._dropped)

    def _send_loop(self) -> None:
        qos = self.settings.qos
        backoff = False
        while True:
            barrier = 0
            with self._cond:
                while True:
                    self._reap_locked()
                    if self._closing and (not self._connected or time.monotonic() > self._close_deadline
                                          or (not self._pending and not self._inflight)):
                        return
                    if self._resending and not self._inflight:
                        self._resending = False
                    # After a reconnect paho first resends the results it still holds; new ones
                    # wait until those are acknowledged, or they could overtake them.
                    if (self._connected and not backoff and not self._resending and self._pending
                            and len(self._inflight) < MAX_INFLIGHT):
                        item = self._pending.popleft()
                        self._taken = item
                        break
                    if (qos == 0 and self._connected and not backoff and self._inflight
                            and self._barrier is None):
                        barrier = len(self._inflight)
                        break
                    # paho calls on_publish just before it marks the message done: poll briefly
                    # while results are in flight, rarely when idle.
                    self._cond.wait(0.05 if backoff or self._inflight else 1.0)
                    backoff = False
                generation = self._generation
            if barrier:
                backoff = not self._send_barrier(barrier, generation)
                continue
            try:
                info = self._client.publish(item[0], item[1], qos=qos, retain=False)
            except Exception as e:  # a message paho refuses outright: retrying cannot help
                log.warning("MQTT publish refused, result dropped: %s", e)
                with self._cond:
                    self._taken = None
                    self._dropped += 1
                continue
            with self._cond:
                self._taken = None
                if qos == 0 and generation != self._generation:
                    pass  # the connection dropped meanwhile; on_disconnect queued it again, in order
                elif (
                    info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
                    or (qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN)  # paho resends it
                ):
                    self._inflight.append((item, info))
                else:  # not taken (QoS 0 while the connection just dropped): retry it first
                    self._pending.appendleft(item)
                    self._trim_locked()
                    backoff = True

    def _send_barrier(self, covers: int, generation: int) -> bool:
        """Write the QoS 0 barrier after the first `covers` in-flight results; False if not sent."""
        try:
            rc, mid = self._client.unsubscribe(self.topics.prefix + BARRIER_TOPIC_SUFFIX)
        except Exception as e:  # noqa: BLE001 - retried after a short backoff
            log.debug("MQTT barrier not sent: %s", e)
            return False
        with self._cond:
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or generation != self._generation:
                return False  # the connection dropped: on_disconnect requeued the results
            self._barrier = (mid, covers)
            self._cond.notify_all()
        return True

    # ---------------------------------------------------------------------------- Publisher protocol

    def publish(self, message: dict[str, Any]) -> None:
        """Queue one result; returns at once. When the queue is full the oldest result is dropped."""
        try:
            payload = encode(message, separators=(",", ":"), default=_jsonable).encode("utf-8")
        except ValueError as e:  # a non-finite number: not JSON, so it never reaches the broker
            log.error("result not published: %s", e)
            with self._cond:
                self._dropped += 1
            return
        with self._cond:
            if self._closing:
                self._dropped += 1
                return
            self._pending.append((self.topics.emotion, payload))
            self._trim_locked()
            self._cond.notify_all()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        """Send a stats message if connected (QoS 0; stats are periodic, so a lost one is not queued)."""
        if not self._connected or self._closing:
            return
        try:
            payload = encode(stats, separators=(",", ":"), default=_jsonable)
            self._client.publish(self.topics.stats, payload, qos=0, retain=False)
        except Exception as e:
            log.debug("MQTT stats not sent: %s", e)

    def stats(self) -> dict[str, int]:
        """published (read by the broker: acknowledged, or for QoS 0 before an answered barrier),
        queued (waiting or unacknowledged),
        dropped (oldest results thrown away when the queue was full or at close), disconnects."""
        with self._cond:
            self._reap_locked()
            return {
                "published": self._published,
                "queued": len(self._pending) + len(self._inflight),
                "dropped": self._dropped,
                "disconnects": self._disconnects,
            }

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up right now."""
        return self._connected

    def close(self) -> None:
        """Flush briefly, publish retained `offline`, disconnect; returns within about a second."""
        start = time.monotonic()
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            self._close_deadline = start + CLOSE_BUDGET_S * 0.5
            self._cond.notify_all()
        if self._sender.is_alive():
            self._sender.join(CLOSE_BUDGET_S * 0.6)
        if self._connected:
            try:
                info = self._client.publish(self.topics.status, "offline", qos=1, retain=True)
                info.wait_for_publish(max(0.05, start + CLOSE_BUDGET_S * 0.9 - time.monotonic()))
            except (RuntimeError, ValueError) as e:
                log.debug("could not publish offline: %s", e)
        with self._cond:
            self._reap_locked()
            lost = len(self._pending) + len(self._inflight)
            self._dropped += len(self._pending)
            self._pending.clear()
        if lost:
            log.warning("MQTT: %d results not confirmed by the broker at shutdown", lost)
        self._stop_network()

    def _stop_network(self) -> None:
        stop_network(self._client)

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

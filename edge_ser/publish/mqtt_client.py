"""The broker connection of MqttPublisher: topics, credentials, TLS, a configured paho client, and every
way a first connection fails as one line naming what to check."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ..config import topic_setting
from ..errors import ConfigError, UserError
from ..settings import PASSWORD_ENV, MqttSettings
from ..textfile import MAX_SECRET_FILE_BYTES, read_secret_line, readable_by_everyone

log = logging.getLogger("edge_ser.mqtt")

MAX_PASSWORD_FILE_BYTES = MAX_SECRET_FILE_BYTES
"""Largest password file read (a path to /dev/zero or a log file must not fill memory)."""


@dataclass(frozen=True)
class Topics:
    """The topics of one daemon."""

    prefix: str
    """Common prefix, without a trailing slash."""

    @property
    def emotion(self) -> str:
        return f"{self.prefix}/emotion"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"


def topics_for(settings: MqttSettings, site: str) -> Topics:
    """The topics for `settings` and `site`; a prefix with MQTT wildcards is a ConfigError."""
    prefix = settings.topic_prefix if settings.topic_prefix is not None else f"edge_ser/{site}"
    return Topics(topic_setting("mqtt.topic_prefix", prefix))


def read_password(settings: MqttSettings) -> str | None:
    """The broker password from $EDGE_SER_MQTT_PASSWORD, else the first line of mqtt.password_file."""
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if not settings.password_file:
        return None
    password, path = read_secret_line("mqtt.password_file", settings.password_file)
    if not password:
        raise ConfigError(f"mqtt.password_file {path} is empty")
    if readable_by_everyone(path):
        log.warning("mqtt.password_file %s is readable by everyone; chmod 600 it", path)
    return password


def make_client(settings: MqttSettings, client_id: str, status_topic: str, max_inflight: int) -> mqtt.Client:
    """A paho client with the Last Will on `status_topic`, credentials, TLS and reconnect backoff set
    (callbacks are the caller's); ConfigError for settings that cannot work."""
    s = settings
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=True, protocol=mqtt.MQTTv311)
    # A bug in a callback must be logged, not kill the network thread of a months-long daemon.
    client.suppress_exceptions = True
    client.on_log = _paho_log
    client.will_set(status_topic, "offline", qos=1, retain=True)
    password = read_password(s)
    if password is not None and not s.username:
        raise ConfigError("config key mqtt.username must be set when a broker password is given")
    if s.username:
        client.username_pw_set(s.username, password)
    if s.tls:
        _setup_tls(client, s)
    elif s.ca_file or s.cert_file:
        raise ConfigError("mqtt.ca_file / mqtt.cert_file are set but mqtt.tls is false")
    client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
    client.max_inflight_messages_set(max_inflight)
    return client


def _setup_tls(client: mqtt.Client, s: MqttSettings) -> None:
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(s, key)
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"config key mqtt.{key}: cannot read {path}")
    if s.key_file and not s.cert_file:
        raise ConfigError("config key mqtt.key_file is set without mqtt.cert_file")
    try:
        # CERT_REQUIRED: server certificates are always verified; tls_insecure only skips the
        # host name check.
        client.tls_set(ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    except (ssl.SSLError, ValueError, OSError) as e:
        raise ConfigError(f"invalid MQTT TLS files (mqtt.ca_file/cert_file/key_file): {e}") from None
    if s.tls_insecure:
        log.warning("mqtt.tls_insecure: the broker's host name is NOT checked (testing only)")
        client.tls_insecure_set(True)


def open_connection(client: mqtt.Client, s: MqttSettings) -> None:
    """Open the TCP (and TLS) connection; a failure is a UserError saying what to check."""
    where = f"MQTT broker {s.host}:{s.port}"
    try:
        client.connect(s.host, s.port, keepalive=s.keepalive_s)
    except ssl.SSLCertVerificationError as e:
        raise UserError(
            f"TLS verification of {where} failed: {e.verify_message or e.reason} "
            "(check mqtt.ca_file and that the certificate names this host)"
        ) from None
    except ssl.SSLError as e:
        raise UserError(f"TLS handshake with {where} failed: {e.reason or e} (check mqtt.tls)") from None
    except (ConnectionResetError, ConnectionAbortedError) as e:
        if s.tls:  # a plain MQTT listener hangs up on a TLS ClientHello
            raise UserError(f"TLS handshake with {where} failed: {e.strerror or e} "
                            "(is this port a TLS listener? check mqtt.tls and mqtt.port)") from None
        raise UserError(f"{where} is unreachable: {e.strerror or e}") from None
    except OSError as e:  # refused, unreachable, DNS failure, timeout
        raise UserError(f"{where} is unreachable: {e.strerror or e}") from None


def login_failure(s: MqttSettings, refused: str | None, closed_early: bool, timeout_s: float) -> UserError:
    """The error for a connection the broker refused (CONNACK `refused`), closed during login, or left
    unanswered for `timeout_s`."""
    where = f"MQTT broker {s.host}:{s.port}"
    if refused:
        hint = ""
        if any(w in refused.lower() for w in ("authori", "password", "user name")):
            hint = f" (check mqtt.username and the password in ${PASSWORD_ENV} or mqtt.password_file)"
        return UserError(f"{where} refused the connection: {refused}{hint}")
    if closed_early and s.tls:
        hint = "closed the connection during login (does it require a client certificate? " \
               "set mqtt.cert_file and mqtt.key_file)"
    elif closed_early:
        hint = "closed the connection during login (a TLS port? set mqtt.tls: true)"
    else:
        hint = f"did not answer within {timeout_s:g} s"
    return UserError(f"{where} {hint}")


def stop_network(client: mqtt.Client) -> None:
    """Disconnect and stop paho's network thread without waiting long for it."""
    try:
        client.disconnect()
    except Exception as e:  # already gone
        log.debug("MQTT disconnect: %s", e)
    # loop_stop joins paho's thread, which may sit in a connect timeout; don't wait for it long
    # (it is a daemon thread and ends on its own).
    stopper = threading.Thread(target=client.loop_stop, daemon=True)
    stopper.start()
    stopper.join(0.5)


_paho_log_target = logging.getLogger("edge_ser.mqtt.paho")


def _paho_log(client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
    # paho reports every failed reconnect at ERROR; outages are logged once by us, so keep its chatter
    # at DEBUG and only surface exceptions caught in our callbacks.
    _paho_log_target.log(logging.ERROR if text.startswith("Caught exception") else logging.DEBUG, "%s", text)

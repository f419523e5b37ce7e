"""Test helper: a real Debian `mosquitto` broker on a free loopback port, owned by one test.

    with Mosquitto(tmp_path) as broker:                  # anonymous, plain TCP
    with Mosquitto(tmp_path, users={"ser": "pw"}) as b:  # password file, anonymous refused
    with Mosquitto(tmp_path, users=..., acl="user a\ntopic write x/#\n") as b:  # with an acl_file
    with Mosquitto(tmp_path, tls=True) as b:             # TLS, certificates made by `openssl`
        b.certs.ca / .client_cert / .client_key / .other_ca (a CA that did NOT sign the broker)

stop()/start() (or restart()) keep the port, the config and the persistence file, so persistent
subscriber sessions (clean_session=False) survive a restart and receive what was published while they
were away. Also `subscriber()`: a paho client that records every message it receives.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Certs:
    """PEM files for a TLS test: a CA, a broker cert for 127.0.0.1/localhost, a client cert."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_certs(folder: Path) -> Certs:
    """Self-signed CA + broker and client certificates (EC P-256: fast to generate)."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    for name in ("ca", "other_ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
                 "-subj", f"/CN=edge-ser test {name}", *ca_ext, cwd=folder)
    (folder / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    (folder / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    for name, cn in (("server", "localhost"), ("client", "edge-ser-client")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                 cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)
    return Certs(ca=folder / "ca.crt", server_cert=folder / "server.crt", server_key=folder / "server.key",
                 client_cert=folder / "client.crt", client_key=folder / "client.key",
                 other_ca=folder / "other_ca.crt")


class Mosquitto:
    """One mosquitto process with its own config, port and persistence under `folder`."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None, tls: bool = False,
                 require_client_cert: bool = False, acl: str | None = None, port: int | None = None) -> None:
        self.folder = Path(folder) / "mosquitto"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.users = users or {}
        self.certs = make_certs(self.folder / "certs") if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "mosquitto.log"
        lines = [
            f"listener {self.port} {self.host}",
            # mosquitto started as root drops to user `mosquitto`, who cannot read our temp files.
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {self.folder}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self.users:
            pwfile = self.folder / "passwd"
            pwfile.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pwfile), user, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines += ["allow_anonymous true"]
        if acl is not None:
            (self.folder / "acl").write_text(acl)
            lines += [f"acl_file {self.folder / 'acl'}"]
        if self.certs:
            lines += [f"cafile {self.certs.ca}", f"certfile {self.certs.server_cert}",
                      f"keyfile {self.certs.server_key}"]
            if require_client_cert:
                lines += ["require_certificate true"]
        self.config = self.folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        """Start the broker and wait until it accepts TCP connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._logf = open(self.log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=self._logf,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: clients are dropped, persistent sessions are saved)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self._logf.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def subscriber(self, topic: str = "#", *, client_id: str | None = None, clean: bool = True,
                   username: str | None = None, password: str | None = None) -> Subscriber:
        """A connected paho client subscribed to `topic` with QoS 2 (recording every message)."""
        return Subscriber(self, topic, client_id=client_id, clean=clean, username=username,
                          password=password)


class Subscriber:
    """A paho client that records messages; reconnects by itself after a broker restart."""

    def __init__(self, broker: Mosquitto, topic: str, *, client_id: str | None, clean: bool,
                 username: str | None, password: str | None) -> None:
        self.topic = topic
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  clean_session=clean)
        if username:
            self.client.username_pw_set(username, password)
        if broker.certs:
            self.client.tls_set(ca_certs=str(broker.certs.ca), certfile=str(broker.certs.client_cert),
                                keyfile=str(broker.certs.client_key))
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber did not get SUBACK")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=2)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        """Messages received so far on `topic`."""
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, timeout_s: float = 10.0,
                 payload: bytes | None = None) -> list[mqtt.MQTTMessage]:
        """Wait until `count` messages (with `payload`, if given) arrived on `topic`; return them all."""
        def matching() -> list[mqtt.MQTTMessage]:
            return [m for m in self.messages
                    if m.topic == topic and (payload is None or m.payload == payload)]

        with self._cond:
            self._cond.wait_for(lambda: len(matching()) >= count, timeout_s)
            got = matching()
        if len(got) < count:
            seen = [(m.topic, m.payload[:80]) for m in self.messages[-10:]]
            raise AssertionError(f"got {len(got)}/{count} messages on {topic}; last seen: {seen}")
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""MqttPublisher and Home Assistant discovery against a real mosquitto broker and a paho subscriber."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import jinja2  # Home Assistant renders discovery templates with Jinja2 (installed with torch, [train])
import numpy as np
import pytest
from mosquitto import Mosquitto, free_port, make_certs

from edge_ser.errors import ConfigError, UserError
from edge_ser.labels import EMOTIONS, NEUTRAL
from edge_ser.publish.mqtt import MqttPublisher
from edge_ser.settings import PASSWORD_ENV, MqttSettings

REPO = Path(__file__).resolve().parents[1]
PREFIX = "edge_ser/kitchen"


@pytest.fixture(autouse=True)
def _no_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path) as b:
        yield b


def mqtt_settings(broker: Mosquitto, **kw) -> MqttSettings:
    """Settings for `broker` with a short keepalive and fast reconnects (tests must be quick)."""
    base = dict(host=broker.host, port=broker.port, keepalive_s=2, reconnect_min_s=0.1, reconnect_max_s=0.5)
    base.update(kw)
    return MqttSettings(**base)


def result(n: int, label: str = "sadness") -> dict:
    """A result message in the format of message.result_message (`n` only tags it for ordering checks)."""
    probs = dict.fromkeys(EMOTIONS, 0.1)
    probs[label] = 0.7
    return {"ts": "2026-11-25T10:00:02.000Z", "site": "kitchen", "window_start": float(n), "window_s": 2.0,
            "label": label, "confidence": 0.7, "probs": probs, "rms": 0.04, "gated": False,
            "model": "test-model", "latency_ms": 9.4, "n": n}


def numbers(messages) -> list[int]:
    return [json.loads(m.payload)["n"] for m in messages]


def wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_result_schema_qos_and_retained_online(broker: Mosquitto, qos: int) -> None:
    settings = mqtt_settings(broker, qos=qos)
    with broker.subscriber(f"{PREFIX}/#") as sub, MqttPublisher(settings, "kitchen") as pub:
        sub.wait_for(f"{PREFIX}/status", payload=b"online")
        sent = result(1, "anger_disgust")
        pub.publish(sent)
        (msg,) = sub.wait_for(f"{PREFIX}/emotion")
        assert json.loads(msg.payload) == sent
        assert msg.qos == qos and not msg.retain
        # A client that subscribes later still learns we are online: the status is retained.
        with broker.subscriber(f"{PREFIX}/status") as late:
            (status,) = late.wait_for(f"{PREFIX}/status")
            assert status.payload == b"online" and status.retain
        if qos:
            wait_until(lambda: pub.stats()["published"] == 1)
        assert pub.stats()["dropped"] == 0


def test_close_publishes_retained_offline(broker: Mosquitto) -> None:
    pub = MqttPublisher(mqtt_settings(broker), "kitchen")
    with broker.subscriber(f"{PREFIX}/#") as sub:
        for n in range(3):
            pub.publish(result(n))
        wait_until(lambda: pub.stats()["published"] == 3)  # close() flushes too, but only for ~0.5 s
        pub.close()
        assert numbers(sub.wait_for(f"{PREFIX}/emotion", 3)) == [0, 1, 2]
        sub.wait_for(f"{PREFIX}/status", payload=b"offline")
    assert pub.stats() == {"published": 3, "queued": 0, "dropped": 0, "disconnects": 0}
    with broker.subscriber(f"{PREFIX}/status") as late:
        (status,) = late.wait_for(f"{PREFIX}/status")
        assert status.payload == b"offline" and status.retain
    pub.close()  # idempotent


def test_custom_prefix_and_stats_topic(broker: Mosquitto) -> None:
    settings = mqtt_settings(broker, topic_prefix="home/ser/livingroom/")
    with broker.subscriber("home/ser/#") as sub, MqttPublisher(settings, "kitchen") as pub:
        sub.wait_for("home/ser/livingroom/status", payload=b"online")
        pub.publish_stats({"windows": 10, "dropped": 0})
        (msg,) = sub.wait_for("home/ser/livingroom/stats")
        assert json.loads(msg.payload) == {"windows": 10, "dropped": 0}
        pub.publish(result(0))
        sub.wait_for("home/ser/livingroom/emotion")


def test_prefix_with_wildcards_is_refused(broker: Mosquitto) -> None:
    for bad in ("edge_ser/+/x", "edge_ser/#"):
        with pytest.raises(ConfigError, match="mqtt.topic_prefix"):
            MqttPublisher(mqtt_settings(broker, topic_prefix=bad), "kitchen")
    with pytest.raises(ConfigError, match="discovery_prefix"):
        MqttPublisher(mqtt_settings(broker, ha_discovery=True, discovery_prefix="ha/#"), "kitchen")


def test_last_will_offline_after_kill_9(broker: Mosquitto) -> None:
    code = (
        "import sys, time\n"
        "from edge_ser.settings import MqttSettings\n"
        "from edge_ser.publish.mqtt import MqttPublisher\n"
        f"p = MqttPublisher(MqttSettings(host='127.0.0.1', port={broker.port}, keepalive_s=1), 'kitchen')\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with broker.subscriber(f"{PREFIX}/status") as sub:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            sub.wait_for(f"{PREFIX}/status", payload=b"online")
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        sub.wait_for(f"{PREFIX}/status", payload=b"offline")
    with broker.subscriber(f"{PREFIX}/status") as late:
        assert late.wait_for(f"{PREFIX}/status")[0].payload == b"offline"


def test_results_queued_while_broker_down_arrive_in_order_after_restart(broker: Mosquitto) -> None:
    # A persistent subscriber session (kept in the broker's persistence file) receives what was
    # published while it reconnects after the restart, whichever client reconnects first.
    with broker.subscriber(f"{PREFIX}/emotion", client_id="test-sub", clean=False) as sub, \
            MqttPublisher(mqtt_settings(broker), "kitchen") as pub:
        pub.publish(result(0))
        sub.wait_for(f"{PREFIX}/emotion")
        wait_until(lambda: pub.stats()["published"] == 1)
        broker.stop()
        wait_until(lambda: not pub.connected)
        for n in range(1, 6):
            pub.publish(result(n))  # returns at once, never raises
        assert pub.stats()["queued"] == 5
        broker.start()
        got = numbers(sub.wait_for(f"{PREFIX}/emotion", 6))
        # QoS 1 is at-least-once: a message in flight at the stop may come twice; order is kept.
        assert list(dict.fromkeys(got)) == [0, 1, 2, 3, 4, 5]
        wait_until(lambda: pub.stats()["queued"] == 0)
        stats = pub.stats()
        assert stats["published"] >= 6 and stats["dropped"] == 0 and stats["disconnects"] == 1


def test_full_queue_drops_oldest_and_counts(broker: Mosquitto) -> None:
    with broker.subscriber(f"{PREFIX}/emotion", client_id="test-sub", clean=False) as sub, \
            MqttPublisher(mqtt_settings(broker, queue_size=3), "kitchen") as pub:
        broker.stop()
        wait_until(lambda: not pub.connected)
        for n in range(6):
            pub.publish(result(n))
        assert pub.stats()["dropped"] == 3 and pub.stats()["queued"] == 3
        broker.start()
        assert numbers(sub.wait_for(f"{PREFIX}/emotion", 3)) == [3, 4, 5]
        wait_until(lambda: pub.stats()["queued"] == 0)
        assert pub.stats()["dropped"] == 3 and pub.stats()["published"] == 3


def test_close_while_broker_down_does_not_hang(broker: Mosquitto) -> None:
    pub = MqttPublisher(mqtt_settings(broker, reconnect_min_s=5, reconnect_max_s=5), "kitchen")
    broker.stop()
    wait_until(lambda: not pub.connected)
    pub.publish(result(0))
    start = time.monotonic()
    pub.close()
    assert time.monotonic() - start < 5  # a hang guard, not a benchmark (budget is ~1 s)
    assert pub.stats()["dropped"] == 1


def test_unreachable_broker_at_start_is_one_clear_error() -> None:
    port = free_port()
    with pytest.raises(UserError, match=f"MQTT broker 127.0.0.1:{port} is unreachable: Connection refused"):
        MqttPublisher(MqttSettings(host="127.0.0.1", port=port), "kitchen")


def test_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Mosquitto(tmp_path, users={"ser": "s3cret"}) as b:
        settings = mqtt_settings(b, username="ser")
        with pytest.raises(UserError, match="refused the connection: Not authorized"):
            MqttPublisher(settings, "kitchen")  # no password anywhere
        monkeypatch.setenv(PASSWORD_ENV, "wrong")
        with pytest.raises(UserError, match="Not authorized"):
            MqttPublisher(settings, "kitchen")
        monkeypatch.setenv(PASSWORD_ENV, "s3cret")
        with b.subscriber(f"{PREFIX}/#", username="ser", password="s3cret") as sub, \
                MqttPublisher(settings, "kitchen") as pub:
            pub.publish(result(7))
            assert numbers(sub.wait_for(f"{PREFIX}/emotion")) == [7]


def test_password_from_file(tmp_path: Path) -> None:
    pwfile = tmp_path / "mqtt-password"
    pwfile.write_text("s3cret\n")
    pwfile.chmod(0o600)
    with Mosquitto(tmp_path, users={"ser": "s3cret"}) as b:
        with MqttPublisher(mqtt_settings(b, username="ser", password_file=str(pwfile)), "kitchen") as pub:
            assert pub.connected
        with pytest.raises(ConfigError, match="cannot read mqtt.password_file"):
            MqttPublisher(mqtt_settings(b, username="ser", password_file=str(tmp_path / "nope")), "kitchen")
        with pytest.raises(ConfigError, match="mqtt.username must be set"):
            MqttPublisher(mqtt_settings(b, password_file=str(pwfile)), "kitchen")


def test_tls_with_self_signed_ca(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, tls=True) as b:
        settings = mqtt_settings(b, tls=True, ca_file=str(b.certs.ca))
        with b.subscriber(f"{PREFIX}/#") as sub, MqttPublisher(settings, "kitchen") as pub:
            pub.publish(result(1))
            assert numbers(sub.wait_for(f"{PREFIX}/emotion")) == [1]
        # A CA that did not sign the broker certificate: refused, verification is on by default.
        with pytest.raises(UserError, match="TLS verification of MQTT broker .* failed: .*mqtt.ca_file"):
            MqttPublisher(replace(settings, ca_file=str(b.certs.other_ca)), "kitchen")
        # tls_insecure only skips the host name check, never the chain.
        with pytest.raises(UserError, match="TLS verification"):
            MqttPublisher(replace(settings, ca_file=str(b.certs.other_ca), tls_insecure=True), "kitchen")
        with pytest.raises(UserError, match="closed the connection during login .*mqtt.tls"):
            MqttPublisher(replace(settings, tls=False, ca_file=None), "kitchen", connect_timeout_s=2)
        with pytest.raises(ConfigError, match="mqtt.ca_file"):
            MqttPublisher(replace(settings, ca_file=str(tmp_path / "missing.crt")), "kitchen")


def test_tls_against_a_plain_listener_is_one_clear_error(broker: Mosquitto, tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    with pytest.raises(UserError, match="TLS handshake with MQTT broker .* failed: .*mqtt.tls"):
        MqttPublisher(mqtt_settings(broker, tls=True, ca_file=str(certs.ca)), "kitchen")


def test_tls_client_certificate(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, tls=True, require_client_cert=True) as b:
        settings = mqtt_settings(b, tls=True, ca_file=str(b.certs.ca), cert_file=str(b.certs.client_cert),
                                 key_file=str(b.certs.client_key))
        with MqttPublisher(settings, "kitchen") as pub:
            assert pub.connected
        with pytest.raises(UserError, match="client certificate"):
            MqttPublisher(replace(settings, cert_file=None, key_file=None), "kitchen", connect_timeout_s=2)


def test_home_assistant_discovery_retained_and_valid(broker: Mosquitto) -> None:
    settings = mqtt_settings(broker, ha_discovery=True, expire_after_s=120)
    with MqttPublisher(settings, "kitchen") as pub, broker.subscriber("homeassistant/#") as ha_sub:
        ha_sub.wait_for("homeassistant/sensor/edge_ser_kitchen/emotion/config")
        # Home Assistant started later still finds the config: it is retained.
        with broker.subscriber("homeassistant/#") as late:
            (msg,) = late.wait_for("homeassistant/sensor/edge_ser_kitchen/emotion/config")
        assert msg.retain
        config = json.loads(msg.payload)
        assert config["state_topic"] == config["json_attributes_topic"] == f"{PREFIX}/emotion"
        assert config["availability_topic"] == f"{PREFIX}/status"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["unique_id"] == "edge_ser_kitchen_emotion"
        assert config["device"]["identifiers"] == ["edge_ser_kitchen"]
        assert config["device_class"] == "enum" and set(config["options"]) == {*EMOTIONS, NEUTRAL}
        assert config["expire_after"] == 120 and config["qos"] == 1
        # The templates, rendered the way Home Assistant does, give the label and the probabilities.
        sent = result(0, "happiness")
        env = jinja2.Environment()
        value_json = json.loads(json.dumps(sent))
        state = env.from_string(config["value_template"]).render(value_json=value_json)
        attrs = env.from_string(config["json_attributes_template"]).render(value_json=value_json)
        assert state == "happiness" and state in config["options"]
        assert json.loads(attrs) == sent["probs"]
        pub.publish(sent)
    settings = replace(settings, expire_after_s=0, discovery_prefix="ha")
    with MqttPublisher(settings, "kitchen"), broker.subscriber("ha/#") as ha_sub:
        config = json.loads(ha_sub.wait_for("ha/sensor/edge_ser_kitchen/emotion/config")[0].payload)
        assert "expire_after" not in config


# The ACL of SECURITY.md ("Locking down the broker"): each daemon writes only its own topics.
SECURITY_ACL = """\
user edge-ser-kitchen
topic write edge_ser/kitchen/#
topic write homeassistant/sensor/edge_ser_kitchen/#

user homeassistant
topic read edge_ser/#
topic readwrite homeassistant/#
"""


def test_security_md_acl_lets_the_daemon_publish_only_its_own_topics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = {"edge-ser-kitchen": "k-pw", "homeassistant": "ha-pw"}
    with Mosquitto(tmp_path, users=users, acl=SECURITY_ACL) as b:
        monkeypatch.setenv(PASSWORD_ENV, "k-pw")
        settings = mqtt_settings(b, username="edge-ser-kitchen", ha_discovery=True)
        with b.subscriber("#", username="homeassistant", password="ha-pw") as ha_sub:
            with MqttPublisher(settings, "kitchen") as pub:
                pub.publish(result(1))
                assert numbers(ha_sub.wait_for(f"{PREFIX}/emotion")) == [1]
                ha_sub.wait_for("homeassistant/sensor/edge_ser_kitchen/emotion/config")
                # The same credentials used for another site: with MQTT 3.1.1 mosquitto acknowledges
                # and silently discards what the ACL denies, so nothing of it reaches anybody.
                with MqttPublisher(settings, "livingroom") as other:
                    other.publish(result(2))
                pub.publish(result(3))  # a marker: the broker handled the other client's traffic first
                assert numbers(ha_sub.wait_for(f"{PREFIX}/emotion", 2)) == [1, 3]
            ha_sub.wait_for(f"{PREFIX}/status", payload=b"offline")
            assert not [m.topic for m in ha_sub.messages if "livingroom" in m.topic]


def test_qos0_barrier_is_answered_under_the_security_md_acl(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The ACL grants the daemon no read access: the UNSUBSCRIBE barrier must still be answered.
    users = {"edge-ser-kitchen": "k-pw", "homeassistant": "ha-pw"}
    with Mosquitto(tmp_path, users=users, acl=SECURITY_ACL) as b:
        monkeypatch.setenv(PASSWORD_ENV, "k-pw")
        settings = mqtt_settings(b, username="edge-ser-kitchen", qos=0)
        with b.subscriber(f"{PREFIX}/emotion", username="homeassistant", password="ha-pw") as sub, \
                MqttPublisher(settings, "kitchen") as pub:
            for n in range(3):
                pub.publish(result(n))
            assert numbers(sub.wait_for(f"{PREFIX}/emotion", 3)) == [0, 1, 2]
            wait_until(lambda: pub.stats()["published"] == 3)
            assert pub.stats()["queued"] == 0


def test_numpy_values_in_a_message_are_plain_json(broker: Mosquitto) -> None:
    sent = result(0)
    sent["confidence"] = np.float32(0.75)
    sent["probs"] = {k: np.float64(v) for k, v in sent["probs"].items()}
    settings = mqtt_settings(broker)
    with broker.subscriber(f"{PREFIX}/emotion") as sub, MqttPublisher(settings, "kitchen") as pub:
        pub.publish(sent)
        got = json.loads(sub.wait_for(f"{PREFIX}/emotion")[0].payload)
    assert got["confidence"] == 0.75 and got["probs"]["sadness"] == 0.7


def test_frozen_broker_is_detected_by_keepalive_and_nothing_is_lost(broker: Mosquitto) -> None:
    # SIGSTOP: the TCP connection stays up but nothing answers, like a Wi-Fi drop. paho's keepalive
    # (1.5 x keepalive_s) notices; unacknowledged QoS 1 results are resent after the reconnect.
    with broker.subscriber(f"{PREFIX}/emotion", client_id="test-sub", clean=False) as sub, \
            MqttPublisher(mqtt_settings(broker, keepalive_s=1), "kitchen") as pub:
        pub.publish(result(0))
        sub.wait_for(f"{PREFIX}/emotion")
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            for n in range(1, 4):
                pub.publish(result(n))
            wait_until(lambda: not pub.connected)
            for n in range(4, 7):
                pub.publish(result(n))
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        wait_until(lambda: set(numbers(sub.on(f"{PREFIX}/emotion"))) == set(range(7)), 20)
        # At-least-once: some may come twice, but none overtakes an older one.
        assert list(dict.fromkeys(numbers(sub.on(f"{PREFIX}/emotion")))) == list(range(7))
        wait_until(lambda: pub.stats()["queued"] == 0, 20)
        assert pub.stats()["dropped"] == 0


def test_qos0_results_count_as_published_only_once_the_broker_has_read_them(broker: Mosquitto) -> None:
    # QoS 0 has no PUBACK, and paho calls a QoS 0 message done once it is in the socket buffer: with a
    # frozen broker those bytes are lost with the connection. The publisher keeps such results until
    # the broker answers a later packet, and sends them again after a reconnect.
    with broker.subscriber(f"{PREFIX}/emotion", client_id="test-sub", clean=False) as sub, \
            MqttPublisher(mqtt_settings(broker, qos=0, keepalive_s=1), "kitchen") as pub:
        pub.publish(result(0))
        sub.wait_for(f"{PREFIX}/emotion")
        wait_until(lambda: pub.stats()["published"] == 1)
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            n = 1
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:  # one result every 0.1 s while the broker is frozen
                pub.publish(result(n))
                n += 1
                time.sleep(0.1)
            frozen = pub.stats()
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        assert frozen["published"] == 1, frozen  # nothing the frozen broker did not read
        wait_until(lambda: pub.stats()["queued"] == 0, 20)
        stats = pub.stats()
        # the broker answers the barrier before it has necessarily forwarded the results
        try:
            wait_until(lambda: set(numbers(sub.on(f"{PREFIX}/emotion"))) >= set(range(n)))
        finally:
            got = set(numbers(sub.on(f"{PREFIX}/emotion")))
            assert got == set(range(n)), (stats, sorted(set(range(n)) - got))
        assert stats["dropped"] == 0 and stats["published"] >= n and stats["disconnects"] == 1
        # delivered in order, apart from repeats of results the frozen broker read before the drop
        assert list(dict.fromkeys(numbers(sub.on(f"{PREFIX}/emotion")))) == list(range(n))

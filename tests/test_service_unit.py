"""systemd/edge-ser.service: hardened (exposure at most 2.0), clean for `systemd-analyze`, and its system-call
and socket restrictions do not break the daemon (ALSA capture, MQTT, TFLite and onnxruntime).

systemd itself cannot run a unit inside this test, so the last test applies the unit's own
SystemCallFilter= (groups expanded by `systemd-analyze syscall-filter`), RestrictAddressFamilies= and
NoNewPrivileges= with libseccomp, and (as root) a read-only / with a private writable /var/tmp like
ProtectSystem=strict + PrivateTmp=, to a real `edge-ser listen` on the virtual mic with a real broker.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, SPEECH, cli_env
from mosquitto import Mosquitto
from virtual_mic import VirtualMic

UNIT = REPO / "systemd" / "edge-ser.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze not installed (apt install systemd)")


def directives() -> dict[str, list[str]]:
    """Key -> values of every `Key=value` line of the unit (a key may repeat)."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_has_the_documented_hardening() -> None:
    d = directives()
    want = {
        "Type": "notify", "Restart": "always", "DynamicUser": "yes", "SupplementaryGroups": "audio",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "DevicePolicy": "closed", "DeviceAllow": "char-alsa rw", "StateDirectory": "edge-ser",
        "ConfigurationDirectory": "edge-ser",
    }
    for key, value in want.items():
        assert d.get(key) == [value], (key, d.get(key))
    assert int(d["WatchdogSec"][0]) > 0 and int(d["RestartSec"][0]) > 0
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert d["ExecStart"][0].endswith("edge-ser listen --config /etc/edge-ser/config.yaml")
    assert not any("password" in v.lower() for v in d["ExecStart"]), "no secrets on the command line"


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this machine's Python instead of /opt/edge-ser.
    unit = tmp_path / "edge-ser.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-ser/bin/edge-ser", sys.executable))
    proc = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc


@needs_analyze
def test_systemd_analyze_security_exposure_at_most_2() -> None:
    proc = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", str(UNIT)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for edge-ser\.service: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    exposure = float(m.group(1))
    print(f"systemd-analyze security --offline=yes: exposure {exposure}")
    assert exposure <= 2.0


# -- the unit's seccomp filter around a real daemon -------------------------------------------------

@cache
def expand(group: str) -> frozenset[str]:
    """System calls of a systemd syscall group such as @system-service, recursively."""
    out = subprocess.run([ANALYZE, "syscall-filter", group], capture_output=True, text=True,
                         check=True).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        names |= expand(item) if item.startswith("@") else {item}
    return frozenset(names)


def allowed_syscalls() -> set[str]:
    """The allow-list the unit's SystemCallFilter= lines produce (first a list, then ~removals)."""
    allowed: set[str] = set()
    for value in directives()["SystemCallFilter"]:
        deny = value.startswith("~")
        items = set()
        for item in value.lstrip("~").split():
            items |= expand(item) if item.startswith("@") else {item}
        if deny:
            allowed -= items
        else:
            allowed |= items
    return allowed


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def sandbox(allowed: set[str], families: list[int]):
    """preexec_fn: load a seccomp filter like systemd's (refused calls fail with EPERM, sockets of
    other families with EAFNOSUPPORT), which also sets no_new_privs (NoNewPrivileges=yes)."""
    path = ctypes.util.find_library("seccomp")
    assert path, "libseccomp not found (Debian: libseccomp2)"
    lib = ctypes.CDLL(path)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ScmpArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    numbers = []
    for name in sorted(allowed - {"socket"}):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:  # names of other architectures resolve to __NR_SCMP_ERROR
            numbers.append(nr)
    sock_nr = lib.seccomp_syscall_resolve_name(b"socket")

    def apply() -> None:
        ctx = lib.seccomp_init(scmp_act_errno(errno.EPERM))
        for nr in numbers:
            if lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, None) != 0:
                raise OSError("seccomp_rule_add failed")
        for fam in families:
            cmp = ScmpArgCmp(0, SCMP_CMP_EQ, fam, 0)
            if lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, sock_nr, 1, ctypes.byref(cmp)) != 0:
                raise OSError("seccomp_rule_add(socket) failed")
        if lib.seccomp_load(ctx) != 0:
            raise OSError("seccomp_load failed")

    return apply


LAUNCHER = """
import os, socket, sys
sys.path.insert(0, {tests!r})
from test_service_unit import allowed_syscalls, directives, sandbox
families = [getattr(socket, f) for f in directives()["RestrictAddressFamilies"][0].split()]
sandbox(allowed_syscalls(), families)()
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def read_only_root() -> list[str]:
    """Command prefix running the rest with / read-only in a private mount namespace (what
    ProtectSystem=strict does; /dev, /proc, /sys stay as they are) and an empty writable /var/tmp
    (PrivateTmp=; /tmp itself stays, read-only, because the test's mic and broker live there), or []
    where that is not allowed."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return []
    probe = subprocess.run([unshare, "-m", "--propagation", "private", "mount", "-o", "remount,bind,ro", "/"],
                           capture_output=True)
    if probe.returncode != 0:
        return []
    return [unshare, "-m", "--propagation", "private", "sh", "-c",
            'mount -o remount,bind,ro / && mount -t tmpfs -o mode=1777 tmpfs /var/tmp && exec "$@"', "sh"]


@needs_analyze
def test_daemon_works_under_the_units_syscall_filter_and_address_families(tmp_path: Path) -> None:
    allowed = allowed_syscalls()
    assert {"read", "openat", "mmap", "futex", "connect"} <= allowed
    assert "mount" not in allowed and "reboot" not in allowed and "ptrace" not in allowed
    launcher = [sys.executable, "-c", LAUNCHER.format(tests=str(Path(__file__).parent))]
    read_only = read_only_root()
    x, rate = sf.read(SPEECH, dtype="float32")
    with Mosquitto(tmp_path) as broker, VirtualMic(tmp_path, audio=np.tile(x, 2), rate=rate) as mic, \
            broker.subscriber("edge_ser/sandbox/#") as sub:
        proc = subprocess.Popen(
            [*read_only, *launcher, "-m", "edge_ser", "listen", "--device", "fakemic", "--site", "sandbox",
             "--mqtt", f"{broker.host}:{broker.port}"],
            env=cli_env(HOME=str(mic.home)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            results = sub.wait_for("edge_ser/sandbox/emotion", 3, timeout_s=90)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
            sub.wait_for("edge_ser/sandbox/status", payload=b"offline", timeout_s=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        # The sandbox really is on: a netlink socket (not in RestrictAddressFamilies) is refused,
        # and so is writing to the file system.
        probe = subprocess.run(
            [*read_only, *launcher, "-c", "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)"],
            capture_output=True, text=True)
        write = subprocess.run([*read_only, *launcher, "-c", f"open({str(tmp_path / 'w')!r}, 'w')"],
                               capture_output=True, text=True)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert any(b'"gated":false' in m.payload for m in results), [m.payload[:120] for m in results]
    assert probe.returncode != 0 and "Operation not permitted" in probe.stderr, probe.stderr
    if read_only:
        assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    print("sandbox: seccomp + address families" + (" + read-only /" if read_only else ""))


def test_password_from_a_systemd_credential(tmp_path: Path) -> None:
    # SECURITY.md's recipe: LoadCredential=mqtt-password:... and
    # mqtt.password_file: ${CREDENTIALS_DIRECTORY}/mqtt-password (systemd sets the variable).
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret\n")
    (creds / "mqtt-password").chmod(0o400)
    config = tmp_path / "config.yaml"
    with Mosquitto(tmp_path, users={"edge-ser-kitchen": "s3cret"}) as broker:
        config.write_text(
            f"site: kitchen\nmqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
            "  username: edge-ser-kitchen\n  password_file: ${CREDENTIALS_DIRECTORY}/mqtt-password\n")
        env = cli_env(CREDENTIALS_DIRECTORY=str(creds))
        env.pop("EDGE_SER_MQTT_PASSWORD", None)
        with broker.subscriber("edge_ser/kitchen/#", username="edge-ser-kitchen", password="s3cret") as sub:
            proc = subprocess.run([sys.executable, "-m", "edge_ser", "listen", "--config", str(config),
                                   "--input", str(SPEECH)], capture_output=True, text=True, timeout=120,
                                  env=env, cwd=REPO)
            sub.wait_for("edge_ser/kitchen/emotion", 3)
            sub.wait_for("edge_ser/kitchen/status", payload=b"offline")
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout


def test_security_md_mosquitto_acl_lets_each_side_do_only_its_job(tmp_path: Path) -> None:
    # The ACL block of SECURITY.md, verbatim, in a real mosquitto: the daemon (user edge-ser-kitchen)
    # publishes results, status and its Last Will; Home Assistant reads them but cannot write there;
    # the device cannot read anything.
    doc = (REPO / "SECURITY.md").read_text()
    acl = re.search(r"`/etc/mosquitto/acl`:\n\n```conf\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "acl").write_text(acl)
    broker = Mosquitto(tmp_path, users={"edge-ser-kitchen": "pw1", "homeassistant": "pw2"})
    with open(broker.config, "a") as f:
        f.write(f"acl_file {tmp_path / 'acl'}\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"site: kitchen\nmqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
                      "  username: edge-ser-kitchen\n  ha_discovery: true\n")
    with broker, \
            broker.subscriber("#", username="homeassistant", password="pw2") as ha, \
            broker.subscriber("#", username="edge-ser-kitchen", password="pw1") as device:
        proc = subprocess.run([sys.executable, "-m", "edge_ser", "listen", "--config", str(config),
                               "--input", str(SPEECH)], capture_output=True, text=True, timeout=120,
                              env=cli_env(EDGE_SER_MQTT_PASSWORD="pw1"), cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        ha.wait_for("edge_ser/kitchen/emotion", 3)
        ha.wait_for("edge_ser/kitchen/status", payload=b"offline")
        assert any(m.topic.startswith("homeassistant/sensor/") for m in ha.messages)
        ha.client.publish("edge_ser/kitchen/emotion", b"forged", qos=1).wait_for_publish(5)
        device.client.publish("edge_ser/living_room/emotion", b"spoofed", qos=1).wait_for_publish(5)
        with broker.subscriber("edge_ser/#", username="homeassistant", password="pw2") as late:
            late.wait_for("edge_ser/kitchen/status")  # retained: the queue is flushed up to here
        payloads = [m.payload for m in ha.messages]
        assert b"forged" not in payloads and b"spoofed" not in payloads
        assert device.messages == [], "the device must not read anything"

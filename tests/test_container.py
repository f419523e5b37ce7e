"""The container files: what the Dockerfile, .dockerignore and compose.yaml promise, checked without
Docker, and the image's entry point and HEALTHCHECK (edge_ser.container) against a real daemon.

scripts/container_smoke.sh builds and runs the image itself (bench/results/container_smoke.txt).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SPEECH, assert_user_error, cli_env

from edge_ser.config import load_settings
from edge_ser.manifest import load_manifest

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_dockerfile_is_multi_stage_with_a_non_root_runtime_and_a_healthcheck():
    first = instructions(DOCKERFILE)[0]  # the base is a build argument with a public default
    assert first in (("ARG", "BASE=debian:bookworm-slim"), ("ARG", "BASE=python:3.11-slim"))
    wheels, runtime = stages(DOCKERFILE)
    assert wheels[0] == ("FROM", "${BASE} AS wheels") and runtime[0] == ("FROM", "${BASE} AS runtime")
    assert any(k == "RUN" and "pip wheel" in v and "--only-binary=:all:" in v for k, v in wheels)
    assert ("ARG", 'EXTRA_CA_CERT=""') in wheels  # optional: empty by default
    rt = dict(runtime)  # the last value of each instruction
    assert "COPY" in rt and any(k == "COPY" and v.startswith("--from=wheels ") for k, v in runtime)
    assert not any("pip " in v for k, v in runtime if k == "RUN"), "nothing is installed by pip at run time"
    user, _, group = rt["USER"].partition(":")
    assert user not in ("", "root", "0") and group == "audio"
    assert re.search(r"useradd .*--gid audio .*\bedge-ser\b", rt["RUN"])
    assert json.loads(rt["VOLUME"]) == ["/config", "/models"]
    assert json.loads(rt["ENTRYPOINT"])[1:4] == ["-m", "edge_ser.container", "run"]
    options, _, command = rt["HEALTHCHECK"].partition("CMD ")
    assert "--start-period=" in options
    assert json.loads(command)[1:] == ["-m", "edge_ser.container", "health"]
    assert "EDGE_SER_MODELS=/models" in rt["ENV"]


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Whether the Docker build context leaves `rel` out (last matching pattern wins; `*` stays within
    one path element, `**` crosses them; a pattern matching a parent folder matches the file)."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = rel.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_build_context_holds_the_package_and_every_shipped_model_file():
    patterns = [x.strip() for x in (REPO / ".dockerignore").read_text().splitlines()
                if x.strip() and not x.lstrip().startswith("#")]
    manifest = load_manifest(REPO / "models" / "manifest.yaml")
    default = manifest.models[manifest.default]
    shipped = [f"models/{ref.file}" for ref in (default.backbone, default.head) if ref is not None]
    assert len(shipped) == 2 and all((REPO / p).is_file() for p in shipped)
    for rel in ["pyproject.toml", "README.md", "edge_ser/container.py", "edge_ser/web/index.html",
                "models/manifest.yaml", "docker/config.default.yaml", *shipped]:
        assert not dockerignored(rel, patterns), rel
    for rel in [".venv/bin/python", "cache/x", "bench/results/latency.json", "tests/fixtures/silence.wav",
                "models/heads/whisper-l23-mlp-allplus/head.pt", ".git/HEAD"]:
        assert dockerignored(rel, patterns), rel
    copied = [v.split()[0] for k, v in instructions(DOCKERFILE) if k == "COPY" and "--from" not in v]
    assert copied and all((REPO / c).exists() and not dockerignored(c, patterns) for c in copied)


def test_compose_names_the_services_devices_and_volumes_the_readme_promises():
    spec = yaml.safe_load(COMPOSE.read_text())
    broker, daemon = spec["services"]["mosquitto"], spec["services"]["edge-ser"]
    assert "eclipse-mosquitto" in broker["image"]
    assert broker["ports"] == ["127.0.0.1:${MQTT_PORT:-1883}:1883"]  # anonymous broker: loopback only
    assert broker["healthcheck"]["test"][:2] == ["CMD", "mosquitto_sub"]
    assert daemon["depends_on"] == {"mosquitto": {"condition": "service_healthy"}}
    assert daemon["devices"] == ["${SOUND_DEVICE:-/dev/snd}:/dev/snd"]
    assert daemon["group_add"] == ["${AUDIO_GID:-29}"]
    assert daemon["read_only"] is True and daemon["cap_drop"] == ["ALL"]
    assert any(t.startswith("/tmp:") for t in daemon["tmpfs"])  # EDGE_SER_HEALTH_FILE lives there
    mounts = {v.split(":")[1]: v.split(":")[0] for v in daemon["volumes"] + broker["volumes"]}
    assert mounts["/config/config.yaml"] == "./docker/config.yaml"
    assert mounts["/models"] in spec["volumes"] and mounts["/mosquitto/data"] in spec["volumes"]
    for src in (mounts["/config/config.yaml"], mounts["/mosquitto/config/mosquitto.conf"]):
        assert (REPO / src).is_file(), src
    assert "listener 1883" in (REPO / "docker/mosquitto.conf").read_text()
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Run with Docker"):]
    section = section[:section.index("\n## ", 1)]
    for promised in ("compose.yaml", "/dev/snd", "/config", "/models", "mosquitto", "audio",
                     "scripts/container_base.sh", "scripts/container_smoke.sh", "EXTRA_CA_CERT"):
        assert promised in section, promised


def test_compose_config_is_valid_and_home_assistant_ready(tmp_path):
    settings = load_settings(REPO / "docker" / "config.yaml", {})
    assert settings.mqtt.host == "mosquitto" and settings.mqtt.port == 1883
    assert settings.mqtt.ha_discovery and settings.output.stdout is False
    default = load_settings(REPO / "docker" / "config.default.yaml", {})
    assert default.mqtt.host is None  # the image alone: JSON lines on stdout, no broker needed


# -- the entry point and the HEALTHCHECK, against a real daemon ---------------------------------------

def container(*args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_ser.container", *args], capture_output=True,
                          text=True, timeout=timeout, env=cli_env(), cwd=REPO, **kw)


def wait_health(state: Path, want: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = container("health", "--state", str(state)).stdout.strip()
        if out.startswith(want):
            return out
        time.sleep(0.5)
    raise AssertionError(f"health never said {want!r}; last: {out!r}")


def test_health_is_unhealthy_before_the_daemon_runs(tmp_path):
    state = tmp_path / "health.json"
    proc = container("health", "--state", str(state))
    assert proc.returncode == 1 and proc.stdout.startswith("unhealthy: no state file")
    state.write_text(json.dumps({"supervisor_pid": 2 ** 22 + 1, "ready": True, "last_ping": time.monotonic(),
                                 "status": "listening", "exit_code": None}))
    proc = container("health", "--state", str(state))
    assert proc.returncode == 1 and "supervisor is gone" in proc.stdout
    state.write_text("{")
    assert container("health", "--state", str(state)).returncode == 1


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    assert_user_error(container("run", "--state", str(tmp_path / "h.json")), "run needs the edge-ser command")
    assert_user_error(container("bogus"), "No such command")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(container("run", "--state", str(blocker / "h.json"), "--", "models"),
                      "cannot create the notify socket")


def test_run_reports_a_streaming_daemon_healthy_and_forwards_sigterm(tmp_path):
    state = tmp_path / "health.json"
    proc = subprocess.Popen([sys.executable, "-m", "edge_ser.container", "run", "--state", str(state), "--",
                             "listen", "--input", str(SPEECH), "--realtime"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            cwd=REPO)
    try:
        healthy = wait_health(state, "healthy:")
        assert "listening (" in healthy
        first = proc.stdout.readline()  # the daemon's stdout passes through
        assert '"label"' in first
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    proc = container("health", "--state", str(state))
    assert proc.returncode == 1 and proc.stdout.startswith("unhealthy: the daemon exited with 0")
    assert not state.with_name(state.name + ".sock").exists()


def test_a_hung_daemon_turns_unhealthy_and_is_killed_like_by_watchdogsec(tmp_path):
    state = tmp_path / "health.json"
    proc = subprocess.Popen([sys.executable, "-m", "edge_ser.container", "run", "--state", str(state),
                             "--watchdog-s", "4", "--kill-after-s", "1", "--",
                             "listen", "--input", str(SPEECH), "--realtime"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            cwd=REPO)
    daemon = None
    try:
        wait_health(state, "healthy:")
        daemon = json.loads(state.read_text())["pid"]
        os.kill(daemon, signal.SIGSTOP)  # a hang: no more audio blocks, no more pings
        deadline = time.monotonic() + 10
        out = container("health", "--state", str(state), "--max-age", "1")
        while out.returncode == 0 and time.monotonic() < deadline:
            out = container("health", "--state", str(state), "--max-age", "1")
        assert out.stdout.startswith("unhealthy: no watchdog ping for"), out.stdout
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        if daemon is not None:  # never leave a stopped daemon behind a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGKILL, err  # SIGABRT stays pending on a stopped process
    assert "no watchdog ping" in err
    assert json.loads(state.read_text())["exit_code"] == -signal.SIGKILL


@pytest.mark.parametrize("path", ["scripts/container_base.sh", "scripts/container_smoke.sh"])
def test_container_scripts_are_strict_shell(path):
    text = (REPO / path).read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert os.access(REPO / path, os.X_OK)
    assert subprocess.run(["bash", "-n", str(REPO / path)]).returncode == 0

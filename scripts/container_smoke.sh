#!/usr/bin/env bash
# Container smoke test (not part of the unit tests: it needs a Docker daemon and minutes):
#   1. builds the edge-ser image (Dockerfile) and a broker image,
#   2. runs `edge-ser listen --input` on the speech fixture inside the image, offline, and checks that
#      its labels equal those of the host's package on the same file,
#   3. checks the image's user (non-root, audio group) and its HEALTHCHECK command in a running container,
#   4. starts compose.yaml's pair (broker + daemon, the daemon streaming the fixture like a microphone)
#      and checks that the results, the `online` status and the Home Assistant discovery config arrive
#      on the broker,
#   5. reports the image size and the time of each step;
#   6. with ARM64=1, builds the arm64 image on this machine under qemu-user (binfmt_misc) and checks the
#      same labels from it on an emulated Raspberry Pi 4 core.
#
#   scripts/container_smoke.sh [OUTPUT_FILE]       # bench/results/container_smoke.txt is the committed one
#
# Environment (all optional):
#   BASE             base image (default debian:bookworm-slim); BUILD_BASE=1 makes one from Debian
#                    packages first (scripts/container_base.sh) and uses it, for machines without a registry
#   MOSQUITTO_IMAGE  broker image for compose (default: built from docker/mosquitto.Dockerfile on BASE)
#   EXTRA_CA_FILE    one PEM CA certificate handed to the build (a TLS-intercepting proxy to PyPI)
#   DEBIAN_MIRROR, PIP_INDEX_URL   passed to the build when set
#   BUILD_NETWORK    network of the build containers (default host: the host's resolver and proxy)
#   PYTHON           interpreter with edge-ser installed for the host run (default .venv/bin/python)
#   ARM64=1          step 6; ARM64_BASE names an arm64 base, else one is made with debootstrap (needs
#                    apt install qemu-user-static binfmt-support; Docker 20.10 import labels it amd64, so
#                    use this image for the check only and build a Pi's image on the Pi or with buildx)
#   SOUND_DEVICE     what compose passes as /dev/snd (default /dev/snd); a machine without a sound card
#                    passes /dev/null: the daemon streams the fixture and never opens a device
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-}"
image="${EDGE_SER_IMAGE:-edge-ser:smoke}"
fixture=tests/fixtures/speech_angry_sad.wav
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
command -v docker >/dev/null || { echo "container_smoke.sh: docker not found (apt install docker.io)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "container_smoke.sh: no Docker daemon answers (is dockerd running?)" >&2; exit 2; }
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    echo "container_smoke.sh: neither 'docker compose' nor docker-compose found (apt install docker-compose)" >&2
    exit 2
fi
if [ -n "${EXTRA_CA_FILE:-}" ] && [ ! -r "$EXTRA_CA_FILE" ]; then
    echo "container_smoke.sh: EXTRA_CA_FILE $EXTRA_CA_FILE is not a readable file" >&2
    exit 2
fi

report=$(mktemp)
work=$(mktemp -d)
project="edge-ser-smoke-$$"
cleanup() {
    "${compose[@]}" -p "$project" -f compose.yaml down -v >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
say() { echo "$*" | tee -a "$report"; }
t_start=$(date +%s)
step_t=$t_start
dt=0
lap() {  # dt: seconds since the previous lap
    local now
    now=$(date +%s)
    dt=$((now - step_t))
    step_t=$now
}

say "# container smoke: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
settings=""
for var in BASE BUILD_BASE ARM64 ARM64_BASE MOSQUITTO_IMAGE EXTRA_CA_FILE DEBIAN_MIRROR PIP_INDEX_URL BUILD_NETWORK PYTHON SOUND_DEVICE; do
    [ -n "${!var:-}" ] && settings+="$var=${!var} "
done
say "# command: ${settings}scripts/container_smoke.sh${out:+ $out}"
say "# docker: client $(docker version -f '{{.Client.Version}}' 2>/dev/null), daemon $(docker version -f '{{.Server.Version}}'); compose: ${compose[*]} $("${compose[@]}" version --short 2>/dev/null || true)"
load() { cut -d' ' -f1 /proc/loadavg; }
say "# host: $(uname -m), $(nproc) cores; 1-minute load at the start $(load) (other work on the machine slows every step)"

build_args=()
[ -n "${EXTRA_CA_FILE:-}" ] && build_args+=(--build-arg "EXTRA_CA_CERT=$(cat "$EXTRA_CA_FILE")")
[ -n "${DEBIAN_MIRROR:-}" ] && build_args+=(--build-arg "DEBIAN_MIRROR=$DEBIAN_MIRROR")
[ -n "${PIP_INDEX_URL:-}" ] && build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
base="${BASE:-debian:bookworm-slim}"
if [ "${BUILD_BASE:-0}" = 1 ]; then
    base=edge-ser/bookworm-base:local
    BASE_TAG=$base scripts/container_base.sh >"$work/base.log" 2>&1 || { cat "$work/base.log" >&2; exit 1; }
    lap
    say "base: $(tail -1 "$work/base.log" | sed 's/^== //') (debootstrap)"
fi
lap
build_args+=(--build-arg "BASE=$base")

# 1. images
docker build --network "${BUILD_NETWORK:-host}" "${build_args[@]}" -t "$image" . >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; exit 1; }
size=$(docker image inspect -f '{{.Size}}' "$image")
lap
say "image: $image on $base built in $dt s; size $(awk -v s="$size" 'BEGIN {printf "%.0f MB (%d bytes)", s / 1e6, s}')"
mq_image="${MOSQUITTO_IMAGE:-}"
if [ -z "$mq_image" ]; then
    mq_image=edge-ser/mosquitto:smoke
    docker build --network "${BUILD_NETWORK:-host}" -f docker/mosquitto.Dockerfile --build-arg "BASE=$base" \
        ${DEBIAN_MIRROR:+--build-arg "DEBIAN_MIRROR=$DEBIAN_MIRROR"} -t "$mq_image" docker >"$work/mq.log" 2>&1 \
        || { tail -30 "$work/mq.log" >&2; exit 1; }
    lap
    say "broker: $mq_image from docker/mosquitto.Dockerfile in $dt s"
fi

# 2. the fixture inside the image (no network) against the host's package
labels() {  # JSON lines on stdin -> one line: label label ...
    "$py" -c 'import json, sys; print(" ".join(json.loads(l)["label"] for l in sys.stdin if l.strip()))'
}
"$py" -m edge_ser listen --input "$fixture" >"$work/host.jsonl" 2>"$work/host.err" \
    || { cat "$work/host.err" >&2; exit 1; }
docker run --rm --network none -v "$PWD/tests/fixtures:/fixtures:ro" "$image" \
    listen --input "/fixtures/$(basename "$fixture")" >"$work/container.jsonl" 2>"$work/container.err" \
    || { cat "$work/container.err" >&2; exit 1; }
host_labels=$(labels <"$work/host.jsonl")
container_labels=$(labels <"$work/container.jsonl")
diff=$("$py" - "$work/host.jsonl" "$work/container.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(line) for line in open(p) if line.strip()] for p in sys.argv[1:])
print(max((abs(x["probs"][k] - y["probs"][k]) for x, y in zip(a, b) for k in x["probs"]), default=0.0))
PY
)
say "host:      $host_labels"
say "container: $container_labels"
say "max |probability difference| per window: $diff"
[ "$host_labels" = "$container_labels" ] || { say "FAIL: the container's labels differ from the host's"; exit 1; }
lap
say "listen --input in the container: labels equal to the host run ($(wc -l <"$work/container.jsonl") windows), $dt s"

# 3. user and health check in a running container
user=$(docker run --rm --entrypoint id "$image")
say "user: $user"
case "$user" in uid=0*) say "FAIL: the image runs as root"; exit 1 ;; esac
case "$user" in *"(audio)"*) ;; *) say "FAIL: the image's user is not in the audio group"; exit 1 ;; esac
cid=$(docker run -d --network none -v "$PWD/tests/fixtures:/fixtures:ro" "$image" \
    listen --input "/fixtures/$(basename "$fixture")" --realtime)
health=""
for _ in $(seq 1 30); do
    sleep 1
    if health=$(docker exec "$cid" python -m edge_ser.container health 2>&1); then break; fi
done
hc=$(docker inspect -f '{{json .Config.Healthcheck.Test}}' "$cid")
docker stop -t 10 "$cid" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
docker rm "$cid" >/dev/null
say "HEALTHCHECK $hc while streaming: $health"
case "$health" in healthy:*) ;; *) say "FAIL: the health check never passed"; exit 1 ;; esac
[ "$code" = 0 ] || { say "FAIL: docker stop ended the daemon with exit code $code (expected 0)"; exit 1; }
lap
say "docker stop: exit code $code, $dt s"

# 4. compose: broker + daemon; the daemon streams the fixture like a microphone and exits at its end
override="$work/compose.smoke.yaml"
cat >"$override" <<YAML
services:
  edge-ser:
    command: ["listen", "--config", "/config/config.yaml", "--input", "/fixtures/$(basename "$fixture")", "--realtime"]
    restart: "no"
    volumes:
      - $PWD/tests/fixtures:/fixtures:ro
YAML
# A free loopback port for the broker: another broker (or another run) may hold 1883.
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export EDGE_SER_IMAGE="$image" MOSQUITTO_IMAGE="$mq_image" MQTT_PORT="$port" SOUND_DEVICE="${SOUND_DEVICE:-/dev/snd}"
dc=("${compose[@]}" -p "$project" -f compose.yaml -f "$override")
"${dc[@]}" up -d --no-build mosquitto >"$work/compose.log" 2>&1 || { cat "$work/compose.log" >&2; exit 1; }
mq=$("${dc[@]}" ps -q mosquitto)
for _ in $(seq 1 60); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$mq")" = healthy ] && break
    sleep 1
done
lap
say "compose: broker $(docker inspect -f '{{.State.Health.Status}}' "$mq") after $dt s"
docker exec "$mq" mosquitto_sub -v -t 'edge_ser/#' -t 'homeassistant/#' -W 120 >"$work/mqtt.txt" 2>&1 &
sub=$!
sleep 1
"${dc[@]}" up -d --no-build edge-ser >>"$work/compose.log" 2>&1 || { cat "$work/compose.log" >&2; exit 1; }
daemon=$("${dc[@]}" ps -q edge-ser)
code=$(timeout 120 docker wait "$daemon" || echo timeout)
sleep 2
kill "$sub" 2>/dev/null || true
wait "$sub" 2>/dev/null || true
"${dc[@]}" logs --no-color edge-ser >"$work/daemon.log" 2>&1 || true
mqtt_labels=$(grep '^edge_ser/[^ ]*/emotion ' "$work/mqtt.txt" | cut -d' ' -f2- | labels)
say "broker got: $(grep -c '^edge_ser/[^ ]*/emotion ' "$work/mqtt.txt" || true) results, status $(grep '^edge_ser/[^ ]*/status ' "$work/mqtt.txt" | cut -d' ' -f2 | tr '\n' ' ')discovery $(grep -c '^homeassistant/sensor/' "$work/mqtt.txt" || true) config"
say "broker:    $mqtt_labels"
[ "$code" = 0 ] || { tail -20 "$work/daemon.log" >&2; say "FAIL: the compose daemon exited with $code"; exit 1; }
[ "$mqtt_labels" = "$host_labels" ] || { tail -20 "$work/daemon.log" >&2; say "FAIL: the broker's labels differ from the host run"; exit 1; }
grep -q '^homeassistant/sensor/[^ ]*/emotion/config ' "$work/mqtt.txt" \
    || { say "FAIL: no Home Assistant discovery config on the broker"; exit 1; }
lap
say "compose: results on the broker equal to the host run, daemon exit code $code, $dt s"
"${dc[@]}" down -v >/dev/null 2>&1

# 6. optional: the arm64 image on this x86 machine, built and run under qemu-user through binfmt_misc
if [ "${ARM64:-0}" = 1 ]; then
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
        || { say "FAIL: ARM64=1 needs qemu's binfmt handler (apt install qemu-user-static binfmt-support)"; exit 2; }
    arm_base="${ARM64_BASE:-}"
    if [ -z "$arm_base" ]; then
        arm_base=edge-ser/bookworm-base:arm64
        ARCH=arm64 BASE_TAG=$arm_base scripts/container_base.sh >"$work/base-arm64.log" 2>&1 \
            || { cat "$work/base-arm64.log" >&2; exit 1; }
        lap
        say "arm64 base: $(tail -1 "$work/base-arm64.log" | sed 's/^== //') (debootstrap, second stage under qemu)"
    fi
    build_args[-1]="BASE=$arm_base"
    docker build --network "${BUILD_NETWORK:-host}" "${build_args[@]}" -t "$image-arm64" . >"$work/build-arm64.log" 2>&1 \
        || { tail -30 "$work/build-arm64.log" >&2; exit 1; }
    lap
    say "arm64 image: $image-arm64 built under qemu in $dt s; size $(docker image inspect -f '{{.Size}}' "$image-arm64" | awk '{printf "%.0f MB", $1 / 1e6}')"
    # As in scripts/qemu_arm64_smoke.sh: qemu-user shows the host's /proc/cpuinfo, on which the cpuinfo
    # library inside onnxruntime and TFLite crashes, and its default CPU advertises extensions it
    # emulates wrongly; so the container sees a Raspberry Pi 4's cpuinfo and qemu emulates its core.
    # A window takes seconds under emulation, longer than the watchdog allows a file run that waits
    # for the model, so the watchdog is off here.
    cpuinfo="$work/cpuinfo"
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n' "$i"
        printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 1\n\n'
    done >"$cpuinfo"
    printf 'Model\t\t: Raspberry Pi 4 Model B\n' >>"$cpuinfo"
    docker run --rm --network none -e QEMU_CPU=cortex-a72 -e EDGE_SER_WATCHDOG_S=0 \
        -v "$cpuinfo:/proc/cpuinfo:ro" -v "$PWD/tests/fixtures:/fixtures:ro" "$image-arm64" \
        listen --input "/fixtures/$(basename "$fixture")" >"$work/arm64.jsonl" 2>"$work/arm64.err" \
        || { cat "$work/arm64.err" >&2; exit 1; }
    lap
    arm_labels=$(labels <"$work/arm64.jsonl")
    say "arm64:     $arm_labels"
    say "arm64 machine in the image: $(docker run --rm --entrypoint uname "$image-arm64" -m)"
    [ "$arm_labels" = "$host_labels" ] || { say "FAIL: the arm64 image's labels differ from the host's"; exit 1; }
    say "arm64 listen --input (Cortex-A72 under qemu): labels equal to the host run, $dt s"
fi

say "PASS in $(($(date +%s) - t_start)) s; 1-minute load at the end $(load)"
if [ -n "$out" ]; then
    cp "$report" "$out"
fi
rm -f "$report"

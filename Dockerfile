# edge-ser container image: the daemon, its default model, an ALSA microphone from the host.
#
#   docker build -t edge-ser .                                  # base: debian:bookworm-slim
#   docker run --rm --device /dev/snd edge-ser                  # default microphone -> JSON lines
#   docker compose up -d                                        # daemon + mosquitto, see compose.yaml
#
# Build arguments (all optional; the defaults work on a machine that reaches Docker Hub and PyPI):
#   BASE             base image of both stages; any Debian bookworm root works, e.g. the one
#                    scripts/container_base.sh makes from Debian packages where no registry is reachable
#   DEBIAN_MIRROR    replaces http://deb.debian.org in the base's apt sources
#   PIP_INDEX_URL    package index for the wheel stage (a PyPI mirror)
#   EXTRA_CA_CERT    PEM text of one more CA for the wheel stage's HTTPS (a TLS-intercepting proxy):
#                    --build-arg EXTRA_CA_CERT="$(cat company-ca.crt)"; it is not copied into the image
#
# Both stages use Debian's python3 (3.11 on bookworm) so the venv built in the first runs unchanged in
# the second, and only binary wheels are installed: nothing is compiled, on x86_64 or on a Pi.

ARG BASE=debian:bookworm-slim

# -- wheels: the package and every dependency as wheels, installed into a venv ------------------------
FROM ${BASE} AS wheels
ARG DEBIAN_MIRROR=""
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG EXTRA_CA_CERT=""
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_INDEX_URL=${PIP_INDEX_URL}
RUN set -eu; \
    if [ -n "$DEBIAN_MIRROR" ]; then \
        sed -i "s#http://deb.debian.org#${DEBIAN_MIRROR}#g" /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv ca-certificates; \
    if [ -n "$EXTRA_CA_CERT" ]; then \
        printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/build-extra-ca.crt; \
        update-ca-certificates; \
    fi; \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edge_ser ./edge_ser
COPY models ./models
# Tests of the dependencies are not needed to run them (about 50 MB). The last line checks, from
# outside the source tree, that the installed package holds the default model's two files (encoder
# and head) with their sha256.
RUN set -eu; \
    python3 -m venv /opt/edge-ser; \
    /opt/edge-ser/bin/pip wheel --no-deps --wheel-dir /wheels . ; \
    /opt/edge-ser/bin/pip wheel --only-binary=:all: --wheel-dir /wheels /wheels/edge_ser-*.whl; \
    /opt/edge-ser/bin/pip install --no-index --find-links /wheels edge-ser; \
    /opt/edge-ser/bin/pip uninstall -y pip setuptools; \
    find /opt/edge-ser/lib -depth -type d -name tests -exec rm -rf {} +; \
    cd /; test "$(/opt/edge-ser/bin/python -m edge_ser models | grep -c 'heads/whisper-l23-mlp-allplus.*sha256 ok')" = 2

# -- runtime: interpreter, PortAudio, CA certificates (MQTT over TLS), the venv ---------------------
FROM ${BASE} AS runtime
ARG DEBIAN_MIRROR=""
ENV DEBIAN_FRONTEND=noninteractive
# The user is in the audio group (GID 29 on Debian and Raspberry Pi OS), as the service's DynamicUser
# is: /dev/snd/* passed in with --device keep the host's group. A host whose audio group has another
# GID adds it with --group-add (compose: group_add).
RUN set -eu; \
    if [ -n "$DEBIAN_MIRROR" ]; then \
        sed -i "s#http://deb.debian.org#${DEBIAN_MIRROR}#g" /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 libportaudio2 ca-certificates; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    useradd --system --uid 10001 --gid audio --home-dir /var/lib/edge-ser --create-home \
        --shell /usr/sbin/nologin edge-ser; \
    mkdir -p /config /models; \
    chown edge-ser:audio /models
COPY --from=wheels /opt/edge-ser /opt/edge-ser
COPY docker/config.default.yaml /config/config.yaml
ENV PATH=/opt/edge-ser/bin:$PATH \
    EDGE_SER_MODELS=/models \
    EDGE_SER_HEALTH_FILE=/tmp/edge-ser/health.json \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# /config: config.yaml (read-only is enough). /models: extra model files (e.g. YAMNet's backbone) and
# model.adapt_state; the default model ships inside the package and needs neither.
VOLUME ["/config", "/models"]
USER edge-ser:audio
WORKDIR /var/lib/edge-ser
# `run` keeps the daemon's systemd notify protocol (READY, WATCHDOG) working without systemd and
# writes it to EDGE_SER_HEALTH_FILE; `health` turns it into the check's answer.
ENTRYPOINT ["/opt/edge-ser/bin/python", "-m", "edge_ser.container", "run", "--"]
CMD ["listen", "--config", "/config/config.yaml"]
# start-period: loading the model and opening the microphone (TimeoutStartSec= of the service).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["/opt/edge-ser/bin/python", "-m", "edge_ser.container", "health"]
STOPSIGNAL SIGTERM

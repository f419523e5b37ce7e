# An eclipse-mosquitto-compatible broker from Debian's mosquitto package, for machines that reach a
# Debian mirror but no image registry (the same paths and port as eclipse-mosquitto:2, so compose.yaml
# works with either):
#
#   docker build -f docker/mosquitto.Dockerfile --build-arg BASE=edge-ser/bookworm-base:local \
#       -t edge-ser/mosquitto:local docker
#   MOSQUITTO_IMAGE=edge-ser/mosquitto:local docker compose up -d
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ARG DEBIAN_MIRROR=""
ENV DEBIAN_FRONTEND=noninteractive
RUN set -eu; \
    if [ -n "$DEBIAN_MIRROR" ]; then \
        sed -i "s#http://deb.debian.org#${DEBIAN_MIRROR}#g" /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends mosquitto mosquitto-clients; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log; \
    chown -R mosquitto:mosquitto /mosquitto/data /mosquitto/log
COPY mosquitto.conf /mosquitto/config/mosquitto.conf
VOLUME ["/mosquitto/data", "/mosquitto/log"]
USER mosquitto
EXPOSE 1883
CMD ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]

#!/usr/bin/env bash
# Builds a Debian bookworm base image from Debian packages alone (debootstrap + docker import), for
# machines that reach a Debian mirror but no image registry. The Dockerfile takes it as BASE:
#
#   sudo apt install debootstrap docker.io
#   sudo scripts/container_base.sh                 # -> image edge-ser/bookworm-base:local
#   docker build --build-arg BASE=edge-ser/bookworm-base:local -t edge-ser .
#
# With a registry at hand none of this is needed: the Dockerfile's default BASE is
# debian:bookworm-slim. The root is made like that image (minbase, no docs, man pages or locales
# installed later, apt lists emptied), so both bases give the same runtime stage.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), SECURITY_MIRROR (default: the
# mirror's debian-security), ARCH (default: the host's, as dpkg names it; another one needs
# qemu-user-static and binfmt_misc), BASE_TAG (the image name).
set -euo pipefail
cd "$(dirname "$0")/.."

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Security updates sit beside the archive on deb.debian.org; a mirror elsewhere names its own.
security="${SECURITY_MIRROR:-${mirror%/debian}/debian-security}"
arch="${ARCH:-$(dpkg --print-architecture)}"
tag="${BASE_TAG:-edge-ser/bookworm-base:local}"
[ "$(id -u)" = 0 ] || { echo "container_base.sh: debootstrap needs root (run it with sudo)" >&2; exit 2; }
for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || { echo "container_base.sh: $tool not found: apt install debootstrap docker.io" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "container_base.sh: no Docker daemon answers (is dockerd running?)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
t0=$(date +%s)
echo "== debootstrap bookworm ($arch, minbase) from $mirror"
if ! debootstrap --variant=minbase --arch="$arch" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -20 "$work/debootstrap.log" >&2
    exit 1
fi

# The same trimming debian:bookworm-slim does: packages installed later leave out docs and locales.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
    "$mirror" "$mirror" "$security" >"$root/etc/apt/sources.list"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*.log
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
# Files a container gets from the runtime (bind mounts) must not be baked in.
: >"$root/etc/hostname"
rm -f "$root/etc/resolv.conf"

platform=()
# An image of another architecture says so, or Docker would run it as the host's (debootstrap's names
# match Docker's for amd64 and arm64).
[ "$arch" = "$(dpkg --print-architecture)" ] || platform=(--platform "linux/$arch")
tar --numeric-owner -C "$root" -c . | docker import "${platform[@]}" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$tag" >/dev/null
echo "== imported $tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}') in $(( $(date +%s) - t0 )) s"

#!/usr/bin/env bash
# Smoke test on an emulated Raspberry Pi OS 64-bit userland: Debian bookworm arm64 (Python 3.11,
# glibc 2.36) under qemu-user. Installs edge-ser with its aarch64 wheels and classifies a fixture.
#
#   sudo apt install qemu-user-static debootstrap      # once (Debian/Ubuntu host, any arch)
#   scripts/qemu_arm64_smoke.sh                         # prints the results and the time it took
#   scripts/qemu_arm64_smoke.sh cortex-a72              # only the named cores (each run takes minutes)
#
# No binfmt_misc or chroot is needed (containers often have neither): debootstrap --foreign only
# downloads the arm64 packages, dpkg-deb unpacks them, the host's pip installs the aarch64 wheels
# into a folder (--platform, nothing is built or run), and qemu-aarch64-static -L runs the arm64
# python3.11 against that root. Everything is kept under cache/qemu-arm64 (reused on a rerun).
#
# Two emulation artefacts are worked around (neither exists on a real Pi):
# - qemu-user shows the x86 host's /proc/cpuinfo, on which the cpuinfo library inside onnxruntime and
#   TFLite crashes (SIGSEGV at import): the root gets the /proc/cpuinfo of the emulated Pi CPU, which
#   qemu -L serves instead.
# - qemu's default `max` CPU advertises extensions that qemu 7.2 emulates wrongly: XNNPACK picked
#   them and YAMNet's embeddings came out as 1e11 garbage. So each run names the Pi's real core:
#   cortex-a53 (Pi 3, Zero 2 W), cortex-a72 (Pi 4, Pi 400, CM4), cortex-a76 (Pi 5, CM5); with
#   cortex-a72 the embeddings matched x86 to 0.06.
set -euo pipefail
cd "$(dirname "$0")/.."
cores=("${@:-cortex-a53 cortex-a72 cortex-a76}")
cores=" ${cores[*]} "
for c in $cores; do
    case $c in cortex-a53|cortex-a72|cortex-a76) ;; *) echo "unknown core $c (cortex-a53, cortex-a72, cortex-a76)" >&2; exit 2;; esac
done

root="${EDGE_SER_ARM64_ROOT:-$PWD/cache/qemu-arm64/root}"
site="$root/opt/edge-ser/site"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
py="$(cd "$(dirname "$(command -v python3)")" && pwd)/python3"  # absolute: the native run changes directory
[ -n "$qemu" ] || { echo "qemu-aarch64-static not found: apt install qemu-user-static" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "debootstrap not found: apt install debootstrap" >&2; exit 2; }

t0=$(date +%s)
if [ ! -x "$root/usr/bin/python3.11" ]; then
    echo "== arm64 bookworm userland (debootstrap --foreign, unpacked with dpkg-deb)"
    rm -rf "$root"
    mkdir -p "$root"
    debootstrap --foreign --arch=arm64 --variant=minbase --include=python3.11,libportaudio2 \
        bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log"; exit 1; }
    for deb in "$root"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$root"; done
fi
t1=$(date +%s)

echo "== edge-ser and its aarch64 wheels (manylinux_2_17..2_36, cp311)"
platforms=()
for n in $(seq 17 36); do platforms+=(--platform "manylinux_2_${n}_aarch64"); done
dist=$(mktemp -d)
"$py" -m pip wheel --quiet --no-deps --no-build-isolation -w "$dist" . >/dev/null
rm -rf "$site"
"$py" -m pip install --quiet --disable-pip-version-check --target "$site" --only-binary=:all: \
    --python-version 3.11 --implementation cp "${platforms[@]}" --platform manylinux2014_aarch64 \
    "$dist"/edge_ser-*.whl
rm -rf "$dist"
t2=$(date +%s)

repo=$PWD
weights="$repo/../shared/weights"
cpuinfo() {  # $1: CPU part number (0xd08 = Cortex-A72, 0xd0b = Cortex-A76), $2: features, $3: model
    mkdir -p "$root/proc"
    : >"$root/proc/cpuinfo"
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$2"
        printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 1\n\n' "$1"
    done >>"$root/proc/cpuinfo"
    printf 'Model\t\t: %s\n' "$3" >>"$root/proc/cpuinfo"
}
run() {  # $1: qemu CPU; the rest: python arguments. Runs outside the checkout so the wheel is used.
    local cpu=$1
    shift
    (cd "$root/opt" && PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 EDGE_SER_MODELS="$weights" \
        "$qemu" -cpu "$cpu" -L "$root" "$root/usr/bin/python3.11" "$@")
}
fixtures=("$repo/tests/fixtures/speech_angry_sad.wav" "$repo/tests/fixtures/silence.wav")
for pi in "cortex-a53 0xd03 Raspberry Pi 3 Model B" "cortex-a72 0xd08 Raspberry Pi 4 Model B" \
          "cortex-a76 0xd0b Raspberry Pi 5 Model B"; do
    read -r cpu part model <<<"$pi"
    [[ $cores == *" $cpu "* ]] || continue
    if [ "$cpu" != cortex-a76 ]; then feat="fp asimd evtstrm crc32 cpuid"; else
        feat="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"; fi
    cpuinfo "$part" "$feat" "$model"
    echo "== $model ($cpu) under qemu-user"
    ts=$(date +%s)
    run "$cpu" -c 'import platform, sys; print("python", sys.version.split()[0], platform.machine(), platform.libc_ver())'
    run "$cpu" -m edge_ser --version
    run "$cpu" -m edge_ser classify "${fixtures[@]}"
    echo "   ($(($(date +%s) - ts)) s)"
done
echo "== native ($(uname -m)) for comparison"
(cd /tmp && PYTHONPATH="$repo" "$py" -m edge_ser classify "${fixtures[@]}" 2>/dev/null)
t3=$(date +%s)
echo "== took: userland $((t1 - t0)) s, install $((t2 - t1)) s, classify runs $((t3 - t2)) s, total $((t3 - t0)) s"

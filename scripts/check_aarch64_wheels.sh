#!/usr/bin/env bash
# Checks that every runtime dependency of edge-ser (pyproject.toml [project].dependencies) installs
# from a binary wheel on Raspberry Pi OS 64-bit (Debian bookworm: aarch64, CPython 3.11, glibc 2.36),
# so `pip install edge-ser` on a Pi never has to compile anything.
#
# pip matches each platform tag exactly, so every manylinux_2_N_aarch64 a bookworm Pi accepts
# (N = 17..36, glibc 2.36) is passed, plus the legacy manylinux2014 alias (= manylinux_2_17).
# Step 1 checks each direct dependency alone (--no-deps) and names the wheel it resolves to;
# step 2 resolves the whole tree at once, so a transitive dependency without a wheel fails too.
#
# Usage: scripts/check_aarch64_wheels.sh [OUTPUT_FILE]   (needs PyPI; exit 1 if anything is missing)
# The committed result is bench/results/aarch64_wheels.txt. Wheels are kept in cache/aarch64_wheels.
set -uo pipefail
cd "$(dirname "$0")/.."

out="${1:-}"
dest="${EDGE_SER_WHEEL_CACHE:-cache/aarch64_wheels}"
mkdir -p "$dest"
py="${PYTHON:-python3}"

platforms=()
for n in $(seq 17 36); do platforms+=(--platform "manylinux_2_${n}_aarch64"); done
platforms+=(--platform manylinux2014_aarch64)
common=(download --disable-pip-version-check --only-binary=:all: --python-version 3.11
        --implementation cp "${platforms[@]}" --dest "$dest")

mapfile -t deps < <("$py" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))')

# The wheel files a pip download log names ("Saved X" / "File was already downloaded X").
wheels_in() {
    grep -oE '(Saved|File was already downloaded) [^ ]+\.whl' "$1" | sed -E 's#.* ##; s#.*/##' | sort -fu
}

report=$(mktemp)
log=$(mktemp)
fail=0
{
    echo "# aarch64 wheel check for Raspberry Pi OS bookworm (CPython 3.11, glibc 2.36)"
    echo "# command: scripts/check_aarch64_wheels.sh bench/results/aarch64_wheels.txt"
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  $("$py" -m pip --version | cut -d' ' -f1-2)"
    echo "# each: pip ${common[*]%% --dest*} --no-deps SPEC"
    echo
    echo "## direct runtime dependencies (--no-deps)"
} >>"$report"
for spec in "${deps[@]}"; do
    if "$py" -m pip "${common[@]}" --no-deps "$spec" >"$log" 2>&1; then
        printf 'OK       %-22s %s\n' "$spec" "$(wheels_in "$log" | tr '\n' ' ')" >>"$report"
    else
        printf 'MISSING  %-22s %s\n' "$spec" "$(grep -m1 ERROR "$log" || tail -n1 "$log")" >>"$report"
        fail=1
    fi
done
{
    echo
    echo "## whole dependency tree (transitive dependencies included)"
} >>"$report"
if "$py" -m pip "${common[@]}" "${deps[@]}" >"$log" 2>&1; then
    wheels_in "$log" | sed 's/^/OK       /' >>"$report"
else
    echo "FAILED   $(grep -m1 ERROR "$log" || tail -n1 "$log")" >>"$report"
    fail=1
fi
echo >>"$report"
if [ "$fail" = 0 ]; then
    echo "RESULT: every runtime dependency resolves to an aarch64 wheel" >>"$report"
else
    echo "RESULT: FAILED (see MISSING/FAILED lines)" >>"$report"
fi
cat "$report"
if [ -n "$out" ]; then mkdir -p "$(dirname "$out")" && cat "$report" >"$out"; fi
rm -f "$report" "$log"
exit "$fail"

#!/usr/bin/env bash
# Checks deploy/systemd/regauth.service offline (no running systemd needed):
#   1. `systemd-analyze verify` reports nothing: no unknown or misspelt directive (it only warns
#      about those, so any output fails here), and the ExecStart binary exists;
#   2. `systemd-analyze security --offline=true` rates the unit's exposure at most MAX (default 2.0).
#
#   scripts/verify-systemd.sh [BINARY]
#
# BINARY is put in ExecStart's place for the check (default: target/debug/regauth, or, when it
# is not built, a stand-in executable: the check is of the unit, not of the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing (Debian package systemd)" >&2; exit 1; }
max="${MAX:-2.0}"
unit=deploy/systemd/regauth.service
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin="${1:-target/debug/regauth}"
if [ ! -x "$bin" ]; then
  bin="$work/regauth"
  cp "$(type -P true)" "$bin"
fi
bin=$(realpath "$bin")
grep -q '^ExecStart=/usr/local/bin/regauth ' "$unit" || { echo "$unit: ExecStart no longer starts /usr/local/bin/regauth" >&2; exit 1; }
sed "s#^ExecStart=/usr/local/bin/regauth #ExecStart=$bin #" "$unit" >"$work/regauth.service"
out=$(systemd-analyze verify "$work/regauth.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify $unit:" >&2
  echo "$out" >&2
  exit 1
fi
exposure=$(systemd-analyze security --offline=true "$work/regauth.service" 2>&1 | sed -n 's/.*Overall exposure level for regauth.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || { echo "systemd-analyze security printed no exposure level" >&2; exit 1; }
echo "$unit: verify clean, exposure $exposure (at most $max)"
awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e <= m) }' || { echo "exposure $exposure is above $max" >&2; exit 1; }

#!/usr/bin/env bash
# Abuse and fault figures (issue 8): starts the release binary on 127.0.0.1 with a temporary
# key and config directory and prints, in one run, one table:
#
#   1. bcrypt checks run for a cold burst of 32 concurrent first logins of one user (goal 1),
#      counted from the server's CPU time and a per-check cost calibrated in the same run;
#   2. a cached user's p99 latency during a 200-attempt wrong-password storm at concurrency 16
#      (goal <= 50 ms), next to its p99 without the storm;
#   3. the storm's 429s (and 401s, 503s);
#   4. requests dropped by SIGTERM under load (goal 0);
#   5. p99 of steady signed-in traffic across login-cache expiries (goal <= 20 ms);
#   6. [issue 15, lockouts] who a failed login counts against: dora's right password after
#      wrong ones as LDAP name variants (`DORA`, ` dora`, `Dora `) against a slapd started
#      on loopback (goal 429: one budget), and a valid workload token after garbage tokens
#      from the same address (goal 200: garbage never locks it out). Needs slapd and openssl;
#      without them the row says skipped.
#   7. server CPU per request (utime+stime of the regauth process from /proc/PID/stat, before
#      and after) for a normal token request, the largest scope request the server accepts,
#      and the 16 000-action request of issue 15 (now refused), with the longest audit line.
#
# scripts/README.md says how each figure is measured.
#
#   scripts/abuse.sh [--bin PATH] [--only burst,storm,sigterm,expiry,lockout,parse]
#
# PATH defaults to target/release/regauth (built with `cargo build --release` if missing).
# Environment:
#   ABUSE_EXTRA_CONFIG  block-style YAML merged into every generated config, e.g.
#                       $'auth:\n  limits:\n    failures: 5\nserver:\n  shutdown_delay_seconds: 2'
#                       (the server refuses unknown keys, so only settings the binary knows)
#   ABUSE_RUST_LOG      the server's RUST_LOG (default warn,regauth::startup=info,regauth::identity=debug)
#   ABUSE_KEEP=1        keep the temporary directory (configs, server logs)
# Needs python3 (standard library only). Runs about 1-2 minutes; every loop is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="target/release/regauth"
ONLY="burst,storm,sigterm,expiry,lockout,parse"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 1; }
if [ ! -x "$BIN" ]; then
  if [ "$BIN" = "target/release/regauth" ]; then
    cargo build --release --quiet
  else
    echo "no executable at $BIN" >&2; exit 1
  fi
fi
exec python3 scripts/abuse.py --bin "$BIN" --only "$ONLY"

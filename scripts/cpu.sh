#!/usr/bin/env bash
# Server CPU per request: how far a token is above the floor of "an HTTP request plus one
# signature" (issue 16). Starts the release binary on loopback with a temporary key and
# config directory and, for several rounds, drives each row with wrk while reading the
# server's CPU time (utime + stime of all threads, /proc/PID/stat) before and after:
#
#   healthz      GET /healthz (the HTTP floor: routing, middleware, a small JSON answer)
#   anon+audit   anonymous ES256 GET /token, audit log on (the default, to stderr)
#   anon-audit   the same with audit.enabled: false
#   basic        GET /token with Basic credentials of a `users:` entry, answered from the
#                login cache (audit on)
#   anon-hs256   the anon+audit request on a server with an HS256 key: the same token path
#                with an HMAC (about 1 us) in place of the P-256 signature
#
# then times one P-256 signature with `openssl speed ecdsap256` and prints, per row, the
# median CPU per request over the rounds and token / (healthz + signature). It also splits
# anon+audit in two: the token path without its signature (anon-hs256 - healthz) and the
# P-256 signature as the server pays it (anon+audit - anon-hs256), next to openssl's loop.
#
#   scripts/cpu.sh [--bin PATH] [--rounds N] [--seconds S] [--connections C] [--perf FILE]
#
# Needs wrk, openssl and curl. Without --bin, $CARGO_TARGET_DIR/release/regauth (or
# target/release/regauth) is built if missing. A run takes about rounds × 5 × seconds plus
# 6 s for openssl. --perf FILE also records the anonymous audit-on row of the first round
# with `perf record -g` (cpu-clock) into FILE for `perf report -i FILE`.
#
# The machine is usually shared: the last lines name the load average. Compare ratios from
# one run, not absolute numbers across runs. --connections 64 measures a saturated server
# (no idle CPU between requests); the default 8 lets workers go idle (scripts/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="" ROUNDS=3 SECS=5 CONNS=8 PERF_OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --seconds) SECS="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    --perf) PERF_OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in wrk openssl curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
if [ -z "$BIN" ]; then
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/regauth"
  [ -x "$BIN" ] || cargo build --release --quiet --bin regauth
fi
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" keygen --alg es256 --out "$WORK/keys" >/dev/null
"$BIN" keygen --alg hs256 --out "$WORK/hmac" >/dev/null
HASH="$(printf 's3cret' | "$BIN" hash-password --cost 10)"
BASIC="Authorization: Basic $(printf 'alice:s3cret' | base64)"
TOKEN_PATH="/token?service=registry.test&scope=repository:x:pull"

# start NAME EXTRA_YAML [KEY_YAML]: starts a server, sets ADDR_<NAME> and PID_<NAME>.
start() {
  local name="$1" extra="$2" key="${3:-"{path: \"$WORK/keys/signing.key\"}"}"
  cat > "$WORK/$name.yaml" <<YAML
server: {listen: "127.0.0.1:0"}
key: $key
token: {services: [registry.test]}
users:
  alice: {password: "$HASH"}
$extra
YAML
  # The access log is off (RUST_LOG=warn): it is a line per request on every route but
  # /healthz and not part of the token path; the audit log goes to stderr, a file here.
  RUST_LOG="${CPU_RUST_LOG:-warn,regauth::server=info}" \
    "$BIN" serve --config "$WORK/$name.yaml" 2> "$WORK/$name.log" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 200); do grep -q "listening on" "$WORK/$name.log" && break; sleep 0.05; done
  local addr; addr="$(sed -n 's/.*listening on //p' "$WORK/$name.log" | head -1)"
  [ -n "$addr" ] || { echo "server $name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
  printf -v "ADDR_$name" '%s' "$addr"
  printf -v "PID_$name" '%s' "$pid"
}
start audit ""
start quiet "audit: {enabled: false}"
start hmac "" "{path: \"$WORK/hmac/signing.key\", algorithm: HS256}"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ="$(getconf CLK_TCK)"

# measure ROW SERVER PATH [HEADER]: one wrk run; appends "ROW us/request requests".
measure() {
  local row="$1" server="$2" path="$3" header="${4:-}"
  local addr pid; addr="ADDR_$server"; pid="PID_$server"
  addr="${!addr}" pid="${!pid}"
  local args=(-t1 -c"$CONNS" -d"${SECS}s") curl_args=(-s -o /dev/null -w '%{http_code}')
  [ -z "$header" ] || { args+=(-H "$header"); curl_args+=(-H "$header"); }
  # Warm up (the Basic row's first request runs bcrypt, later ones hit the cache).
  local code; code="$(curl "${curl_args[@]}" "http://$addr$path")"
  [ "$code" = 200 ] || { echo "$row: warm-up answered $code" >&2; exit 1; }
  local perf_pid=""
  if [ -n "$PERF_OUT" ] && [ "$row" = anon+audit ] && [ ! -e "$PERF_OUT" ]; then
    perf record -e cpu-clock -g -p "$pid" -o "$PERF_OUT" -- sleep "$SECS" 2>/dev/null &
    perf_pid=$!
  fi
  local t0 t1; t0="$(cpu_ticks "$pid")"
  wrk "${args[@]}" "http://$addr$path" > "$WORK/wrk.out"
  t1="$(cpu_ticks "$pid")"
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  if grep -q "Non-2xx" "$WORK/wrk.out"; then
    echo "$row: $(grep Non-2xx "$WORK/wrk.out")" >&2; exit 1
  fi
  local n; n="$(awk '/requests in/ {print $1}' "$WORK/wrk.out")"
  awk -v r="$row" -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" \
    'BEGIN {printf "%s %.2f %d\n", r, t / hz * 1e6 / n, n}' >> "$WORK/rows"
  tail -1 "$WORK/rows" | awk -v round="$ROUND" '{printf "round %s  %-11s %7.2f us/request (%d requests)\n", round, $1, $2, $3}'
}

echo "binary: $BIN"
echo "wrk -t1 -c$CONNS -d${SECS}s per row, $ROUNDS rounds; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$WORK/rows"
for ROUND in $(seq "$ROUNDS"); do
  measure healthz audit /healthz
  measure anon+audit audit "$TOKEN_PATH"
  measure anon-audit quiet "$TOKEN_PATH"
  measure basic audit "$TOKEN_PATH" "$BASIC"
  measure anon-hs256 hmac "$TOKEN_PATH"
done
# Sanity: the audit-on server wrote audit lines, the other none.
grep -q '"outcome":"issued"' "$WORK/audit.log" || { echo "no audit line written" >&2; exit 1; }
if grep -q '"outcome"' "$WORK/quiet.log"; then echo "audit off wrote audit lines" >&2; exit 1; fi

# One P-256 signature (OpenSSL's sign/s, as microseconds).
SIGN_US="$(openssl speed -seconds 3 ecdsap256 2>/dev/null \
  | awk '/256 bits ecdsa \(nistp256\)/ {printf "%.2f", 1e6 / $(NF-1)}')"
[ -n "$SIGN_US" ] || { echo "openssl speed printed no ecdsap256 line" >&2; exit 1; }

median() {
  awk -v r="$1" '$1 == r {print $2}' "$WORK/rows" | sort -n \
    | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
range() { awk -v r="$1" '$1 == r {print $2}' "$WORK/rows" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.1f-%.1f", lo, hi}'; }
HEALTHZ="$(median healthz)"
FLOOR="$(awk -v h="$HEALTHZ" -v s="$SIGN_US" 'BEGIN {printf "%.2f", h + s}')"
echo
echo "one P-256 signature (openssl speed ecdsap256): $SIGN_US us; floor = healthz + signature = $FLOOR us"
printf "%-12s %12s %14s %22s\n" row "median us" "range" "ratio to the floor"
for row in healthz anon+audit anon-audit basic anon-hs256; do
  m="$(median "$row")"
  if [ "$row" = healthz ] || [ "$row" = anon-hs256 ]; then ratio="-"; else
    ratio="$(awk -v m="$m" -v f="$FLOOR" 'BEGIN {printf "%.2f", m / f}')"; fi
  printf "%-12s %12s %14s %22s\n" "$row" "$m" "$(range "$row")" "$ratio"
done
ANON="$(median anon+audit)" HMAC="$(median anon-hs256)"
awk -v a="$ANON" -v m="$HMAC" -v h="$HEALTHZ" -v s="$SIGN_US" 'BEGIN {
  printf "\nanon+audit split by the anon-hs256 row (medians):\n"
  printf "  token path without its signature (anon-hs256 - healthz): %6.2f us\n", m - h
  printf "  P-256 signature in the server (anon+audit - anon-hs256): %6.2f us (%.2f x openssl'"'"'s loop)\n", a - m, (a - m) / s
}'
echo "machine: $(nproc) cores, load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

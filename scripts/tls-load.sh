#!/usr/bin/env bash
# HTTPS against plain HTTP: the release binary on loopback, anonymous ES256 tokens, wrk for a
# bounded time, four ways: keep-alive (TLS costs only record encryption) and
# `Connection: close` (every request is a new TCP connection and a full TLS handshake), each
# plain and over TLS (a P-256 certificate, TLS 1.3 as wrk's OpenSSL negotiates it).
#
#   scripts/tls-load.sh [SECONDS] [CONNECTIONS] [ROUNDS]     (needs wrk and openssl)
#
# Rounds alternate plain and TLS so drift on a shared machine hits both alike.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-8}"
CONNECTIONS="${2:-16}"
ROUNDS="${3:-2}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is missing" >&2; exit 1; }
cargo build --release --quiet
BIN="$PWD/target/release/regauth"
WORK="$(mktemp -d)"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

"$BIN" keygen --alg es256 --out "$WORK/keys" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

start() {  # start plain|tls
  local tls=""
  if [ "$1" = tls ]; then
    tls="  tls: {certificate: \"$WORK/tls.crt\", key: \"$WORK/tls.key\"}"
  fi
  cat > "$WORK/regauth.yaml" <<YAML
server:
  listen: "127.0.0.1:0"
$tls
key: {path: "$WORK/keys/signing.key"}
YAML
  RUST_LOG=warn,regauth::startup=info "$BIN" serve --config "$WORK/regauth.yaml" 2> "$WORK/log" &
  PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/log" && break; sleep 0.05; done
  ADDR="$(sed -n 's/.*listening on //p' "$WORK/log" | head -1)"
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

measure() {  # measure plain|tls keepalive|close -> requests/s
  local scheme=http extra=()
  [ "$1" = tls ] && scheme=https
  [ "$2" = close ] && extra=(-H "Connection: close")
  start "$1"
  local out
  out="$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "${extra[@]}" \
    "$scheme://$ADDR/token?service=registry.test&scope=repository:team/app:pull")"
  stop
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "$out" >&2
  fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}

for mode in keepalive close; do
  for round in $(seq "$ROUNDS"); do
    plain="$(measure plain "$mode")"
    tls="$(measure tls "$mode")"
    ratio="$(awk -v t="$tls" -v p="$plain" 'BEGIN {printf "%.2f", t / p}')"
    echo "$mode round $round: plain $plain req/s, TLS $tls req/s, TLS/plain $ratio"
  done
done

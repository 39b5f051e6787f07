#!/usr/bin/env bash
# Load test: the release binary on loopback, hammered by wrk for a bounded time.
# Prints requests/s, latency, and the server's memory before and after.
#
#   scripts/load.sh [SECONDS] [CONNECTIONS]      (needs wrk: apt-get install -y wrk)
#
# Numbers from one machine only mean something next to each other (e.g. ES256 vs RS256,
# anonymous vs cached login) in the same run.
#
# Comparing builds (say, before and after a change): set LOAD_BINS to NAME=PATH pairs and
# LOAD_ROUNDS (default 3). Each round runs every binary once on the anonymous ES256 case, in
# turn, so a machine that gets busier or quieter during the run shifts all of them alike; the
# last lines give each binary's median requests/s and its ratio to the first one.
#   LOAD_BINS="before=/tmp/old/regauth after=target/release/regauth" scripts/load.sh 10 32
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
CONNECTIONS="${2:-32}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
BIN="$PWD/target/release/regauth"
[ -n "${LOAD_BINS:-}" ] || cargo build --release --quiet
WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$1/status"; }
# The server's CPU time so far (user + system, all threads), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() {  # run NAME ALG [wrk args...]   (uses $BIN)
  local name="$1" alg="$2"; shift 2
  rm -rf "$WORK/keys" && "$BIN" keygen --alg "$alg" --out "$WORK/keys" >/dev/null
  local hash; hash="$(printf 's3cret' | "$BIN" hash-password --cost 10)"
  cat > "$WORK/regauth.yaml" <<YAML
server: {listen: "127.0.0.1:0"}
key: {path: "$WORK/keys/signing.key"}
users:
  alice: {password: "$hash"}
YAML
  RUST_LOG=warn,regauth::startup=info "$BIN" serve --config "$WORK/regauth.yaml" 2> "$WORK/log" &
  PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/log" && break; sleep 0.05; done
  local addr; addr="$(sed -n 's/.*listening on //p' "$WORK/log" | head -1)"
  local before; before="$(rss "$PID")"
  local ticks0; ticks0="$(cpu_ticks "$PID")"
  echo "== $name ($alg), ${SECONDS_PER_RUN}s, $CONNECTIONS connections; RSS before: $before"
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$@" \
    "http://$addr/token?service=registry.test&scope=repository:team/app:pull,push" \
    > "$WORK/wrk.out"
  grep -E "Requests/sec|Latency|50%|99%|Non-2xx" "$WORK/wrk.out"
  # Server CPU per request: less swayed than the rate by other work on a busy machine.
  local ticks1 requests; ticks1="$(cpu_ticks "$PID")"
  requests="$(awk '/requests in/ {print $1}' "$WORK/wrk.out")"
  CPU_US="$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {printf "%.1f", t / hz * 1e6 / n}')"
  echo "server CPU per request: $CPU_US us; RSS after: $(rss "$PID")"
  kill "$PID"; wait "$PID" 2>/dev/null || true
}

if [ -n "${LOAD_BINS:-}" ]; then
  : > "$WORK/rates"
  for round in $(seq "${LOAD_ROUNDS:-3}"); do
    for pair in $LOAD_BINS; do
      BIN="${pair#*=}"
      run "round $round: ${pair%%=*}" es256
      echo "${pair%%=*} $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out") $CPU_US" >> "$WORK/rates"
    done
  done
  median() {  # median NAME COLUMN
    awk -v n="$1" -v c="$2" '$1 == n {print $c}' "$WORK/rates" | sort -n \
      | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
  }
  echo "== medians over ${LOAD_ROUNDS:-3} rounds (anonymous, es256); ratios to the first binary"
  printf "%-12s %12s %7s %14s %7s\n" binary "requests/s" ratio "CPU us/request" ratio
  first_rate="" first_cpu=""
  for pair in $LOAD_BINS; do
    name="${pair%%=*}"
    rate="$(median "$name" 2)" cpu="$(median "$name" 3)"
    [ -n "$first_rate" ] || { first_rate="$rate"; first_cpu="$cpu"; }
    awk -v n="$name" -v r="$rate" -v fr="$first_rate" -v c="$cpu" -v fc="$first_cpu" \
      'BEGIN {printf "%-12s %12.0f %7.3f %14.1f %7.3f\n", n, r, r / fr, c, c / fc}'
  done
  exit 0
fi

run "anonymous" es256
run "anonymous" rs256
run "signed in (login cache)" es256 -H "Authorization: Basic $(printf 'alice:s3cret' | base64)"

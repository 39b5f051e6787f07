#!/usr/bin/env bash
# Instructions per request, counted by valgrind (callgrind): the same binary and requests
# give nearly the same counts whatever else the machine is doing (the token rows within
# about 1 %, /healthz within 2 %: background threads and timers vary a little), so a change
# on the token path can be measured where CPU time (scripts/cpu.sh) moves by ±10 % from
# one run to the next on a shared machine. It counts user-space instructions only: the
# kernel's socket work and what a cache or TLB miss costs are not in it (cpu.sh has them).
#
# For each row the release binary is started under callgrind on 127.0.0.1:0 with a
# temporary key and config directory (audit log on, to a file), and sent LOW and then, in a
# fresh process, HIGH requests on one keep-alive connection; (HIGH count - LOW count) /
# (HIGH - LOW) is what one request costs, start-up and shutdown cancelled out.
#
#   healthz      GET /healthz
#   anon-es256   anonymous GET /token (ES256 key)
#   anon-hs256   the same with an HS256 key (the token path with an HMAC for a signature)
#
# Then it lists the functions whose cost per request differs most between anon-es256 and
# healthz (self cost; `--inclusive` for inclusive cost).
#
#   scripts/instructions.sh [--bin PATH] [--low N] [--high N] [--top N] [--inclusive]
#
# Needs valgrind (callgrind_annotate) and python3. About half a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="" LOW=200 HIGH=2200 TOP=25 INCLUSIVE=no
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --low) LOW="$2"; shift 2 ;;
    --high) HIGH="$2"; shift 2 ;;
    --top) TOP="$2"; shift 2 ;;
    --inclusive) INCLUSIVE=yes; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in valgrind callgrind_annotate python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
[ "$HIGH" -gt "$LOW" ] || { echo "--high must be more than --low" >&2; exit 2; }
if [ -z "$BIN" ]; then
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/regauth"
  [ -x "$BIN" ] || cargo build --release --quiet --bin regauth
fi
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

WORK="$(mktemp -d)"
PID=""
cleanup() {
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" keygen --alg es256 --out "$WORK/es256" >/dev/null
"$BIN" keygen --alg hs256 --out "$WORK/hs256" >/dev/null
TOKEN_PATH="/token?service=registry.test&scope=repository:x:pull"

# run NAME KEY_YAML PATH COUNT: one callgrind profile of COUNT requests into $WORK/NAME.COUNT.
run() {
  local name="$1" key="$2" path="$3" count="$4" out="$WORK/$1.$4"
  cat > "$WORK/$name.yaml" <<YAML
server: {listen: "127.0.0.1:0", shutdown_delay_seconds: 0}
key: $key
token: {services: [registry.test]}
audit: {output: "$WORK/audit.log"}
YAML
  RUST_LOG=warn,regauth::server=info valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$BIN" serve --config "$WORK/$name.yaml" 2> "$WORK/$name.log" &
  PID=$!
  local addr=""
  for _ in $(seq 300); do
    addr="$(sed -n 's/.*listening on //p' "$WORK/$name.log" | head -1)"
    [ -n "$addr" ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "server $name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
  python3 - "$addr" "$path" "$count" <<'PY'
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=30)
for _ in range(int(sys.argv[3])):
    conn.request("GET", sys.argv[2])
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"{sys.argv[2]} answered {response.status}")
PY
  # SIGTERM: the server drains and exits; callgrind writes its profile at exit.
  kill -TERM "$PID"
  wait "$PID" || true
  PID=""
  [ -s "$out" ] || { echo "callgrind wrote no profile for $name" >&2; exit 1; }
}

ES256="{path: \"$WORK/es256/signing.key\"}"
HS256="{path: \"$WORK/hs256/signing.key\", algorithm: HS256}"
echo "binary: $BIN"
echo "instructions per request: (count at $HIGH requests - count at $LOW) / $((HIGH - LOW))"
for n in "$LOW" "$HIGH"; do
  run healthz "$ES256" /healthz "$n"
  run anon-es256 "$ES256" "$TOKEN_PATH" "$n"
  run anon-hs256 "$HS256" "$TOKEN_PATH" "$n"
done

python3 - "$WORK" "$LOW" "$HIGH" "$TOP" "$INCLUSIVE" <<'PY'
import re, subprocess, sys
work, low, high, top, inclusive = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "yes"
line = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(.*)$")

def profile(name, n):
    """Total and per-function counts of one profile."""
    args = ["callgrind_annotate", "--threshold=100"] + (["--inclusive=yes"] if inclusive else [])
    text = subprocess.run(args + [f"{work}/{name}.{n}"], capture_output=True, text=True, check=True).stdout
    total, functions = 0, {}
    for row in text.splitlines():
        m = line.match(row)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in row:
            total = count
            continue
        name_ = re.sub(r"\s*\[[^\]]*\]$", "", m.group(2)).strip()
        name_ = re.sub(r"^\S*?:(?=[^:])", "", name_, count=1) if name_.startswith(("???:", ".", "/")) else name_
        functions[name_] = max(functions.get(name_, 0), count) if inclusive else functions.get(name_, 0) + count
    return total, functions

per = {}
for name in ["healthz", "anon-es256", "anon-hs256"]:
    (t_low, f_low), (t_high, f_high) = profile(name, low), profile(name, high)
    per[name] = ((t_high - t_low) / (high - low),
                 {k: (f_high.get(k, 0) - f_low.get(k, 0)) / (high - low) for k in set(f_low) | set(f_high)})
print()
print(f"{'row':<12} {'instructions':>13} {'minus healthz':>14}")
for name, (total, _) in per.items():
    extra = "-" if name == "healthz" else f"{total - per['healthz'][0]:,.0f}"
    print(f"{name:<12} {total:>13,.0f} {extra:>14}")
token, health = per["anon-es256"][1], per["healthz"][1]
diff = {k: token.get(k, 0) - health.get(k, 0) for k in set(token) | set(health)}
kind = "inclusive" if inclusive else "self"
print(f"\nanon-es256 minus healthz, {kind} instructions per request, the {top} largest:")
for name, value in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
    print(f"{value:>10,.0f}  {name[:110]}")
PY

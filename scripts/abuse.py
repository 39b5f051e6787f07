#!/usr/bin/env python3
"""Measures regauth as an attacker and an operator would (issue 8); driven by scripts/abuse.sh.

Starts the given binary on 127.0.0.1 with a temporary key and config directory, runs five
bounded scenarios against it and prints one summary table. Python standard library only; the
HTTP client is a small raw-socket one so that every outcome (answered, reset, refused) is seen
exactly. See scripts/README.md for what each figure means.
"""

import argparse
import base64
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

PASSWORD = "abuse-s3cret"
SERVICE = "registry.test"
SCOPE = "repository:team/app:pull"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- HTTP over raw sockets


class Dropped(Exception):
    """The request was written, then the connection ended without a full response."""


class SendFailed(Exception):
    """Writing the request failed (the connection was already gone)."""


def basic(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


def token_path():
    return f"/token?service={SERVICE}&scope={SCOPE}"


class Conn:
    """One HTTP/1.1 connection. `request` returns (status, headers, body) or raises
    ConnectionRefusedError (connect), SendFailed, Dropped or socket.timeout."""

    def __init__(self, addr, timeout=10.0):
        self.addr = addr
        self.timeout = timeout
        self.sock = None
        self.buf = b""
        self.used = 0

    def connect(self):
        host, port = self.addr
        self.sock = socket.create_connection((host, port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.used = 0

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def closed_while_idle(self):
        """True when the server already closed this idle connection (EOF or RST pending):
        a careful client sees that before reusing it."""
        if self.sock is None:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def request(self, path, headers=(), close=False):
        if self.sock is None:
            self.connect()
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.addr[0]}:{self.addr[1]}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if close:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise
        except OSError as e:
            raise SendFailed(str(e)) from e
        self.used += 1
        try:
            return self._read_response()
        except socket.timeout:
            raise
        except (OSError, ValueError) as e:
            raise Dropped(str(e)) from e

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Dropped("EOF")
        self.buf += chunk

    def _read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        head_lines = head.decode("latin-1").split("\r\n")
        status = int(head_lines[0].split(" ", 2)[1])
        headers = {}
        for line in head_lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0"))
            while len(self.buf) < length:
                self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body


def one_request(addr, path, headers=(), timeout=10.0):
    c = Conn(addr, timeout)
    try:
        return c.request(path, headers, close=True)
    finally:
        c.close()


# ---------------------------------------------------------------- figures


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------- config and server


def parse_block_yaml(text):
    """A tiny subset of YAML: nested block mappings whose leaves are kept as raw text (so flow
    values like `{a: 1}` or `[x, y]` pass through). Enough to merge ABUSE_EXTRA_CONFIG."""
    root = {}
    stack = [(-1, root)]
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if line.startswith("- "):
            raise SystemExit(
                f"ABUSE_EXTRA_CONFIG line {n}: block lists are not supported, use [a, b]"
            )
        key, sep, value = line.partition(":")
        if not sep:
            raise SystemExit(f"ABUSE_EXTRA_CONFIG line {n}: expected 'key: value': {raw!r}")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        value = value.strip()
        if value:
            parent[key.strip()] = value
        else:
            child = {}
            parent[key.strip()] = child
            stack.append((indent, child))
    return root


def merge(base, extra):
    for k, v in extra.items():
        if isinstance(base.get(k), dict) and not isinstance(v, dict):
            raise SystemExit(
                f"ABUSE_EXTRA_CONFIG: write '{k}' in block style (one key per line), "
                "it is merged into the generated section"
            )
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def emit_yaml(d, indent=0):
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(" " * indent + f"{k}:")
            out.extend(emit_yaml(v, indent + 2))
        else:
            out.append(" " * indent + f"{k}: {v}")
    return out


class Server:
    """The binary under test, on 127.0.0.1:0, with its own config and log file."""

    def __init__(self, ctx, name, overrides):
        self.ctx = ctx
        self.name = name
        config = {
            "server": {"listen": '"127.0.0.1:0"'},
            "key": {"path": f'"{ctx.work}/keys/signing.key"'},
            "auth": {
                "cache_seconds": "60",
                "refresh_secret_file": f'"{ctx.work}/keys/refresh.secret"',
            },
            "users": {u: {"password": f'"{ctx.hash}"'} for u in ctx.users},
        }
        merge(config, parse_block_yaml(ctx.extra_config))
        merge(config, overrides)
        self.config_path = os.path.join(ctx.work, f"{name}.yaml")
        with open(self.config_path, "w") as f:
            f.write("\n".join(emit_yaml(config)) + "\n")
        self.log_path = os.path.join(ctx.work, f"{name}.log")
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, RUST_LOG=ctx.rust_log)
        self.proc = subprocess.Popen(
            [ctx.bin, "serve", "--config", self.config_path],
            cwd=ctx.work,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.pid = self.proc.pid
        self.addr = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = re.search(r"listening on (127\.0\.0\.1):(\d+)", self.log_text())
            if m:
                self.addr = (m.group(1), int(m.group(2)))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.addr is None:
            self.stop()
            sys.stderr.write(self.log_text())
            raise SystemExit(f"{name}: the server did not start (config {self.config_path})")

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def password_check_lines(self):
        return sum(1 for line in self.log_text().splitlines() if "password check" in line)

    def metrics(self):
        """Lines of /metrics that count password checks, as {name: value}; {} without one."""
        try:
            status, _, body = one_request(self.addr, "/metrics", timeout=5)
        except (OSError, Dropped, SendFailed):
            return {}
        if status != 200:
            return {}
        found = {}
        for line in body.decode("utf-8", "replace").splitlines():
            if line.startswith("#") or "password_check" not in line:
                continue
            parts = line.split()
            if len(parts) >= 2:
                try:
                    found[parts[0]] = float(parts[1])
                except ValueError:
                    pass
        return found

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def warm(addr, user, password=PASSWORD):
    status, _, body = one_request(addr, token_path(), [("Authorization", basic(user, password))])
    if status != 200:
        raise SystemExit(f"login of {user} failed: {status} {body[:200]!r}")


# ---------------------------------------------------------------- 1. cold burst


def run_in_threads(n, target, barrier=True):
    """Runs target(i, start_barrier) in n threads; joins them all."""
    bar = threading.Barrier(n) if barrier else None
    threads = [threading.Thread(target=target, args=(i, bar), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def burst(addr, user, password, n):
    """n concurrent logins on n pre-opened connections, released together."""
    statuses = []
    lock = threading.Lock()

    def one(i, bar):
        c = Conn(addr, timeout=60)
        try:
            c.connect()
        except OSError:
            pass
        bar.wait(10)
        try:
            s, _, _ = c.request(token_path(), [("Authorization", basic(user, password))])
        except (OSError, Dropped, SendFailed) as e:
            s = f"error {type(e).__name__}"
        finally:
            c.close()
        with lock:
            statuses.append(s)

    t0 = time.monotonic()
    run_in_threads(n, one)
    return statuses, time.monotonic() - t0


def settle_cpu(pid):
    """CPU seconds once the server has gone quiet (two equal readings 100 ms apart)."""
    last = cpu_seconds(pid)
    for _ in range(20):
        time.sleep(0.1)
        now = cpu_seconds(pid)
        if now == last:
            return now
        last = now
    return last


def scenario_burst(ctx, rows):
    srv = Server(ctx, "burst", {})
    try:
        addr = srv.addr
        time.sleep(0.3)
        # Calibration: distinct users, one wrong password each, sequential and spaced out, so
        # each request certainly runs exactly one bcrypt and no limiter counts twice.
        cal_users = [u for u in ctx.users if u.startswith("cal")]
        before = settle_cpu(srv.pid)
        t0 = time.monotonic()
        cal_status = {}
        for i, u in enumerate(cal_users):
            s, _, _ = one_request(addr, token_path(), [("Authorization", basic(u, f"wrong-{i}"))])
            cal_status[s] = cal_status.get(s, 0) + 1
            time.sleep(0.05)
        cal_wall = time.monotonic() - t0
        per_check = (settle_cpu(srv.pid) - before) / len(cal_users)
        # Cost of a request that needs no bcrypt (cached login), to subtract.
        warm(addr, "alice")
        before = settle_cpu(srv.pid)
        cached_statuses, _ = burst(addr, "alice", PASSWORD, ctx.burst)
        per_cached = (settle_cpu(srv.pid) - before) / ctx.burst
        # The cold burst.
        metrics_before = srv.metrics()
        lines_before = srv.password_check_lines()
        before = settle_cpu(srv.pid)
        statuses, wall = burst(addr, "burst", PASSWORD, ctx.burst)
        used = settle_cpu(srv.pid) - before
        metrics_after = srv.metrics()
        lines_after = srv.password_check_lines()
    finally:
        srv.stop()
    checks = (used - ctx.burst * per_cached) / max(per_check - per_cached, 1e-9)
    codes = count(statuses)
    rows.append(
        (
            f"1. bcrypt checks, cold burst of {ctx.burst} first logins",
            f"{checks:.1f}",
            "1",
            f"server CPU {used * 1000:.0f} ms / {per_check * 1000:.1f} ms per check "
            f"(calibrated: {len(cal_users)} wrong passwords, {cal_status}, {cal_wall:.1f} s); "
            f"cached request {per_cached * 1000:.2f} ms CPU; burst wall {wall:.2f} s; "
            f"statuses {codes}",
        )
    )
    if metrics_after:
        delta = {k: v - metrics_before.get(k, 0) for k, v in metrics_after.items()}
        rows.append(("   /metrics change over the burst", fmt_dict(delta), "1", ""))
    if lines_after or lines_before:
        rows.append(
            ("   'password check' log lines", str(lines_after - lines_before), "1", "")
        )


def count(items):
    out = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: str(kv[0])))


def fmt_dict(d):
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


# ---------------------------------------------------------------- 2./3. storm


def probe(addr, user, stop, interval, deadline):
    """Signed-in requests of a cached user on one keep-alive connection, every `interval`;
    returns (start, latency) pairs in seconds and the non-200 statuses."""
    lat, bad = [], []
    c = Conn(addr, timeout=30)
    auth = [("Authorization", basic(user, PASSWORD))]
    while not stop.is_set() and time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            s, _, _ = c.request(token_path(), auth)
        except (OSError, Dropped, SendFailed) as e:
            bad.append(type(e).__name__)
            c.close()
            continue
        lat.append((t0, time.monotonic() - t0))
        if s != 200:
            bad.append(s)
        stop.wait(interval)
    c.close()
    return lat, bad


def scenario_storm(ctx, rows):
    srv = Server(ctx, "storm", {})
    try:
        addr = srv.addr
        warm(addr, "alice")
        # Baseline: the probe alone.
        stop = threading.Event()
        base_lat = [x for _, x in probe(addr, "alice", stop, 0.005, time.monotonic() + 3)[0]]
        # The storm: wrong passwords for one user, `concurrency` connections, `attempts` total.
        attempts = {"sent": 0}
        statuses = []
        lock = threading.Lock()
        storm_deadline = time.monotonic() + ctx.storm_seconds

        def attacker(i, bar):
            c = Conn(addr, timeout=60)
            auth = [("Authorization", basic("victim", f"guess-{i}"))]
            while time.monotonic() < storm_deadline:
                with lock:
                    if attempts["sent"] >= ctx.storm_attempts:
                        break
                    attempts["sent"] += 1
                try:
                    s, _, _ = c.request(token_path(), auth)
                except (OSError, Dropped, SendFailed) as e:
                    s = f"error {type(e).__name__}"
                    c.close()
                with lock:
                    statuses.append(s)
            c.close()

        result = {}

        def run_probe():
            result["lat"], result["bad"] = probe(
                addr, "alice", stop, 0.005, time.monotonic() + ctx.storm_seconds + 5
            )

        stop.clear()
        p = threading.Thread(target=run_probe, daemon=True)
        p.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        run_in_threads(ctx.storm_concurrency, attacker, barrier=False)
        t1 = time.monotonic()
        storm_wall = t1 - t0
        stop.set()
        p.join(40)
    finally:
        srv.stop()
    # Only probe requests sent while the storm ran.
    lat = [x for start, x in result.get("lat", []) if t0 <= start <= t1]
    codes = count(statuses)
    rows.append(
        (
            f"2. cached user's p99 during a {ctx.storm_attempts}-attempt storm",
            ms(percentile(lat, 99)),
            "<= 50 ms",
            f"baseline p99 {ms(percentile(base_lat, 99))} ({len(base_lat)} requests); "
            f"storm p50 {ms(percentile(lat, 50))}, max {ms(max(lat) if lat else float('nan'))}, "
            f"{len(lat)} probe requests during the storm, probe non-200: "
            f"{count(result.get('bad', []))}",
        )
    )
    rows.append(
        (
            f"3. 429s in the storm (concurrency {ctx.storm_concurrency})",
            str(codes.get(429, 0)),
            "",
            f"401: {codes.get(401, 0)}, 503: {codes.get(503, 0)}, all: {codes}; "
            f"{len(statuses)} attempts in {storm_wall:.1f} s "
            f"({len(statuses) / max(storm_wall, 1e-9):.1f}/s)",
        )
    )


# ---------------------------------------------------------------- 4. SIGTERM under load


def scenario_sigterm(ctx, rows):
    srv = Server(ctx, "sigterm", {})
    addr = srv.addr
    warm(addr, "alice")
    auth = [("Authorization", basic("alice", PASSWORD))]
    lock = threading.Lock()
    tally = {}
    term_at = {"t": None}
    done = threading.Event()
    client_deadline = {"t": time.monotonic() + ctx.load_before_term + ctx.clients_after_term}

    def add(key, n=1):
        with lock:
            tally[key] = tally.get(key, 0) + n

    def phase():
        return "after" if term_at["t"] is not None else "before"

    def keepalive(i, bar):
        c = Conn(addr, timeout=10)
        while not done.is_set() and time.monotonic() < client_deadline["t"]:
            if c.sock is not None and c.used > 0 and c.closed_while_idle():
                add("ka closed while idle (seen before reuse)")
                c.close()
            if c.sock is None:
                try:
                    c.connect()
                except ConnectionRefusedError:
                    add("connect refused")
                    done.wait(0.02)
                    continue
                except OSError as e:
                    add(f"connect error {e.errno}")
                    done.wait(0.02)
                    continue
            try:
                s, h, _ = c.request(token_path(), auth)
                add(f"answered {phase()} SIGTERM")
                add(f"status {s}")
                if h.get("connection", "").lower() == "close":
                    add("ka Connection: close announced")
            except (Dropped, SendFailed):
                add("DROPPED keep-alive (request sent, no response)")
                c.close()
            except socket.timeout:
                add("timed out keep-alive")
                c.close()
        c.close()

    def per_request(i, bar):
        while not done.is_set() and time.monotonic() < client_deadline["t"]:
            c = Conn(addr, timeout=10)
            try:
                c.connect()
            except ConnectionRefusedError:
                add("connect refused")
                done.wait(0.02)
                continue
            except OSError as e:
                add(f"connect error {e.errno}")
                done.wait(0.02)
                continue
            try:
                s, _, _ = c.request(token_path(), auth, close=True)
                add(f"answered {phase()} SIGTERM")
                add(f"status {s}")
            except (Dropped, SendFailed):
                add("DROPPED new connection (accepted, request sent, no response)")
            except socket.timeout:
                add("timed out new connection")
            finally:
                c.close()

    threads = [
        threading.Thread(target=keepalive, args=(i, None), daemon=True)
        for i in range(ctx.term_keepalive)
    ]
    threads += [threading.Thread(target=per_request, args=(0, None), daemon=True)]
    for t in threads:
        t.start()
    time.sleep(ctx.load_before_term)
    term_at["t"] = time.monotonic()
    client_deadline["t"] = term_at["t"] + ctx.clients_after_term
    srv.proc.send_signal(signal.SIGTERM)
    exit_after, killed = None, False
    while time.monotonic() < term_at["t"] + ctx.kill_after:
        if srv.proc.poll() is not None:
            exit_after = time.monotonic() - term_at["t"]
            break
        time.sleep(0.01)
    if exit_after is None:
        srv.proc.kill()
        srv.proc.wait(5)
        killed = True
    # Clients see the refused connects that follow the exit, then stop.
    time.sleep(0.3)
    done.set()
    for t in threads:
        t.join(15)
    srv.log.close()
    drops = sum(v for k, v in tally.items() if k.startswith("DROPPED"))
    exit_text = "killed after 30 s" if killed else f"exit {srv.proc.returncode} after {exit_after:.2f} s"
    rows.append(
        (
            "4. requests dropped on SIGTERM under load",
            str(drops),
            "0",
            f"{ctx.term_keepalive} keep-alive loops + 1 new-connection loop, SIGTERM after "
            f"{ctx.load_before_term:g} s; {exit_text}; " + fmt_dict(tally),
        )
    )


# ---------------------------------------------------------------- 5. cache expiry


def scenario_expiry(ctx, rows):
    srv = Server(ctx, "expiry", {"auth": {"cache_seconds": str(ctx.cache_seconds)}})
    try:
        addr = srv.addr
        warm(addr, "alice")
        lock = threading.Lock()
        service_lat, sched_lat, bad = [], [], []
        period = 1.0 / ctx.steady_rate
        start = time.monotonic() + 0.2
        end = start + ctx.steady_seconds

        def worker(i, bar):
            c = Conn(addr, timeout=30)
            auth = [("Authorization", basic("alice", PASSWORD))]
            mine_s, mine_q, mine_bad = [], [], []
            slot = start + i * period / ctx.steady_concurrency
            while slot < end and time.monotonic() < end + 5:
                now = time.monotonic()
                if slot > now:
                    time.sleep(slot - now)
                t0 = time.monotonic()
                try:
                    s, _, _ = c.request(token_path(), auth)
                    if s != 200:
                        mine_bad.append(s)
                except (OSError, Dropped, SendFailed) as e:
                    mine_bad.append(type(e).__name__)
                    c.close()
                t1 = time.monotonic()
                mine_s.append(t1 - t0)
                mine_q.append(t1 - slot)
                slot += period
            c.close()
            with lock:
                service_lat.extend(mine_s)
                sched_lat.extend(mine_q)
                bad.extend(mine_bad)

        run_in_threads(ctx.steady_concurrency, worker, barrier=False)
    finally:
        srv.stop()
    slow = sum(1 for x in service_lat if x > 0.020)
    rows.append(
        (
            f"5. signed-in p99 across cache expiries ({ctx.cache_seconds} s cache)",
            ms(percentile(service_lat, 99)),
            "<= 20 ms",
            f"{len(service_lat)} requests, {ctx.steady_concurrency} connections x "
            f"{ctx.steady_rate:g}/s for {ctx.steady_seconds:g} s; p50 "
            f"{ms(percentile(service_lat, 50))}, max {ms(max(service_lat) if service_lat else float('nan'))}, "
            f"{slow} over 20 ms; p99 from schedule (queueing included) "
            f"{ms(percentile(sched_lat, 99))}; non-200: {count(bad)}",
        )
    )


# ---------------------------------------------------------------- 6. lockouts [issue 15, limit]
#
# Who a failed login counts against (issue 15 item 5). Two outcomes, printed as rows:
#   a. LDAP name variants: wrong passwords as `DORA`, ` dora`, `Dora ` against a real slapd
#      (started here on loopback if /usr/sbin/slapd exists), then dora's right password:
#      429 means the variants shared dora's budget (a bypass would answer 200);
#   b. workload tokens from one address: garbage tokens (unsigned, foreign key, unknown kid)
#      until they are refused with 429, then a valid token: 200 means garbage never locked
#      the valid one out (the old `oidc` key answered 429).
# Kept apart from the other scenarios: its own servers, its own helpers (prefix `lockout_`).

LOCKOUT_BASE = "dc=example,dc=org"
LOCKOUT_SEED = """\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: cn=svc,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: svc
userPassword: svc-secret

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: uid=dora,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: dora
cn: Dora
sn: D
userPassword: dora-pw
"""
LOCKOUT_ISSUER = "https://ci.abuse.test"


def lockout_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lockout_slapd(work):
    """(process, port) of a seeded slapd on 127.0.0.1, or None without slapd."""
    if not (os.path.exists("/usr/sbin/slapd") and os.path.exists("/usr/sbin/slapadd")):
        return None
    root = os.path.join(work, "slapd")
    os.makedirs(os.path.join(root, "db"))
    conf = os.path.join(root, "slapd.conf")
    with open(conf, "w") as f:
        f.write(
            "include /etc/ldap/schema/core.schema\n"
            "include /etc/ldap/schema/cosine.schema\n"
            "include /etc/ldap/schema/inetorgperson.schema\n"
            f"pidfile {root}/slapd.pid\n"
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            f'database mdb\nsuffix "{LOCKOUT_BASE}"\n'
            f'rootdn "cn=admin,{LOCKOUT_BASE}"\nrootpw admin-secret\n'
            f"directory {root}/db\nmaxsize 10485760\n"
            "access to attrs=userPassword by anonymous auth by * none\n"
            f'access to * by dn.exact="cn=svc,{LOCKOUT_BASE}" read by self read by * none\n'
        )
    seed = os.path.join(root, "seed.ldif")
    with open(seed, "w") as f:
        f.write(LOCKOUT_SEED)
    subprocess.run(
        ["/usr/sbin/slapadd", "-f", conf, "-l", seed], check=True, capture_output=True
    )
    port = lockout_free_port()
    proc = subprocess.Popen(
        ["/usr/sbin/slapd", "-h", f"ldap://127.0.0.1:{port}/", "-d", "0", "-f", conf],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("lockout: slapd did not start")


def lockout_b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def lockout_rsa_key(work, name):
    """A new RSA key (PEM path) and its JWK (RS256)."""
    path = os.path.join(work, f"{name}.pem")
    subprocess.run(
        ["openssl", "genrsa", "-out", path, "2048"], check=True, capture_output=True
    )
    modulus = subprocess.run(
        ["openssl", "rsa", "-in", path, "-noout", "-modulus"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip().split("=", 1)[1]
    jwk = {
        "kty": "RSA",
        "kid": "k1",
        "alg": "RS256",
        "use": "sig",
        "n": lockout_b64(bytes.fromhex(modulus)),
        "e": "AQAB",
    }
    return path, jwk


def lockout_token(key_path, kid, claims, sign=True):
    header = lockout_b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode())
    payload = lockout_b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}"
    if not sign:
        return f"{signing_input}.{lockout_b64(b'not-a-signature')}"
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", key_path],
        input=signing_input.encode(),
        check=True,
        capture_output=True,
    ).stdout
    return f"{signing_input}.{lockout_b64(signature)}"


def lockout_status(addr, user, password):
    status, _, _ = one_request(addr, token_path(), [("Authorization", basic(user, password))])
    return status


def scenario_lockout(ctx, rows):
    limits = {"failures": "3", "backoff_seconds": "60"}
    # a. name variants against a directory
    directory = lockout_slapd(ctx.work)
    if directory is None:
        rows.append(("6a. LDAP name variants share one budget", "skipped", "429", "no slapd"))
    else:
        proc, port = directory
        password_file = os.path.join(ctx.work, "svc.password")
        with open(password_file, "w") as f:
            f.write("svc-secret\n")
        srv = Server(
            ctx,
            "lockout-ldap",
            {
                "auth": {"cache_seconds": "0", "limits": dict(limits)},
                "ldap": {
                    "url": f'"ldap://127.0.0.1:{port}"',
                    "bind_dn": f'"cn=svc,{LOCKOUT_BASE}"',
                    "bind_password_file": f'"{password_file}"',
                    "base_dn": f'"ou=people,{LOCKOUT_BASE}"',
                },
            },
        )
        try:
            before = lockout_status(srv.addr, "DORA", "dora-pw")
            wrong = [
                (name, lockout_status(srv.addr, name, "wrong"))
                for name in ["DORA", " dora", "Dora "]
            ]
            right = lockout_status(srv.addr, "dora", "dora-pw")
        finally:
            srv.stop()
            proc.kill()
            proc.wait(5)
        rows.append(
            (
                "6a. dora's right password after 3 wrong ones as name variants",
                str(right),
                "429",
                f"'DORA' with the right password first: {before}; wrong passwords: "
                + ", ".join(f"{n!r} {s}" for n, s in wrong)
                + f"; auth.limits.failures {limits['failures']}",
            )
        )
    # b. garbage workload tokens vs a valid one, all from 127.0.0.1
    if shutil.which("openssl") is None:
        rows.append(("6b. garbage tokens vs a valid one", "skipped", "200", "no openssl"))
        return
    key, jwk = lockout_rsa_key(ctx.work, "issuer")
    stranger, _ = lockout_rsa_key(ctx.work, "stranger")
    jwks_path = os.path.join(ctx.work, "jwks.json")
    with open(jwks_path, "w") as f:
        json.dump({"keys": [jwk]}, f)
    now = int(time.time())

    def claims(sub):
        return {"iss": LOCKOUT_ISSUER, "aud": SERVICE, "sub": sub, "iat": now, "exp": now + 600}

    srv = Server(
        ctx,
        "lockout-federation",
        {
            "auth": {"cache_seconds": "0", "limits": dict(limits)},
            "federation": f'[{{issuer: "{LOCKOUT_ISSUER}", jwks_file: "{jwks_path}", '
            f"audiences: [{SERVICE}]}}]",
        },
    )
    try:
        garbage = [
            lockout_token(key, "k1", claims("job-1"), sign=False),
            lockout_token(stranger, "k1", claims("job-1")),
            lockout_token(key, "no-such-kid", claims("job-2")),
            lockout_token(key, "k1", claims("job-2"), sign=False),
            lockout_token(stranger, "k1", claims("job-3")),
        ]
        garbage_statuses = [lockout_status(srv.addr, "oidc", t) for t in garbage]
        valid = lockout_status(srv.addr, "oidc", lockout_token(key, "k1", claims("job-1")))
    finally:
        srv.stop()
    rows.append(
        (
            "6b. a valid workload token after garbage tokens from one address",
            str(valid),
            "200",
            f"garbage tokens answered {garbage_statuses} (429 = the garbage budget is locked); "
            f"auth.limits.failures {limits['failures']}",
        )
    )

# ---------------------------------------------------------------- end of 6. lockouts

# ---------------------------------------------------------------- 6. scope parsing (issue 15)
#
# Kept apart from the login scenarios above: server CPU per request for a normal token
# request, the largest scope request the server accepts, and the issue's 16 000-action
# request (refused now), each sent PARSE_REPEATS times on one keep-alive connection.

PARSE_REPEATS = 200
# regauth's limits (src/http/limits.rs, src/token/scope.rs), to build the largest accepted request.
MAX_QUERY_BYTES = 32 * 1024
MAX_SCOPES = 64
MAX_ACTIONS = 16


def distinct_actions(n, width=0):
    """n distinct lowercase actions (a, b, ..., z, aa, ...), each padded to `width` letters
    with a leading run of `x`s when given."""
    out = []
    for i in range(n):
        word = ""
        while True:
            word += chr(ord("a") + i % 26)
            i //= 26
            if i == 0:
                break
            i -= 1
        out.append(word.rjust(width, "x") if width else word)
    return ",".join(out)


def largest_accepted_query():
    """MAX_SCOPES scopes of MAX_ACTIONS distinct 10-letter actions each, with names as long as
    the query limit leaves room for (at most 255 bytes)."""
    actions = distinct_actions(MAX_ACTIONS, 10)
    head = f"service={SERVICE}"
    fixed = len(head) + MAX_SCOPES * len(f"&scope=repository:team-00/:{actions}")
    name_len = min(255 - len("team-00/"), (MAX_QUERY_BYTES - fixed) // MAX_SCOPES)
    scopes = "".join(
        f"&scope=repository:team-{i:02d}/{'n' * name_len}:{actions}" for i in range(MAX_SCOPES)
    )
    return head + scopes


def cpu_per_request(srv, path, n):
    """(CPU seconds per request, statuses) for n requests of `path` on one connection."""
    c = Conn(srv.addr, timeout=30)
    statuses = []
    before = settle_cpu(srv.pid)
    try:
        for i in range(n):
            if c.sock is None:
                c.connect()
            s, _, _ = c.request(path, close=(i == n - 1))
            statuses.append(s)
    except (OSError, Dropped, SendFailed) as e:
        statuses.append(f"error {type(e).__name__}")
    finally:
        c.close()
    return (settle_cpu(srv.pid) - before) / n, count(statuses)


def scenario_parse(ctx, rows):
    audit = os.path.join(ctx.work, "parse-audit.log")
    srv = Server(ctx, "parse", {"audit": {"enabled": "true", "output": f'"{audit}"'}})
    try:
        time.sleep(0.3)
        largest = largest_accepted_query()
        attack = f"service={SERVICE}&scope=repository:team/app:{distinct_actions(16000)}"
        cases = [
            ("normal (1 scope, pull)", f"service={SERVICE}&scope={SCOPE}"),
            (f"largest accepted ({len(largest) / 1024:.1f} KiB, "
             f"{MAX_SCOPES} scopes x {MAX_ACTIONS} actions)", largest),
            (f"16 000 distinct actions ({len(attack) / 1024:.1f} KiB)", attack),
        ]
        measured = []
        for name, query in cases:
            # One unmeasured request first, so every case starts warm.
            one_request(srv.addr, f"/token?{query}", timeout=30)
            per, statuses = cpu_per_request(srv, f"/token?{query}", PARSE_REPEATS)
            measured.append((name, per, statuses))
        time.sleep(0.3)  # the audit writer writes every 100 ms
        with open(audit, "rb") as f:
            lines = f.read().splitlines()
    finally:
        srv.stop()
    normal = measured[0][1]
    for i, (name, per, statuses) in enumerate(measured):
        rows.append(
            (
                f"7{'abc'[i]}. server CPU per request: {name}",
                f"{per * 1e6:.0f} us",
                "16 000 actions refused, cost near normal" if i == 2 else "",
                f"{PARSE_REPEATS} requests on one connection, statuses {statuses}; "
                f"{per / max(normal, 1e-9):.1f} x normal",
            )
        )
    longest = max((len(line) for line in lines), default=0)
    truncated = sum(1 for line in lines if b'"truncated":true' in line)
    rows.append(
        (
            "7d. longest audit line over these requests",
            f"{longest} B",
            "<= 8192",
            f"{len(lines)} lines; "
            f"{truncated} marked truncated",
        )
    )


# ---------------------------------------------------------------- main


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True)
    ap.add_argument(
        "--only",
        default="burst,storm,sigterm,expiry,lockout,parse",
        help="comma-separated scenarios: burst, storm, sigterm, expiry, lockout, parse",
    )
    args = ap.parse_args()

    ctx = Ctx()
    ctx.bin = os.path.abspath(args.bin)
    ctx.extra_config = os.environ.get("ABUSE_EXTRA_CONFIG", "")
    ctx.rust_log = os.environ.get(
        "ABUSE_RUST_LOG", "warn,regauth::startup=info,regauth::identity=debug"
    )
    ctx.burst = 32
    ctx.storm_attempts = 200
    ctx.storm_concurrency = 16
    ctx.storm_seconds = 60
    ctx.term_keepalive = 8
    ctx.load_before_term = 3.0
    ctx.clients_after_term = 15.0
    ctx.kill_after = 30.0
    ctx.cache_seconds = 2
    ctx.steady_concurrency = 8
    ctx.steady_rate = 20.0  # requests per second per connection
    ctx.steady_seconds = 10.0
    ctx.users = ["alice", "victim", "burst"] + [f"cal{i}" for i in range(1, 11)]

    ctx.work = tempfile.mkdtemp(prefix="regauth-abuse-")
    try:
        subprocess.run(
            [ctx.bin, "keygen", "--alg", "es256", "--out", os.path.join(ctx.work, "keys")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        ctx.hash = subprocess.run(
            [ctx.bin, "hash-password", "--cost", "10"],
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        rows = []
        t0 = time.monotonic()
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        scenarios = {
            "burst": scenario_burst,
            "storm": scenario_storm,
            "expiry": scenario_expiry,
            "sigterm": scenario_sigterm,
            "lockout": scenario_lockout,
            "parse": scenario_parse,
        }
        for name in wanted:
            if name not in scenarios:
                raise SystemExit(f"unknown scenario {name!r}")
            print(f"... {name}", file=sys.stderr, flush=True)
            scenarios[name](ctx, rows)
        total = time.monotonic() - t0
        load = open("/proc/loadavg").read().split()[:3]
        print()
        print(f"regauth abuse figures  ({ctx.bin})")
        width = max(len(r[0]) for r in rows)
        print(f"{'figure'.ljust(width)}  {'value':>10}  goal")
        for name, value, goal, detail in rows:
            print(f"{name.ljust(width)}  {value:>10}  {goal}")
            if detail:
                for line in textwrap.wrap(detail, 100):
                    print(f"      {line}")
        print(
            f"machine: nproc={os.cpu_count()} (available {len(os.sched_getaffinity(0))}), "
            f"loadavg {' '.join(load)}, bcrypt cost 10, run {total:.0f} s"
            + (", extra config: yes" if ctx.extra_config.strip() else "")
        )
    finally:
        if os.environ.get("ABUSE_KEEP") == "1":
            print(f"kept {ctx.work}", file=sys.stderr)
        else:
            shutil.rmtree(ctx.work, ignore_errors=True)


if __name__ == "__main__":
    main()

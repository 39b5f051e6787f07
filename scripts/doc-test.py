#!/usr/bin/env python3
"""Runs the shell blocks of the documentation, so a documented command cannot rot.

Every ```sh block in README.md and docs/*.md carries a marker on the line before it (blank
lines between are allowed):

    <!-- doc-test: GROUP -->                         run it, as part of GROUP
    <!-- doc-test: GROUP expect-fail="TEXT" -->      run it; it must fail and print TEXT
    <!-- doc-test: skip reason="..." -->             not run here, and the reason says why
    <!-- doc-test: output -->                        (before any other block) what the sh block
                                                     before it prints: each line must appear in
                                                     its output, `…` standing for any text

Blocks of one group run in document order, each in its own `bash -euo pipefail`, all in one
fresh empty directory (the "empty directory" a document starts in), with the regauth binary
under test first on PATH and podman's storage, configuration and credentials kept inside that
directory. Background processes a block starts (`regauth serve ... &`) keep running for the
blocks after it and are killed when the group ends. An unmarked sh block is an error: every
command a reader is meant to copy is either run or skipped with a reason.

    scripts/doc-test.py [--bin PATH] [--only GROUP[,GROUP]] [--list] [--keep] [FILE...]

PATH defaults to target/debug/regauth. Each block may take at most --timeout seconds (120).
Prints one line per block and a closing 'N passed, N failed, N skipped' line; exit 1 when a
block failed or a marker is missing or malformed.
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>[A-Za-z0-9_-]*)")


class Block:
    def __init__(self, path, line, group, code, expect_fail=None, reason=None):
        self.path, self.line, self.group, self.code = path, line, group, code
        self.expect_fail, self.reason = expect_fail, reason
        self.expected_output = []

    def missing_output(self, output):
        """The expected output lines the actual output lacks (`…` matches any text)."""
        actual = output.splitlines()

        def found(expected):
            pieces = [p for p in expected.strip().split("…")]
            pattern = ".*".join(re.escape(p) for p in pieces)
            return any(re.search(pattern, line) for line in actual)

        return [e for e in self.expected_output if e.strip() and not found(e)]

    def where(self):
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_marker(body):
    """'GROUP k="v" ...' -> (GROUP, {k: v}); raises ValueError on anything else."""
    words = shlex.split(body)
    if not words:
        raise ValueError("empty doc-test marker")
    group, options = words[0], {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or key not in ("expect-fail", "reason"):
            raise ValueError(f"unknown doc-test option {word!r}")
        options[key] = value
    if group == "skip" and not options.get("reason"):
        raise ValueError('a skipped block needs reason="..."')
    return group, options


def blocks_of(path):
    """The sh blocks of one Markdown file, with their markers; errors for unmarked blocks."""
    lines = path.read_text().splitlines()
    blocks, errors = [], []
    marker, marker_line = None, 0
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            marker, marker_line = m.group("body"), i + 1
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            indent, info = fence.group("indent"), fence.group("info")
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            start = i - len(body)
            if info == "sh":
                if marker is None:
                    errors.append(f"{path.relative_to(ROOT)}:{start}: sh block without a doc-test marker")
                else:
                    try:
                        group, options = parse_marker(marker)
                        blocks.append(Block(path, start, group, "\n".join(body) + "\n",
                                            options.get("expect-fail"), options.get("reason")))
                    except ValueError as e:
                        errors.append(f"{path.relative_to(ROOT)}:{marker_line}: {e}")
            elif marker is not None and marker.strip() == "output":
                if blocks and blocks[-1].path == path:
                    blocks[-1].expected_output += body
                else:
                    errors.append(f"{path.relative_to(ROOT)}:{marker_line}: an output block with no sh block before it")
            elif marker is not None:
                errors.append(f"{path.relative_to(ROOT)}:{marker_line}: doc-test marker before a {info or 'plain'} block (only sh blocks run)")
            marker = None
            i += 1
            continue
        if line.strip():
            if marker is not None:
                errors.append(f"{path.relative_to(ROOT)}:{marker_line}: doc-test marker not followed by a block")
            marker = None
        i += 1
    return blocks, errors


def isolated_env(workdir, bin_dir):
    """The environment blocks run in: the binary under test first on PATH, podman kept inside
    the work directory (vfs storage, no systemd), no REGAUTH_ settings from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGAUTH_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    state = workdir / ".doc-test"
    state.mkdir()
    (state / "storage.conf").write_text(
        '[storage]\ndriver = "vfs"\n'
        f'graphroot = "{state}/containers"\nrunroot = "{state}/run"\n')
    (state / "containers.conf").write_text(
        '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    env["CONTAINERS_STORAGE_CONF"] = str(state / "storage.conf")
    env["CONTAINERS_CONF"] = str(state / "containers.conf")
    env["BUILDAH_ISOLATION"] = "chroot"
    # podman keeps its credentials under XDG_RUNTIME_DIR. (Not REGISTRY_AUTH_FILE: the
    # distribution registry reads every REGISTRY_* variable as a setting.)
    runtime = state / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env["DOCKER_CONFIG"] = str(state / "docker")
    return env


def kill_group(pgid):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def run_group(name, blocks, bin_dir, timeout, keep):
    """Runs one group's blocks in order; returns a list of (block, ok, detail, output)."""
    results = []
    tmp = tempfile.mkdtemp(prefix=f"doc-test-{name}-")
    try:
        workdir = Path(tmp)
        env = isolated_env(workdir, bin_dir)
        groups = []
        try:
            for n, block in enumerate(blocks):
                out_path = workdir / ".doc-test" / f"block-{n}.out"
                started = time.monotonic()
                with open(out_path, "wb") as out:
                    # A session of its own: background processes stay in its process group,
                    # killed when the group ends; output goes to a file so a background
                    # process holding it open cannot stall the runner.
                    proc = subprocess.Popen(
                        ["bash", "-euo", "pipefail", "-c", block.code],
                        cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                    groups.append(proc.pid)
                    try:
                        code = proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        kill_group(proc.pid)
                        code = None
                output = out_path.read_text(errors="replace")
                took = time.monotonic() - started
                if code is None:
                    ok, detail = False, f"timed out after {timeout} s"
                elif block.expect_fail is not None:
                    ok = code != 0 and block.expect_fail in output
                    detail = (f"failed as expected ({took:.1f} s)" if ok else
                              f"expected a failure printing {block.expect_fail!r}, got exit {code}")
                else:
                    ok, detail = code == 0, f"exit {code} ({took:.1f} s)"
                missing = block.missing_output(output) if code is not None else []
                if ok and missing:
                    ok, detail = False, "the documented output differs: missing " + "; ".join(repr(m) for m in missing)
                results.append((block, ok, detail, output))
                if not ok:
                    break
        finally:
            for pgid in groups:
                kill_group(pgid)
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--bin", type=Path, default=ROOT / "target" / "debug" / "regauth")
    parser.add_argument("--only", default="")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--keep", action="store_true", help="keep each group's directory")
    args = parser.parse_args()
    files = [f.resolve() for f in args.files] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks, errors = [], []
    for path in files:
        found, problems = blocks_of(path)
        blocks += found
        errors += problems
    for e in errors:
        print(f"error: {e}")
    groups = {}
    for block in blocks:
        if block.group != "skip":
            groups.setdefault(block.group, []).append(block)
    skipped = [b for b in blocks if b.group == "skip"]
    if args.list:
        for name, members in groups.items():
            print(f"{name}: " + ", ".join(b.where() for b in members))
        for b in skipped:
            print(f"skip {b.where()}: {b.reason}")
        return 1 if errors else 0
    only = {g for g in args.only.split(",") if g}
    binary = args.bin.resolve()
    if not os.access(binary, os.X_OK):
        print(f"error: no executable regauth at {binary} (cargo build, or --bin PATH)")
        return 1
    # The binary must be found as `regauth`.
    bin_dir = Path(tempfile.mkdtemp(prefix="doc-test-bin-"))
    (bin_dir / "regauth").symlink_to(binary)
    passed = failed = 0
    for name, members in groups.items():
        if only and name not in only:
            continue
        started = time.monotonic()
        results = run_group(name, members, bin_dir, args.timeout, args.keep)
        for block, ok, detail, output in results:
            print(f"{'ok  ' if ok else 'FAIL'} {name} {block.where()}: {detail}")
            if ok:
                passed += 1
            else:
                failed += 1
                print("---- block ----\n" + block.code + "---- output ----\n" + output + "---------------")
        not_run = len(members) - len(results)
        if not_run:
            failed += not_run
            print(f"FAIL {name}: {not_run} later block(s) not run")
        print(f"group {name}: {time.monotonic() - started:.1f} s")
    for b in skipped:
        print(f"skip {b.where()}: {b.reason}")
    failed += len(errors)
    print(f"{passed} passed, {failed} failed, {len(skipped)} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Protocol fidelity of the MCP gateway, by the official conformance suite.

Runs the server scenarios of `@modelcontextprotocol/conformance` (pinned in
tests/mcp/node/package.json) twice for each protocol revision: directly
against an upstream that implements them (everything.py, with the official
Python SDK), and through `govctl serve`'s `/mcp` in front of that upstream,
reached through a proxy that adds the agent's and the user's tokens (the
suite cannot send them). The gateway must pass every scenario the upstream
passes: a scenario that passes directly and fails through the gateway makes
this exit 1.

usage: run.py [GOVCTL] [--spec-version V]... [--scenario S]... [--out DIR]
              [--tolerate SCENARIO]...

GOVCTL defaults to $GOVCTL, then $CARGO_TARGET_DIR (or
~/.cache/agent-governance/target)/debug/govctl. The suite's own output and
results (checks.json per scenario) go to DIR (default: a temporary folder,
removed after a run without regressions), never to stdout.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
NODE_DIR = ROOT / "tests" / "mcp" / "node"
SPEC_VERSIONS = ["2025-11-25", "2026-07-28"]
AGENT = "conformance-agent"
ROLE = "conformance_tester"
PLACEHOLDER = '"http://127.0.0.1:8940/mcp"'

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(NODE_DIR))
import npm_ci  # noqa: E402
from proxy import Proxy  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ok(url, proc, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within {timeout} s")


def default_govctl():
    if os.environ.get("GOVCTL"):
        return os.environ["GOVCTL"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "agent-governance" / "target"))
    return str(target / "debug" / "govctl")


class Stack:
    """The upstream, the gateway in front of it and the token-adding proxy."""

    def __init__(self, govctl, work):
        self.procs = []
        self.work = work
        self.proxy = None
        try:
            self.up(govctl)
        except BaseException:
            self.stop()
            raise

    def up(self, govctl):
        work = self.work
        port = free_port()
        self.upstream_url = f"http://127.0.0.1:{port}/mcp"
        self.start(
            "upstream", [sys.executable, str(HERE / "everything.py"), "--port", str(port)],
            f"http://127.0.0.1:{port}/healthz",
        )
        policies = work / "policies"
        shutil.copytree(HERE / "policies", policies)
        registry = policies / "registry.yaml"
        text = registry.read_text()
        if PLACEHOLDER not in text:
            raise RuntimeError(f"{registry} has no dev url {PLACEHOLDER} to replace")
        registry.write_text(text.replace(PLACEHOLDER, f'"{self.upstream_url}"'))
        data = work / "data"
        gport = free_port()
        self.start(
            "gateway",
            [govctl, "serve", "--listen", f"127.0.0.1:{gport}", "--data-dir", str(data),
             "--policy", str(policies), "--environment", "dev"],
            f"http://127.0.0.1:{gport}/healthz",
        )

        def token(*argv):
            out = subprocess.run([govctl, *argv, "--data-dir", str(data)], capture_output=True, text=True, check=True)
            return out.stdout.strip()

        agent = token("agent", "token", AGENT)
        user = token("user", "token", "conformance-tester", "--role", ROLE)
        self.proxy = Proxy(("127.0.0.1", 0), f"http://127.0.0.1:{gport}", agent, user)
        self.gateway_url = f"{self.proxy.url}/mcp"

    def start(self, name, argv, health):
        log = open(self.work / f"{name}.log", "w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_ok(health, proc, name)

    def stop(self):
        if self.proxy:
            self.proxy.stop()
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
RUNNING = re.compile(r"^=== Running scenario: (?P<scenario>\S+) ===$", re.M)


class Outcome:
    """One scenario's result: passed when no check failed (warnings pass)."""

    def __init__(self, checks=None, note=None):
        self.checks = {c.get("id"): c for c in checks or []}
        failed = [c for c in self.checks.values() if c.get("status") == "FAILURE"]
        self.passed = checks is not None and not failed
        self.why = note or "; ".join(f"{c.get('id')}: {c.get('errorMessage') or 'failed'}" for c in failed)

    def weaker_than(self, other):
        """The checks that succeeded in `other` and only warned or were skipped here."""
        return [
            f"{cid}: {c.get('status')}{' - ' + c['errorMessage'] if c.get('errorMessage') else ''}"
            for cid, c in self.checks.items()
            if c.get("status") in ("WARNING", "SKIPPED", "INFO")
            and other.checks.get(cid, {}).get("status") == "SUCCESS"
        ]


def run_suite(node, url, spec, out, scenarios, timeout_ms):
    """Runs the suite's server scenarios against `url`; its output goes to
    `out`.log, its results under `out`. Returns {scenario: Outcome}."""
    out.mkdir(parents=True)
    argv = [str(node), str(npm_ci.CONFORMANCE), "server", "--url", url, "--suite", "all",
            "--spec-version", spec, "-o", str(out), "--timeout", str(timeout_ms)]
    runs = [argv + ["--scenario", s] for s in scenarios] if scenarios else [argv]
    with open(f"{out}.log", "w") as log:
        for a in runs:
            subprocess.run(a, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=NODE_DIR, timeout=600)
    ran = RUNNING.findall(Path(f"{out}.log").read_text())
    results = {s: Outcome(note="no results written (the scenario crashed or timed out)") for s in ran}
    for d in sorted(out.iterdir()):
        m = RESULT_DIR.match(d.name)
        if m and (d / "checks.json").exists():
            results[m.group("scenario")] = Outcome(json.loads((d / "checks.json").read_text()))
    return results


def main():
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("govctl", nargs="?", default=default_govctl())
    args.add_argument("--spec-version", action="append", dest="specs", help=f"default: {' and '.join(SPEC_VERSIONS)}")
    args.add_argument("--scenario", action="append", dest="scenarios", help="run only these (default: every server scenario of the revision)")
    args.add_argument("--out", type=Path, help="keep the suite's output and results here")
    args.add_argument("--timeout-ms", type=int, default=10000, help="per scenario (default 10000)")
    args.add_argument("--tolerate", action="append", default=[], metavar="SCENARIO",
                      help="report, but do not fail on, this scenario failing only through the gateway")
    args.add_argument("--known-gaps", type=Path, metavar="FILE",
                      help="tolerate the scenarios listed in FILE (one per line, then why; # comments); "
                           "a listed scenario that no longer fails through the gateway fails the run, "
                           "so that the list stays exact")
    opts = args.parse_args()
    if opts.known_gaps:
        for line in opts.known_gaps.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                opts.tolerate.append(line.split()[0])
    specs = opts.specs or SPEC_VERSIONS

    started = time.time()
    node = npm_ci.ensure()
    out = opts.out or Path(tempfile.mkdtemp(prefix="mcp-conformance-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mcp-conformance-stack-"))
    table = {}
    stack = None
    try:
        stack = Stack(opts.govctl, work)
        for spec in specs:
            direct = run_suite(node, stack.upstream_url, spec, out / f"{spec}-upstream", opts.scenarios, opts.timeout_ms)
            gateway = run_suite(node, stack.gateway_url, spec, out / f"{spec}-gateway", opts.scenarios, opts.timeout_ms)
            table[spec] = (direct, gateway)
    finally:
        if stack:
            stack.stop()
        for name in ("upstream.log", "gateway.log"):
            if (work / name).exists():
                shutil.copy(work / name, out / name)
        shutil.rmtree(work, ignore_errors=True)

    missing = Outcome(note="not run")
    regressions, tolerated, weaker = [], [], []
    for spec, (direct, gateway) in table.items():
        names = list(dict.fromkeys([*direct, *gateway]))
        width = max([len(n) for n in names] + [8])
        print(f"\nMCP conformance, server scenarios, spec version {spec}")
        print(f"{'scenario'.ljust(width)} | upstream | gateway")
        print(f"{'-' * width}-+----------+--------")
        for name in names:
            up, gw = direct.get(name, missing), gateway.get(name, missing)
            softer = gw.weaker_than(up) if gw.passed else []
            gw_mark = ("pass*" if softer else "pass") if gw.passed else "FAIL"
            print(f"{name.ljust(width)} | {('pass' if up.passed else 'FAIL').ljust(8)} | {gw_mark}")
            if softer:
                weaker.append((spec, name, "; ".join(softer)))
            if up.passed and not gw.passed:
                (tolerated if name in opts.tolerate else regressions).append((spec, name, gw.why))
        ok_up = sum(1 for r in direct.values() if r.passed)
        ok_gw = sum(1 for r in gateway.values() if r.passed)
        print(f"{spec}: the upstream passes {ok_up} of {len(direct)} scenarios directly; "
              f"through the gateway {ok_gw} of {len(gateway)} pass")

    def show(title, rows):
        print(f"\n{title}:")
        for spec, name, why in rows:
            print(f"  [{spec}] {name}: {why[:400]}")

    if weaker:
        show("pass*: passing through the gateway with checks that only warn or are skipped there", weaker)
    if tolerated:
        show("Tolerated (--tolerate): failing only through the gateway", tolerated)
    stale = sorted(set(opts.tolerate) - {n for _, n, _ in tolerated})
    if stale:
        print(f"\nTolerated but not failing through the gateway: {', '.join(stale)}")
        if opts.known_gaps:
            print(f"  remove them from {opts.known_gaps}: the gateway passes them now")
    if regressions:
        show("Failing through the gateway although the upstream passes them", regressions)
    if regressions or opts.out:
        print(f"\nResults and logs: {out}")
    print(f"Conformance comparison took {time.time() - started:.0f} s; "
          f"{len(regressions)} scenario(s) regress through the gateway.")
    if not regressions and not opts.out:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if regressions or (stale and opts.known_gaps) else 0


if __name__ == "__main__":
    sys.exit(main())

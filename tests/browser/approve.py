#!/usr/bin/env python3
"""An approval in a real browser, end to end against `govctl serve`.

Starts `govctl serve` on a fresh data directory, lets the treasury agent ask
for a transfer (which waits for a human), opens the approver's link from the
server's terminal in headless Chromium (Debian's chromium and
chromium-driver), pastes an approver token and clicks Approve, then checks
that the agent's poll says `approved` and that the approved call is allowed
once. Prints `1 passed, 0 failed` on success.

usage: approve.py GOVCTL_BINARY [--screenshot PATH]
"""

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

TRANSFER = {
    "tool_id": "transfer_funds",
    "arguments": {"amount": 250.0, "currency": "EUR", "to_account": "DE89370400440532013000"},
    "reasoning": "supplier invoice INV-2291 is due today",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_for(what, check, timeout=20):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def main():
    args = argparse.ArgumentParser()
    args.add_argument("govctl")
    args.add_argument("--screenshot")
    opts = args.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        log = Path(tmp) / "serve.log"
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        def govctl(*argv):
            out = subprocess.run(
                [opts.govctl, *argv, "--data-dir", str(data)],
                check=True, capture_output=True, text=True,
            )
            return out.stdout.strip()

        server = subprocess.Popen(
            [opts.govctl, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
            stdout=subprocess.DEVNULL, stderr=open(log, "w"),
        )
        try:
            wait_for("govctl serve", lambda: _up(base))
            agent = govctl("agent", "token", "agent-treasury-1")
            tom = govctl("user", "token", "tom", "--role", "treasury_operator")
            alice = govctl("approver", "token", "alice", "--group", "treasury-approvers")
            auth = {"Authorization": f"Bearer {agent}", "X-On-Behalf-Of": tom}

            status, pending = request(f"{base}/v1/authorize", TRANSFER, auth)
            assert status == 202 and pending["decision"] == "pending_approval", pending
            approval_id = pending["approval_id"]
            link = wait_for(
                "the approver link on the terminal",
                lambda: (re.findall(r"http://\S+/v1/reviews/[0-9a-f]{64}", log.read_text()) or [None])[-1],
            )

            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for flag in (
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1100,900", f"--user-data-dir={tmp}/chromium",
            ):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            try:
                driver.get(link)
                page = driver.page_source
                for shown in ("agent-treasury-1", "tom", "transfer_funds", "DE89370400440532013000"):
                    assert shown in page, f"the page shows {shown}"
                approve = driver.find_element(By.CSS_SELECTOR, "form[action$='/approve']")
                approve.find_element(By.NAME, "approver_token").send_keys(alice)
                approve.find_element(By.NAME, "comment").send_keys("invoice INV-2291 checked")
                if opts.screenshot:
                    driver.save_screenshot(opts.screenshot)
                approve.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                wait_for("the answer page", lambda: "Approved" in driver.title)
            finally:
                driver.quit()

            poll = f"{base}/v1/approvals/{approval_id}"
            wait_for(
                "the agent's poll to say granted",
                lambda: request(poll, headers={"Authorization": f"Bearer {agent}"})[1].get("status") == "granted",
            )
            grant = dict(TRANSFER, approval_id=approval_id)
            status, allowed = request(f"{base}/v1/authorize", grant, auth)
            assert status == 200 and allowed["reasons"][0]["code"] == "approved_call", allowed
            status, again = request(f"{base}/v1/authorize", grant, auth)
            assert status == 403 and again["reasons"][0]["code"] == "grant_already_used", again
        except BaseException:
            sys.stderr.write(log.read_text())
            raise
        finally:
            server.terminate()
            server.wait(timeout=10)
    print("1 passed, 0 failed")


def _up(base):
    try:
        return request(f"{base}/healthz")[0] == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Approvers sign in with a real OpenID Connect provider, in headless Chromium.

Starts the certified `oidc-provider` package (tests/browser/provider, on the
Node 22 of tests/mcp/node) and `govctl serve --oidc-issuer …` on fresh data
directories, then:

1. alice (treasury-approvers) opens the inbox, is sent to the provider,
   signs in, comes back to the inbox, sees the waiting transfer with the
   time left, opens it, approves it (no token pasted), and the agent's
   approved call is allowed once;
2. the inbox lists what she answered; she signs out (at the provider too),
   and the inbox sends her to sign in again;
3. carol (another group) signs in and is refused the transfer's page and
   its answer;
4. a forged session (another key, or alice's claims with another group and
   the old signature) and an expired one (signed with the server's own
   key) are refused, while a valid one made the same way is accepted.

Prints `1 passed, 0 failed` on success.

usage: signin.py GOVCTL_BINARY
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "mcp" / "node"))
from approve import TRANSFER, _up, free_port, request, wait_for  # noqa: E402
import npm_ci  # noqa: E402

PROVIDER = HERE / "provider"
USERS = {"alice": ["treasury-approvers", "policy-reviewers"], "carol": ["incident-commanders"]}


def provider_packages():
    """`npm ci` in tests/browser/provider unless it matches its lock file."""
    stamp = PROVIDER / "node_modules" / ".package-lock.sha256"
    want = hashlib.sha256((PROVIDER / "package-lock.json").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PROVIDER, check=True,
                   env=dict(os.environ, npm_config_update_notifier="false"))
    stamp.write_text(want + "\n")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_cookie(key, claims):
    """An HS256 JWT, as the server signs sessions."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def get(url, cookie=None):
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser(tmp, name):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
        "--window-size=1100,900", f"--user-data-dir={tmp}/chromium-{name}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def sign_in_at_provider(driver, who):
    """The provider's login page: any password is accepted for a known login."""
    wait_for("the provider's login page", lambda: driver.find_elements(By.NAME, "login"))
    driver.find_element(By.NAME, "login").send_keys(who)
    driver.find_element(By.NAME, "password").send_keys("any password")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def reviewed_policies(tmp):
    """The example policies, with changes reviewed in dev, where its agents run."""
    policies = tmp / "reviewed"
    shutil.copytree(HERE.parent.parent / "infra" / "policies", policies)
    registry = policies / "registry.yaml"
    text = registry.read_text()
    assert text.count("\nroles:\n") == 1, "the example registry changed"
    registry.write_text(text.replace("\nroles:\n", "\nchange_review: { environments: [dev] }\nroles:\n"))
    return policies


def propose_high_risk_change(govctl, tmp):
    """bob proposes an OAuth client for agent-ops-1: high risk, so it waits."""
    policies = tmp / "policies"
    shutil.copytree(tmp / "reviewed", policies)
    registry = policies / "registry.yaml"
    text = registry.read_text()
    ops = "    description: Triages alerts and opens incidents\n"
    assert text.count(ops) == 1, "the example registry changed"
    registry.write_text(text.replace(ops, ops + "    oauth_clients: [ops-console]\n"))
    out = govctl("policy", "propose", str(policies), "-m", "ops console", "--author", "bob")
    assert "(high risk)" in out and "waiting for review" in out, out
    return next(line.split()[1] for line in out.splitlines() if line.startswith("change "))


def main():
    govctl_bin = sys.argv[1]
    node = npm_ci.ensure()
    provider_packages()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        port, idp_port = free_port(), free_port()
        base, issuer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{idp_port}"
        secret = tmp / "client-secret"
        secret.write_text("s3cret-for-tests\n")
        log, idp_log = tmp / "serve.log", tmp / "provider.log"

        def govctl(*argv):
            return subprocess.run([govctl_bin, *argv, "--data-dir", str(data)],
                                  check=True, capture_output=True, text=True).stdout.strip()

        idp = subprocess.Popen(
            [str(node), str(PROVIDER / "provider.mjs"), str(idp_port), str(secret),
             f"{base}/v1/signin/callback", f"{base}/v1/inbox", json.dumps(USERS)],
            stdout=open(idp_log, "w"), stderr=subprocess.STDOUT,
        )
        server = subprocess.Popen(
            [govctl_bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
             "--oidc-issuer", issuer, "--oidc-client-id", "agent-governance",
             "--oidc-client-secret-file", str(secret), "--oidc-scope", "groups",
             "--policy", str(reviewed_policies(tmp))],
            stdout=subprocess.DEVNULL, stderr=open(log, "w"),
        )
        try:
            wait_for("the provider", lambda: "listening" in idp_log.read_text())
            wait_for("govctl serve", lambda: _up(base))
            agent = govctl("agent", "token", "agent-treasury-1")
            tom = govctl("user", "token", "tom", "--role", "treasury_operator")
            auth = {"Authorization": f"Bearer {agent}", "X-On-Behalf-Of": tom}
            status, pending = request(f"{base}/v1/authorize", TRANSFER, auth)
            assert status == 202, pending
            approval_id = pending["approval_id"]

            # 1. alice signs in, sees the transfer in her inbox, approves it.
            driver = browser(tmp, "alice")
            try:
                driver.get(f"{base}/v1/inbox")
                sign_in_at_provider(driver, "alice")
                wait_for("the inbox", lambda: driver.title == "Approvals inbox")
                page = driver.page_source
                assert "Signed in as <b>alice</b>" in page, page
                assert "transfer_funds" in page and "min" in page and "left" in page, page
                cookies = {c["name"]: c for c in driver.get_cookies()}
                assert cookies["agov_session"]["httpOnly"], cookies
                assert cookies["agov_session"]["sameSite"] == "Lax", cookies
                driver.find_element(By.LINK_TEXT, "transfer_funds").click()
                wait_for("the approval page", lambda: driver.title == "Approve this call?")
                assert "DE89370400440532013000" in driver.page_source
                assert "approver_token" not in driver.page_source, "signed in: no token to paste"
                form = driver.find_element(By.CSS_SELECTOR, "form[action$='/approve']")
                form.find_element(By.NAME, "comment").send_keys("invoice INV-2291 checked")
                form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                wait_for("the answer page", lambda: "Approved" in driver.title)
                assert "approved by alice" in driver.page_source, driver.page_source

                # The agent's call is allowed once, under the policy it was approved under.
                poll = f"{base}/v1/approvals/{approval_id}"
                wait_for("the grant", lambda: request(poll, headers={"Authorization": f"Bearer {agent}"})[1]
                         .get("status") == "granted")
                grant = dict(TRANSFER, approval_id=approval_id)
                status, allowed = request(f"{base}/v1/authorize", grant, auth)
                assert status == 200 and allowed["reasons"][0]["code"] == "approved_call", allowed
                # A high-risk policy change bob proposed waits for her, as a
                # member of policy-reviewers, in the same inbox.
                change = propose_high_risk_change(govctl, tmp)
                driver.get(f"{base}/v1/inbox")
                reviews = driver.page_source.split("Policy changes to review")[1].split("Answered by you")[0]
                assert change in reviews and "high risk" in reviews, reviews
                driver.find_element(By.CSS_SELECTOR, f"a[href='/v1/changes/{change}']").click()
                wait_for("the change page", lambda: driver.title == "Activate this policy change?")
                assert "oauth_clients gains ops-console" in driver.page_source
                driver.find_element(By.CSS_SELECTOR, "form[action$='/approve'] button").click()
                wait_for("the change's answer page", lambda: driver.title == "Approved and activated")
                shown = json.loads(govctl("policy", "change", change, "--json"))
                assert shown["status"] == "activated" and shown["reviewed_by"] == "alice", shown

                # 2. Her answers are listed; she signs out, at the provider too.
                driver.get(f"{base}/v1/inbox")
                answered = driver.page_source.split("Answered by you")[1]
                assert "transfer_funds" in answered and "approved" in answered, answered
                driver.find_element(By.CSS_SELECTOR, "form[action='/v1/signout'] button").click()
                wait_for("the signed-out page", lambda: driver.title == "Signed out")
                assert not [c for c in driver.get_cookies() if c["name"] == "agov_session" and c["value"]]
                driver.get(f"{base}/v1/inbox")
                wait_for("sent to the provider, still signed in there",
                         lambda: driver.title == "Approvals inbox" or driver.current_url.startswith(issuer))
                # Signed in at the provider still: it signs her in again at once.
                assert driver.title == "Approvals inbox", driver.current_url
                driver.find_element(By.CSS_SELECTOR, "form[action='/v1/signout'] button").click()
                wait_for("the signed-out page", lambda: driver.title == "Signed out")
                driver.find_element(By.ID, "provider-signout").click()
                # The provider asks whether to sign out of it as well.
                wait_for("the provider's sign-out page", lambda: driver.current_url.startswith(issuer)
                         and driver.find_elements(By.CSS_SELECTOR, "button"))
                driver.find_element(By.CSS_SELECTOR, "button[autofocus], button[type=submit]").click()
                # Back at the inbox, which sends her to the provider's login page.
                wait_for("the provider's login page",
                         lambda: driver.current_url.startswith(issuer) and driver.find_elements(By.NAME, "login"))
                assert "agov_session" not in {c["name"] for c in driver.get_cookies() if c["value"]}
            finally:
                driver.quit()

            # 3. carol, of another group, may not see or answer the next one.
            second = dict(TRANSFER, arguments=dict(TRANSFER["arguments"], amount=99.5))
            status, pending = request(f"{base}/v1/authorize", second, auth)
            assert status == 202, pending
            driver = browser(tmp, "carol")
            try:
                driver.get(f"{base}/v1/inbox")
                sign_in_at_provider(driver, "carol")
                wait_for("the inbox", lambda: driver.title == "Approvals inbox")
                assert "transfer_funds" not in driver.page_source.split("Answered by you")[0]
                driver.get(f"{base}/v1/inbox/approvals/{pending['approval_id']}")
                assert driver.title == "Not an approver here", driver.title
                carol = next(c["value"] for c in driver.get_cookies() if c["name"] == "agov_session")
            finally:
                driver.quit()
            status, body = get(f"{base}/v1/inbox/approvals/{pending['approval_id']}", f"agov_session={carol}")
            assert status == 403, (status, body)

            # 4. Forged and expired sessions are refused; a valid one is not.
            key = bytes.fromhex((data / "keys" / "session.key").read_text().strip())
            now = int(time.time())
            claims = {"aud": "agent-governance/session", "iat": now, "exp": now + 600,
                      "sub": "alice", "groups": ["treasury-approvers"]}
            url = f"{base}/v1/inbox"
            status, body = get(url, f"agov_session={session_cookie(key, claims)}")
            assert status == 200 and "Signed in as <b>alice</b>" in body, (status, body)
            status, body = get(url, f"agov_session={session_cookie(os.urandom(32), claims)}")
            assert status == 401 and "signature" in body, (status, body)
            head, _, sig = carol.split(".")
            escalated = b64(json.dumps(dict(claims, sub="carol", groups=["treasury-approvers"])).encode())
            status, body = get(url, f"agov_session={head}.{escalated}.{sig}")
            assert status == 401 and "signature" in body, (status, body)
            status, body = get(url, f"agov_session={session_cookie(key, dict(claims, exp=now - 1))}")
            assert status == 401 and "expired" in body, (status, body)
            status, _ = get(url)
            assert status == 303, "no session: sent to sign in"
        except BaseException:
            sys.stderr.write(log.read_text())
            sys.stderr.write(idp_log.read_text())
            raise
        finally:
            for p in (server, idp):
                p.terminate()
                p.wait(timeout=10)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()

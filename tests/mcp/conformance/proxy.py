#!/usr/bin/env python3
"""A reverse proxy that adds the gateway's credentials to every request.

The MCP conformance suite cannot send an agent token and an on-behalf-of
user token, so `run.py` puts this in front of the gateway: every request is
passed on unchanged (method, path, headers including Host and Origin, body)
with `Authorization: Bearer AGENT` and `X-On-Behalf-Of: USER` set, and every
response comes back unchanged, event streams as they are written.

usage: proxy.py --listen 127.0.0.1:PORT --target http://127.0.0.1:GATEWAY_PORT
                --agent-token TOKEN --user-token TOKEN
"""

import argparse
import http.client
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection",
}


def make_handler(target, headers):
    """The request handler forwarding to `target` (scheme://host:port) with `headers` set."""
    url = urllib.parse.urlsplit(target)
    inject = {k.lower(): v for k, v in headers.items()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet; errors still go to stderr
            pass

        def body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        def forward(self):
            body = self.body()
            out = {}
            drop = HOP_BY_HOP | {h.strip().lower() for h in self.headers.get("Connection", "").split(",")}
            for name, value in self.headers.items():
                if name.lower() not in drop and name.lower() not in inject and name.lower() != "content-length":
                    out[name] = value
            out.update(headers)
            if body is not None:
                out["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
            try:
                # skip_host: the client's own Host goes through, as it was sent.
                conn.putrequest(self.command, self.path, skip_host="host" in {k.lower() for k in out}, skip_accept_encoding=True)
                for name, value in out.items():
                    conn.putheader(name, value)
                conn.endheaders(body)
                resp = conn.getresponse()
            except OSError as e:
                conn.close()
                self.send_error(502, f"upstream unreachable: {e}")
                return
            try:
                self.relay(resp)
            finally:
                conn.close()

        def relay(self, resp):
            self.send_response_only(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            for name, value in resp.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            chunked = length is None and not no_body
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if no_body:
                return
            try:
                while True:
                    # read1: whatever has arrived, so that events are not held back.
                    data = resp.read1(65536)
                    if not data:
                        break
                    if chunked:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    else:
                        self.wfile.write(data)
                    self.wfile.flush()
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, socket.timeout, http.client.IncompleteRead):
                # Either side went away mid-stream: so does this connection.
                self.close_connection = True

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = forward

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up between requests is no news.
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


class Proxy:
    """The proxy on `listen` (host, port), in a background thread."""

    def __init__(self, listen, target, agent_token, user_token, run_id=None):
        headers = {"Authorization": f"Bearer {agent_token}", "X-On-Behalf-Of": user_token}
        if run_id:
            headers["X-Run-Id"] = run_id
        self.server = Server(listen, make_handler(target, headers))
        self.url = f"http://{listen[0]}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main():
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--listen", default="127.0.0.1:0")
    args.add_argument("--target", required=True, help="the gateway's base URL, http://host:port")
    args.add_argument("--agent-token", required=True)
    args.add_argument("--user-token", required=True)
    args.add_argument("--run-id")
    opts = args.parse_args()
    host, port = opts.listen.rsplit(":", 1)
    proxy = Proxy((host, int(port)), opts.target, opts.agent_token, opts.user_token, opts.run_id)
    print(proxy.url, flush=True)
    try:
        proxy.thread.join()
    except KeyboardInterrupt:
        proxy.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()

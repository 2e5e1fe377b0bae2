"""A forward HTTP proxy on loopback that gives lab registries names without a port.

A registry on ``127.0.0.1:PORT`` cannot be pulled through the Replicated proxy: the port would
put a ``:`` inside a path component of the proxied name, and kotsrewrite refuses that. Real
private registries answer on 443. So tests name a lab registry ``private.lab`` and reach it
over plain HTTP (``--insecure-registry private.lab``) through this proxy, which the prober
uses like any proxy from the environment (``HTTP_PROXY``). The proxy sends each request to
the loopback address its host name maps to; requests for any other host are refused, so no
traffic ever leaves loopback.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}


class NameProxy:
    """``with NameProxy({"private.lab": "127.0.0.1:5000"}) as proxy: proxy.url``."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = dict(names)
        self.requests = 0
        handler = self._handler()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda *_: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _target(self, host: str) -> str | None:
        if host in self.names:
            return self.names[host]
        if host.startswith("127.0.0.1:"):  # e.g. a token realm on loopback
            return host
        return None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                target = proxy._target(url.netloc)
                if url.scheme != "http" or target is None:
                    self.send_error(403, "only mapped names and loopback")
                    return
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                # One upstream connection per client connection and target, kept open.
                conns: dict[str, http.client.HTTPConnection] = self.__dict__.setdefault(
                    "_upstream", {}
                )
                conn = conns.get(target)
                if conn is None:
                    host, _, port = target.rpartition(":")
                    conn = conns[target] = http.client.HTTPConnection(host, int(port), timeout=30)
                path = url.path + (f"?{url.query}" if url.query else "")
                try:
                    conn.request(self.command, path or "/", body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    del conns[target]
                    # an upstream fault (e.g. a reset injected by a lab FaultProxy) is a 502
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in _HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                if self.command != "HEAD" or resp.getheader("Content-Length") is None:
                    self.send_header("Content-Length", str(len(data)))
                else:
                    self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = _forward

            def finish(self) -> None:
                for conn in self.__dict__.get("_upstream", {}).values():
                    conn.close()
                super().finish()

        return Handler

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> NameProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The registry lab: real CNCF Distribution registries on loopback, for tests and benchmarks.

Everything here is usable without pytest::

    from tests import lab

    with lab.token_server(policy={"private/*": "empty"}) as ts, \\
            lab.registry(auth="token", token_server=ts) as reg:
        digest = reg.push("public/app", "1.0")
        print(reg.ref("public/app", "1.0"), digest)

Pieces:

* :class:`TokenServer`: a stdlib ``ThreadingHTTPServer`` issuing ES256 JWTs the registry
  trusts. Per-repository behaviour by ``fnmatch`` pattern (first match wins, else
  ``default``): ``"grant"`` (pull granted: a public repository), ``"empty"`` (a token with an
  empty ``access`` list: the registry then answers 401 ``insufficient_scope``, as Docker Hub
  and Quay do for private repositories), ``"refuse"`` (401 at the token endpoint, as GHCR and
  ACR do). Every request is recorded (method, path, query, headers) in :attr:`requests`.
* :class:`Registry`: ``/usr/bin/docker-registry serve`` on a free 127.0.0.1 port with storage
  in a temporary directory; ``auth`` is ``"none"``, ``"htpasswd"`` or ``"token"``; ``tls``
  takes a ``trustme.CA``. :meth:`Registry.push` puts a small OCI image in over HTTP (no docker
  daemon) and returns the manifest digest; :meth:`Registry.push_many` does hundreds quickly
  (blobs are uploaded once, then mounted across repositories, over a few keep-alive
  connections in parallel).
* :class:`RecordingProxy`: a tiny HTTP reverse proxy that records every request (headers
  included) before forwarding it; put it in front of a registry to count requests or to prove
  that no ``Authorization`` header arrives.
* :class:`ScriptedServer`: a raw TCP server on loopback whose answer to each request is a
  function of the request: for fault tests (resets, stalls, odd statuses).

Push credentials never go through the token server: the lab mints push tokens in-process, so
the token server's record holds only what the code under test sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import fnmatch
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

REGISTRY_BIN = os.environ.get("KOTSREWRITE_REGISTRY_BIN", "/usr/bin/docker-registry")
SERVICE = "lab-registry"
ISSUER = "lab-issuer"
PUSH_USER = "labuser"
PUSH_PASSWORD = "labpassword"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)

__all__ = [
    "ISSUER",
    "PUSH_PASSWORD",
    "PUSH_USER",
    "SERVICE",
    "FaultProxy",
    "RecordedRequest",
    "RecordingProxy",
    "Registry",
    "ScriptedServer",
    "TokenServer",
    "TokenServerProcess",
    "fault_proxy",
    "free_port",
    "have_registry",
    "recording_proxy",
    "registry",
    "scripted_server",
    "token_server",
]


def have_registry() -> bool:
    """Whether the docker-registry binary is installed."""
    return os.access(REGISTRY_BIN, os.X_OK)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ThreadingServer(http.server.ThreadingHTTPServer):
    """A thread per connection, with a listen backlog that holds a client's burst of new
    connections: socketserver's default of 5 drops the SYNs of the rest, which the kernel
    resends a whole second later (seen as 1 s token requests in benchmarks/probe_bench.py)."""

    daemon_threads = True
    request_queue_size = 128


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@attrs.frozen
class RecordedRequest:
    """One request seen by a lab server."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    """Header names lowercased."""
    time: float


# --------------------------------------------------------------------------------------------
# Token server


class TokenServer:
    """An anonymous token endpoint for a token-auth registry (see the module docstring)."""

    def __init__(
        self,
        *,
        policy: Mapping[str, str] | None = None,
        default: str = "grant",
        expires_in: int | None = 300,
        port: int = 0,
        tls: Any = None,
        key_pem: bytes | None = None,
    ) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.policy: dict[str, str] = dict(policy or {})
        self.default = default
        self.expires_in = expires_in
        self.requests: list[RecordedRequest] = []
        self.issued: list[str] = []
        """Tokens handed out over HTTP (not the lab's own push tokens)."""
        self._lock = threading.Lock()
        if key_pem is not None:
            loaded = serialization.load_pem_private_key(key_pem, password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            self._key = loaded
        else:
            self._key = ec.generate_private_key(ec.SECP256R1())
        spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        b32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode().rstrip("=")
        self.kid = ":".join(b32[i : i + 4] for i in range(0, 48, 4))
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab token signer")])
        now = _dt.datetime.now(_dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self._server = _ThreadingServer(("127.0.0.1", port), self._handler())
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
            # The handshake runs in the connection's own thread (Handler.handle), not in
            # accept(): the serving thread would otherwise do them one after another, each a
            # round trip long behind a latency relay (8 new connections: 8 round trips).
            self._server.socket = ctx.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self.scheme = "https"
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    @property
    def realm(self) -> str:
        """The token endpoint URL (``https`` when started with ``tls``)."""
        return f"{self.scheme}://127.0.0.1:{self.port}/token"

    def behaviour(self, repo: str) -> str:
        """``grant``, ``empty`` or ``refuse`` for ``repo``."""
        for pattern, what in self.policy.items():
            if fnmatch.fnmatchcase(repo, pattern):
                return what
        return self.default

    def mint(self, access: list[dict[str, Any]], *, lifetime: int = 600) -> str:
        """A signed JWT granting ``access`` (lab-internal use: pushes)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid}
        claims = {
            "iss": ISSUER,
            "sub": "",
            "aud": SERVICE,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + "." + _b64url(sig)

    def clear(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests.clear()

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                if isinstance(self.connection, ssl.SSLSocket):
                    try:
                        self.connection.do_handshake()
                    except OSError:  # ssl.SSLError included: the client gave up
                        return
                super().handle()

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                outer._record(
                    RecordedRequest(
                        method="GET",
                        path=parts.path,
                        query=query,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        time=time.monotonic(),
                    )
                )
                access: list[dict[str, Any]] = []
                refuse = False
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    name, _, _actions = rest.rpartition(":")
                    if kind != "repository" or not name:
                        continue
                    what = outer.behaviour(name)
                    if what == "refuse":
                        refuse = True
                    elif what == "grant":
                        access.append({"type": "repository", "name": name, "actions": ["pull"]})
                if refuse:
                    body = json.dumps(
                        {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
                    ).encode()
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("WWW-Authenticate", 'Basic realm="lab token"')
                else:
                    token = outer.mint(access)
                    with outer._lock:
                        outer.issued.append(token)
                    out: dict[str, Any] = {"token": token}
                    if outer.expires_in is not None:
                        out["expires_in"] = outer.expires_in
                    out["issued_at"] = _dt.datetime.now(_dt.UTC).isoformat()
                    body = json.dumps(out).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def stop(self) -> None:
        """Shut the server down."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TokenServerProcess(TokenServer):
    """A :class:`TokenServer` whose HTTP side runs in a child process (``python -m tests.lab
    token-server``), so that benchmarks do not share the prober's CPU and GIL with it.

    It signs with the same key as the local object, so :attr:`cert_pem`, :attr:`kid` and
    :meth:`mint` (lab pushes) work as for :class:`TokenServer`; :attr:`requests` stays empty.
    """

    def __init__(
        self,
        *,
        policy: Mapping[str, str] | None = None,
        default: str = "grant",
        expires_in: int | None = 300,
    ) -> None:
        super().__init__(policy=policy, default=default, expires_in=expires_in)
        super().stop()  # the in-process server is not used
        from cryptography.hazmat.primitives import serialization

        key = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._keydir = Path(tempfile.mkdtemp(prefix="kotsrewrite-lab-key-"))
        key_file = self._keydir / "key.pem"
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        args = [
            sys.executable,
            "-m",
            "tests.lab",
            "token-server",
            "--key",
            str(key_file),
            "--policy",
            json.dumps(self.policy),
            "--default",
            default,
            "--expires-in",
            "none" if expires_in is None else str(expires_in),
        ]
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"token server process did not start: {line!r}")
        self.port = int(line)

    def stop(self) -> None:
        """Stop the child process."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self._keydir, ignore_errors=True)


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.lab")
    sub = parser.add_subparsers(dest="cmd", required=True)
    ts = sub.add_parser("token-server", help="serve tokens until stdin closes; print the port")
    ts.add_argument("--key", required=True)
    ts.add_argument("--policy", default="{}")
    ts.add_argument("--default", default="grant")
    ts.add_argument("--expires-in", default="300")
    args = parser.parse_args(argv)
    server = TokenServer(
        policy=json.loads(args.policy),
        default=args.default,
        expires_in=None if args.expires_in == "none" else int(args.expires_in),
        key_pem=Path(args.key).read_bytes(),
    )
    print(server.port, flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()
    return 0


@contextlib.contextmanager
def token_server(**kwargs: Any) -> Iterator[TokenServer]:
    """A running :class:`TokenServer`, stopped on exit."""
    ts = TokenServer(**kwargs)
    try:
        yield ts
    finally:
        ts.stop()


# --------------------------------------------------------------------------------------------
# Registry


class Registry:
    """A running Distribution registry (see the module docstring)."""

    def __init__(
        self,
        *,
        auth: str = "none",
        token_server: TokenServer | None = None,
        realm: str | None = None,
        tls: Any = None,
        workdir: str | Path | None = None,
        port: int | None = None,
        log_level: str = "error",
        users: Mapping[str, str] | None = None,
    ) -> None:
        """``users``: more htpasswd ``{user: password}`` besides the push user."""
        if auth not in ("none", "htpasswd", "token"):
            raise ValueError(f"unknown auth mode {auth!r}")
        if auth == "token" and token_server is None:
            raise ValueError("token auth needs a token_server")
        self.auth = auth
        self.token_server = token_server
        self.tls = tls
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="kotsrewrite-lab-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.scheme = "https" if tls is not None else "http"
        self.url = f"{self.scheme}://{self.host}"
        self._local = threading.local()
        self.pushed: dict[str, str] = {}
        """``repo:tag`` (or ``repo@digest`` when untagged) -> manifest digest, every push."""
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": log_level, "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.dir / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host, "secret": "lab-secret"},
        }
        if auth == "htpasswd":
            pw = self.dir / "htpasswd"
            subprocess.run(
                ["htpasswd", "-Bbc", "-C", "4", str(pw), PUSH_USER, PUSH_PASSWORD],
                check=True,
                capture_output=True,
            )
            for user, password in (users or {}).items():
                subprocess.run(
                    ["htpasswd", "-Bb", "-C", "4", str(pw), user, password],
                    check=True,
                    capture_output=True,
                )
            cfg["auth"] = {"htpasswd": {"realm": "lab", "path": str(pw)}}
        elif auth == "token":
            assert token_server is not None
            bundle = self.dir / "token.crt"
            bundle.write_bytes(token_server.cert_pem)
            cfg["auth"] = {
                "token": {
                    "realm": realm or token_server.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(bundle),
                }
            }
        if tls is not None:
            cert = tls.issue_cert("127.0.0.1", "localhost")
            cert.private_key_and_cert_chain_pem.write_to_path(str(self.dir / "server.pem"))
            cert.private_key_pem.write_to_path(str(self.dir / "server.key"))
            cfg["http"]["tls"] = {
                "certificate": str(self.dir / "server.pem"),
                "key": str(self.dir / "server.key"),
            }
            self._ssl: ssl.SSLContext | None = ssl.create_default_context()
            tls.configure_trust(self._ssl)
        else:
            self._ssl = None
        # A unique header proves that the server answering is this process, not another one
        # that already held the port.
        self.id = uuid.uuid4().hex
        cfg["http"]["headers"] = {"X-Lab-Registry": [self.id]}
        config = self.dir / "config.yml"
        self._log = open(self.dir / "registry.log", "wb")  # noqa: SIM115
        for attempt in range(3 if port is None else 1):
            if attempt:  # the free port was taken meanwhile (parallel tests): pick another
                self.port = free_port()
                self.host = f"127.0.0.1:{self.port}"
                self.url = f"{self.scheme}://{self.host}"
                cfg["http"]["addr"] = self.host
            config.write_text(json.dumps(cfg))  # JSON is YAML
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                self._wait_up()
                break
            except _PortTaken:
                if attempt == 2 or port is not None:
                    self.stop()
                    raise RuntimeError(f"docker-registry could not bind {self.host}") from None
            except BaseException:
                self.stop()
                raise

    # -- lifecycle ---------------------------------------------------------------------------

    def _wait_up(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "registry.log").read_text(errors="replace")
                if "address already in use" in log[-2000:]:
                    raise _PortTaken(log[-2000:])
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}: {log[-2000:]}")
            try:
                conn = self._new_conn(timeout=1.0)
                conn.request("GET", "/v2/")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status in (200, 401) and resp.getheader("X-Lab-Registry") == self.id:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"docker-registry on {self.host} did not come up")

    def stop(self) -> None:
        """Terminate the registry (and delete its storage if the lab created it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------------

    def ref(self, repo: str, tag: str | None = None, digest: str | None = None) -> str:
        """An image reference on this registry: ``127.0.0.1:PORT/repo[:tag][@digest]``."""
        out = f"{self.host}/{repo}"
        if tag:
            out += f":{tag}"
        if digest:
            out += f"@{digest}"
        return out

    def _new_conn(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=self._ssl
            )
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new_conn()
        return conn

    def _auth_header(self, repos: Iterable[str]) -> dict[str, str]:
        if self.auth == "htpasswd":
            raw = f"{PUSH_USER}:{PUSH_PASSWORD}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self.auth == "token":
            assert self.token_server is not None
            access = [{"type": "repository", "name": r, "actions": ["pull", "push"]} for r in repos]
            return {"Authorization": "Bearer " + self.token_server.mint(access)}
        return {}

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        repos: Iterable[str] = (),
    ) -> tuple[int, dict[str, str], bytes]:
        """One request with push credentials, on this thread's keep-alive connection."""
        hdrs = {**self._auth_header(repos), **(headers or {})}
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _upload(self, repo: str, data: bytes, digest: str, mount_from: str | None) -> None:
        path = f"/v2/{repo}/blobs/uploads/"
        repos = [repo] + ([mount_from] if mount_from else [])
        if mount_from:
            q = urllib.parse.urlencode({"mount": digest, "from": mount_from})
            status, _, _ = self.request("POST", f"{path}?{q}", body=b"", repos=repos)
            if status == 201:
                return
        status, hdrs, body = self.request("POST", path, body=b"", repos=[repo])
        if status != 202:
            raise RuntimeError(f"blob upload start {repo}: {status} {body[:200]!r}")
        loc = urllib.parse.urlsplit(hdrs["location"])
        sep = "&" if loc.query else "?"
        target = f"{loc.path}?{loc.query}{sep}" if loc.query else f"{loc.path}{sep}"
        target += urllib.parse.urlencode({"digest": digest})
        status, _, body = self.request(
            "PUT",
            target,
            body=data,
            headers={"Content-Type": "application/octet-stream"},
            repos=[repo],
        )
        if status != 201:
            raise RuntimeError(f"blob upload {repo}: {status} {body[:200]!r}")

    def push(
        self,
        repo: str,
        tag: str | None = "latest",
        *,
        content: bytes | None = None,
        mount_from: str | None = None,
    ) -> str:
        """Push a small OCI image to ``repo:tag`` (or untagged, by digest, if ``tag`` is None)
        and return its manifest digest. ``content`` makes the layer (and the digest) unique;
        by default it derives from ``repo``."""
        layer = content if content is not None else f"layer of {repo}\n".encode()
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + _sha(layer)]},
            }
        ).encode()
        cfg_digest = "sha256:" + _sha(config)
        layer_digest = "sha256:" + _sha(layer)
        self._upload(repo, config, cfg_digest, mount_from)
        self._upload(repo, layer, layer_digest, mount_from)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": cfg_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        digest = "sha256:" + _sha(manifest)
        status, _, body = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{tag or digest}",
            body=manifest,
            headers={"Content-Type": OCI_MANIFEST},
            repos=[repo],
        )
        if status != 201:
            raise RuntimeError(f"manifest push {repo}: {status} {body[:300]!r}")
        self.pushed[f"{repo}:{tag}" if tag else f"{repo}@{digest}"] = digest
        return digest

    def push_many(
        self, items: Iterable[tuple[str, str | None]], *, workers: int = 8
    ) -> dict[tuple[str, str | None], str]:
        """Push ``(repo, tag)`` pairs quickly: the blobs are uploaded once and mounted into
        the other repositories. All images share one manifest digest, returned per pair."""
        pairs = list(items)
        if not pairs:
            return {}
        content = b"shared lab layer\n"
        first_repo, first_tag = pairs[0]
        first = self.push(first_repo, first_tag, content=content)
        out = {pairs[0]: first}

        def one(pair: tuple[str, str | None]) -> tuple[tuple[str, str | None], str]:
            return pair, self.push(pair[0], pair[1], content=content, mount_from=first_repo)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            out.update(pool.map(one, pairs[1:]))
        return out

    def manifest_status(self, repo: str, reference: str) -> int:
        """HEAD the manifest with push credentials (lab self-check)."""
        status, _, _ = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            headers={"Accept": MANIFEST_ACCEPT},
            repos=[repo],
        )
        return status


class _PortTaken(RuntimeError):
    pass


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def registry(**kwargs: Any) -> Iterator[Registry]:
    """A running :class:`Registry`, terminated on exit (even on failure)."""
    reg = Registry(**kwargs)
    try:
        yield reg
    finally:
        reg.stop()


# --------------------------------------------------------------------------------------------
# Recording proxy


class RecordingProxy:
    """A plain-HTTP reverse proxy on loopback that records each request, then forwards it to
    ``target`` (``http://127.0.0.1:PORT``) and relays the answer."""

    def __init__(self, target: str) -> None:
        self.target = urllib.parse.urlsplit(target)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = _ThreadingServer(("127.0.0.1", 0), self._handler())
        self.port = int(self._server.server_address[1])
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def clear(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests.clear()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer._lock:
                    outer.requests.append(
                        RecordedRequest(
                            method=self.command,
                            path=parts.path,
                            query=urllib.parse.parse_qs(parts.query),
                            headers=headers,
                            time=time.monotonic(),
                        )
                    )
                length = int(headers.get("content-length", "0") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(
                    outer.target.hostname or "127.0.0.1", outer.target.port, timeout=30
                )
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=fwd)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        return Handler

    def stop(self) -> None:
        """Shut the proxy down."""
        self._server.shutdown()
        self._server.server_close()


_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
)


@contextlib.contextmanager
def recording_proxy(target: str) -> Iterator[RecordingProxy]:
    """A running :class:`RecordingProxy` in front of ``target``."""
    proxy = RecordingProxy(target)
    try:
        yield proxy
    finally:
        proxy.stop()


# --------------------------------------------------------------------------------------------
# Fault-injecting reverse proxy


class FaultProxy:
    """An asyncio HTTP/1.1 reverse proxy on loopback (its own thread and event loop) in front of
    ``target`` (``http://127.0.0.1:PORT``) that, with a seeded RNG, answers ``503`` to a share
    ``p503`` of requests and resets the connection (RST) for a share ``p_reset``; the rest are
    forwarded over one upstream keep-alive connection per client connection. Counts every
    request it reads (:attr:`requests`) and the faults it injected (:attr:`faults`)."""

    def __init__(
        self, target: str, *, p503: float = 0.05, p_reset: float = 0.05, seed: int = 0
    ) -> None:
        import asyncio
        import random

        parts = urllib.parse.urlsplit(target)
        self._up = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self.p503, self.p_reset = p503, p_reset
        self._rng = random.Random(seed)
        self.requests = 0
        self.faults = 0
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, backlog=512)

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"

    def clear(self) -> None:
        """Reset the counters."""
        self.requests = self.faults = 0

    @staticmethod
    async def _read_message(reader: asyncio.StreamReader, *, head_only: bool) -> bytes | None:
        """One HTTP/1.1 message (head and body) as bytes, or None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except Exception:
            return None
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        if head_only:
            return head
        if "content-length" in hdrs:
            return head + await reader.readexactly(int(hdrs["content-length"]))
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body += size_line + await reader.readexactly(size + 2)
                if size == 0:
                    return head + body
        return head

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio
        import struct

        up: tuple[Any, Any] | None = None
        try:
            while True:
                req = await self._read_message(reader, head_only=False)
                if req is None:
                    return
                self.requests += 1
                method = req.split(b" ", 1)[0]
                roll = self._rng.random()
                if roll < self.p_reset:
                    self.faults += 1
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if roll < self.p_reset + self.p503:
                    self.faults += 1
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                if up is None:
                    up = await asyncio.open_connection(*self._up)
                up[1].write(req)
                await up[1].drain()
                resp = await self._read_message(up[0], head_only=method == b"HEAD")
                if resp is None:
                    return
                writer.write(resp)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            if up is not None:
                up[1].close()
            with contextlib.suppress(Exception):
                writer.close()

    def stop(self) -> None:
        """Stop the proxy and its thread."""

        def shutdown() -> None:
            self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(5)


@contextlib.contextmanager
def fault_proxy(target: str, **kwargs: Any) -> Iterator[FaultProxy]:
    """A running :class:`FaultProxy` in front of ``target``, stopped on exit."""
    proxy = FaultProxy(target, **kwargs)
    try:
        yield proxy
    finally:
        proxy.stop()


# --------------------------------------------------------------------------------------------
# Scripted raw server for fault tests


@attrs.define
class ScriptedRequest:
    """A request as read by :class:`ScriptedServer`."""

    method: str
    path: str
    headers: dict[str, str]


Responder = Callable[[ScriptedRequest, socket.socket], None]


class ScriptedServer:
    """A raw TCP server on 127.0.0.1: for each request, ``respond(request, sock)`` writes
    whatever it wants (or nothing, or resets the connection); the connection is then closed.
    Requests are recorded in :attr:`requests`."""

    def __init__(self, respond: Responder, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self._ssl = ssl_context
        """With a server-side context, each connection is TLS (:attr:`url` is ``https``)."""
        self.requests: list[ScriptedRequest] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if ssl_context is not None else 'http'}://{self.host}"
        self._stopped = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            if self._ssl is not None:
                conn = self._ssl.wrap_socket(conn, server_side=True)
                self._conns.append(conn)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, path, _ = ([*head[0].split(" "), "", ""])[:3]
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            req = ScriptedRequest(method=method, path=path, headers=headers)
            self.requests.append(req)
            self.respond(req, conn)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def stop(self) -> None:
        """Stop accepting and close every connection."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()


def http_response(
    status: int, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """The bytes of a simple HTTP/1.1 response that closes the connection."""
    lines = [f"HTTP/1.1 {status} X"]
    hdrs = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@contextlib.contextmanager
def scripted_server(
    respond: Responder, *, ssl_context: ssl.SSLContext | None = None
) -> Iterator[ScriptedServer]:
    """A running :class:`ScriptedServer`, stopped on exit."""
    srv = ScriptedServer(respond, ssl_context=ssl_context)
    try:
        yield srv
    finally:
        srv.stop()


if __name__ == "__main__":
    raise SystemExit(_main())

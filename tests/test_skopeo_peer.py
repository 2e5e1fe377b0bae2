"""The benchmark's peer (skopeo once per image) against real registries on loopback.

Covers what skopeo prints for each kind of answer and how :func:`classify` maps it, with the
registry lab's real Distribution registries (anonymous, htpasswd, token with each policy,
TLS) and a scripted server for answers a real registry will not give (429, 403, 500).
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
import trustme

from benchmarks._relay import RelayThread
from benchmarks._skopeo import classify, excerpt, run_skopeo, skopeo_command
from kotsrewrite import Verdict
from tests import lab

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(
        not lab.have_registry() or shutil.which("skopeo") is None,
        reason="needs docker-registry and skopeo",
    ),
]


class Labs:
    """The registries shared by this module's tests."""

    def __init__(self) -> None:
        self.stack: list[lab.Registry | lab.TokenServer] = []
        try:
            self.anon = lab.Registry()
            self.stack.append(self.anon)
            self.basic = lab.Registry(auth="htpasswd")
            self.stack.append(self.basic)
            self.tokens = lab.TokenServer(policy={"private/*": "empty", "refused/*": "refuse"})
            self.stack.append(self.tokens)
            self.token = lab.Registry(auth="token", token_server=self.tokens)
            self.stack.append(self.token)
            self.tls = lab.Registry(tls=trustme.CA())
            self.stack.append(self.tls)
            self.digest = self.anon.push("acme/web", "1.0")
            for i in range(20):
                self.anon.push(f"many/app{i}", "1.0")
            self.basic.push("acme/api", "1.0")
            self.token.push("public/web", "1.0")
            self.token.push("private/db", "1.0")
            self.token.push("refused/x", "1.0")
            self.tls.push("acme/web", "1.0")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for thing in reversed(self.stack):
            thing.stop()


@pytest.fixture(scope="module")
def labs() -> Iterator[Labs]:
    made = Labs()
    try:
        yield made
    finally:
        made.stop()


def _verdicts(images: list[str], **kwargs: object) -> dict[str, Verdict]:
    return {image: result.verdict for image, result in run_skopeo(images, **kwargs).items()}  # type: ignore[arg-type]


def test_anonymous_registry_public_and_missing(labs: Labs) -> None:
    reg = labs.anon
    images = {
        reg.ref("acme/web", "1.0"): Verdict.PUBLIC,
        reg.ref("acme/web", digest=labs.digest): Verdict.PUBLIC,
        reg.ref("acme/web", "1.0", digest=labs.digest): Verdict.PUBLIC,
        reg.ref("acme/web", "nope"): Verdict.NOT_FOUND,
        reg.ref("acme/missing", "1.0"): Verdict.NOT_FOUND,
    }
    results = run_skopeo(list(images))
    assert {image: r.verdict for image, r in results.items()} == images
    missing = results[reg.ref("acme/missing", "1.0")]
    assert "manifest unknown" in missing.stderr
    assert missing.elapsed > 0


def test_htpasswd_registry_is_private_even_for_missing_repositories(labs: Labs) -> None:
    reg = labs.basic
    results = run_skopeo([reg.ref("acme/api", "1.0"), reg.ref("acme/missing", "1.0")])
    for result in results.values():
        assert result.verdict is Verdict.PRIVATE
        assert "unauthorized: authentication required" in result.stderr


def test_token_registry_grant_empty_grant_and_refusal(labs: Labs) -> None:
    reg = labs.token
    results = run_skopeo(
        [
            reg.ref("public/web", "1.0"),
            reg.ref("public/missing", "1.0"),
            reg.ref("private/db", "1.0"),
            reg.ref("refused/x", "1.0"),
        ]
    )
    got = {image: r.verdict for image, r in results.items()}
    assert got == {
        reg.ref("public/web", "1.0"): Verdict.PUBLIC,
        reg.ref("public/missing", "1.0"): Verdict.NOT_FOUND,
        reg.ref("private/db", "1.0"): Verdict.PRIVATE,
        reg.ref("refused/x", "1.0"): Verdict.PRIVATE,
    }
    assert "requested access to the resource is denied" in results[reg.ref("private/db", "1.0")][2]
    assert "unable to retrieve auth token" in results[reg.ref("refused/x", "1.0")][2]


def test_tls_verify_false_accepts_an_untrusted_certificate(labs: Labs) -> None:
    image = labs.tls.ref("acme/web", "1.0")
    assert _verdicts([image]) == {image: Verdict.PUBLIC}
    strict = run_skopeo([image], insecure=False)[image]
    assert strict.verdict is Verdict.UNREACHABLE
    assert "certificate" in strict.stderr


def test_plain_http_needs_tls_verify_false(labs: Labs) -> None:
    image = labs.anon.ref("acme/web", "1.0")
    strict = run_skopeo([image], insecure=False)[image]
    assert strict.verdict is Verdict.UNREACHABLE
    assert "HTTP response to HTTPS client" in strict.stderr
    assert "--tls-verify=false" in skopeo_command(image)
    assert "--tls-verify=false" not in skopeo_command(image, insecure=False)


def test_tag_next_to_digest_is_dropped_for_skopeo() -> None:
    digest = "sha256:" + "a" * 64
    assert skopeo_command(f"127.0.0.1:5000/a/b:1.0@{digest}")[-1] == (
        f"docker://127.0.0.1:5000/a/b@{digest}"
    )
    assert skopeo_command(f"127.0.0.1:5000/a/b@{digest}")[-1] == (
        f"docker://127.0.0.1:5000/a/b@{digest}"
    )
    assert skopeo_command("127.0.0.1:5000/a/b:1.0")[-1] == "docker://127.0.0.1:5000/a/b:1.0"


def test_nothing_listening_is_unreachable() -> None:
    image = f"127.0.0.1:{lab.free_port()}/acme/web:1.0"
    result = run_skopeo([image])[image]
    assert result.verdict is Verdict.UNREACHABLE
    assert "connection refused" in result.stderr


class _Canned(http.server.BaseHTTPRequestHandler):
    """A registry that answers each repository with one canned status (what a real registry
    in the lab will not do). stdlib's server answers skopeo's first attempt, a TLS hello,
    with 400 at once, so skopeo falls back to plain HTTP as it does for a real registry."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    answers: ClassVar[dict[str, tuple[int, dict[str, object] | None]]] = {
        "denied": (403, {"errors": [{"code": "DENIED", "message": "Permission denied"}]}),
        "gitlab": (403, None),
        "limited": (429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}),
        "broken": (500, {"errors": [{"code": "UNKNOWN", "message": "internal"}]}),
        "gone": (404, None),
    }

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v2/":
            status, body = 200, {}
        else:
            repo = self.path.split("/")[2]
            if repo == "stall":
                time.sleep(3)
                return
            status, body = self.answers[repo]
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def canned() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_canned_answers_map_to_verdicts(canned: str) -> None:
    expected = {
        f"{canned}/denied/x:1": Verdict.PRIVATE,
        f"{canned}/gitlab/x:1": Verdict.PRIVATE,
        f"{canned}/limited/x:1": Verdict.RATE_LIMITED,
        f"{canned}/broken/x:1": Verdict.UNREACHABLE,
        f"{canned}/gone/x:1": Verdict.NOT_FOUND,
        f"{canned}/stall/x:1": Verdict.UNREACHABLE,
    }
    results = run_skopeo(list(expected), timeout=2)  # 429 has Retry-After: 0
    assert {image: r.verdict for image, r in results.items()} == expected
    assert results[f"{canned}/stall/x:1"].stderr == "timed out after 2 s"
    assert "toomanyrequests" in results[f"{canned}/limited/x:1"].stderr


def test_ten_at_a_time_in_parallel_behind_latency(labs: Labs) -> None:
    with RelayThread() as relays:
        relay = relays.add("127.0.0.1", labs.anon.port, delay_ms=25)
        images = [f"127.0.0.1:{relay.port}/many/app{i}:1.0" for i in range(20)]
        start = time.perf_counter()
        results = run_skopeo(images, parallel=10)
        wall = time.perf_counter() - start
        connections = relay.connections
    assert set(results) == set(images)
    assert {r.verdict for r in results.values()} == {Verdict.PUBLIC}
    # each skopeo is a fresh process: nothing is shared between images
    assert connections >= len(images)
    each = [r.elapsed for r in results.values()]
    assert min(each) >= 0.05 * 3  # at least 3 round trips of 50 ms per image
    assert wall < sum(each) / 4  # ran concurrently, about 10 at a time
    assert wall >= 2 * min(each)  # ... but no more than 10 at a time


def test_duplicates_run_once_and_order_is_kept(labs: Labs) -> None:
    a = labs.anon.ref("acme/web", "1.0")
    b = labs.anon.ref("acme/missing", "1.0")
    assert list(run_skopeo([b, a, b, a], parallel=2)) == [b, a]


def test_parallel_must_be_positive() -> None:
    with pytest.raises(ValueError):
        run_skopeo(["x"], parallel=0)


# Messages recorded from skopeo 1.9.3 (module docstring of benchmarks._skopeo).
_FATAL = (
    'time="2026-11-23T16:06:32Z" level=fatal '
    'msg="Error parsing image name \\"docker://{img}\\": {msg}"'
)


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        ("reading manifest 1 in h/r: manifest unknown: manifest unknown", Verdict.NOT_FOUND),
        ("reading manifest 1 in h/r: name unknown", Verdict.NOT_FOUND),
        ("reading manifest 1 in h/r: StatusCode: 404, ", Verdict.NOT_FOUND),
        ("reading manifest 1 in h/r: unauthorized: authentication required", Verdict.PRIVATE),
        (
            "unable to retrieve auth token: invalid username/password: unauthorized",
            Verdict.PRIVATE,
        ),
        (
            "reading manifest 1 in h/r: errors:\\ndenied: requested access to the resource is "
            "denied\\nunauthorized: authentication required\\n",
            Verdict.PRIVATE,
        ),
        ("reading manifest 1 in h/r: denied: Permission denied", Verdict.PRIVATE),
        ("reading manifest 1 in h/r: StatusCode: 403, ", Verdict.PRIVATE),
        ("reading manifest 1 in h/r: toomanyrequests: You have reached", Verdict.RATE_LIMITED),
        (
            "reading manifest 1 in h/r: received unexpected HTTP status: 500 Internal Server Error",
            Verdict.UNREACHABLE,
        ),
        (
            'pinging container registry h: Get \\"http://h/v2/\\": dial tcp h: connect: '
            "connection refused",
            Verdict.UNREACHABLE,
        ),
        (
            "pinging container registry h: received unexpected HTTP status: 404 Not Found",
            Verdict.UNREACHABLE,
        ),
    ],
)
def test_classify_recorded_messages(message: str, verdict: Verdict) -> None:
    stderr = _FATAL.format(img="h/r:1", msg=message)
    assert classify(1, stderr) is verdict
    assert classify(0, "") is Verdict.PUBLIC
    short = excerpt(stderr)
    assert not short.startswith("time=")
    assert "docker://" not in short
    assert "\n" not in short

"""verify --pull: the pull secret's credentials against real Distribution registries acting as
the proxy (htpasswd with ``LICENSE_ID`` and the license; token auth whose token service demands
those Basic credentials), the Replicated registry, and a customer's own registry; credentials
never reaching any other host; the anonymous prober unable to send any."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import kotsrewrite
from kotsrewrite import Cause, PullCredentials, PullStatus, parse_image
from kotsrewrite._cli import main
from kotsrewrite._probe import MANIFEST_ACCEPT
from tests import lab

pytestmark = pytest.mark.registry

LICENSE = "lic-" + secrets.token_hex(12)
SLUG = "acme"
UPSTREAM = {
    "api": "quay.io/vendor/api:1.0",
    "redis": "redis:7",
    "missing": "quay.io/vendor/missing:1.0",
    "denied": "ghcr.io/other/db:2",
}
PROXIED = {
    "api": "quay.io/vendor/api",
    "redis": "docker.io/library/redis",
    "missing": "quay.io/vendor/missing",
    "denied": "ghcr.io/other/db",
}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _no_license(*texts: str) -> None:
    b64 = base64.b64encode(f"LICENSE_ID:{LICENSE}".encode()).decode()
    for text in texts:
        assert LICENSE not in text and b64 not in text


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.Registry]:
    """The Replicated registry: htpasswd with LICENSE_ID and the license; ``acme/app:1.0``."""
    if not lab.have_registry():
        pytest.skip("docker-registry is not installed")
    with lab.registry(
        auth="htpasswd", users={"LICENSE_ID": LICENSE}, workdir=tmp_path_factory.mktemp("repl")
    ) as reg:
        reg.push(f"{SLUG}/app", "1.0")
        yield reg


def _push_proxied(reg: lab.Registry, *, denied: bool) -> None:
    reg.push(f"proxy/{SLUG}/{PROXIED['api']}", "1.0")
    reg.push(f"proxy/{SLUG}/{PROXIED['redis']}", "7")
    if denied:
        reg.push(f"proxy/{SLUG}/{PROXIED['denied']}", "2")


@pytest.fixture(scope="module")
def proxy_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.Registry]:
    if not lab.have_registry():
        pytest.skip("docker-registry is not installed")
    with lab.registry(
        auth="htpasswd", users={"LICENSE_ID": LICENSE}, workdir=tmp_path_factory.mktemp("pb")
    ) as reg:
        _push_proxied(reg, denied=False)
        yield reg


@pytest.fixture(scope="module")
def license_tokens() -> Iterator[lab.TokenServer]:
    """A proxy's token service: Basic LICENSE_ID:license required; the ``other`` org's
    repositories get a token granting nothing (the license has no access there)."""
    policy = {f"proxy/{SLUG}/ghcr.io/other/*": "empty"}
    with lab.token_server(policy=policy, logins={"LICENSE_ID": LICENSE}) as ts:
        yield ts


@pytest.fixture(scope="module")
def proxy_token(
    license_tokens: lab.TokenServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[lab.Registry]:
    if not lab.have_registry():
        pytest.skip("docker-registry is not installed")
    with lab.registry(
        auth="token", token_server=license_tokens, workdir=tmp_path_factory.mktemp("pt")
    ) as reg:
        _push_proxied(reg, denied=True)
        yield reg


def _pod(name: str, images: list[str], secret: str | None = None) -> str:
    containers = "".join(f"\n  - name: c{i}\n    image: {img}" for i, img in enumerate(images))
    pulls = f"\n  imagePullSecrets:\n  - name: {secret}" if secret else ""
    head = f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:{pulls}\n"
    return f"{head}  containers:{containers}\n"


def _midstream(tmp_path: Path, proxy: str, repl: str, extra_insecure: list[str]) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    images = [*UPSTREAM.values(), f"{repl}/{SLUG}/app:1.0"]
    (base / "pod.yaml").write_text(_pod("app", images))
    out = tmp_path / "mid"
    insecure = [x for h in (proxy, repl, *extra_insecure) for x in ("--insecure-registry", h)]
    code, stdout, err = run(
        "rewrite", str(base), "--offline", "--app-slug", SLUG, "--license-id", LICENSE,
        "--proxy-host", proxy, "--replicated-registry", repl, "--out", str(out),
        "--verify", "--pull", *insecure,
    )  # fmt: skip
    _no_license(stdout, err)
    assert code == 1, err  # one image missing (and one denied with token auth)
    # rewrite --verify --pull printed the same table verify --pull prints.
    assert "\nPULL " in f"\n{stdout}" and "not_found" in stdout, stdout
    assert "image(s) pullable with the pull secret's credentials" in err
    return out


def _statuses(doc: dict[str, object]) -> dict[str, str]:
    pulls = doc["pull"]
    assert isinstance(pulls, list)
    return {p["image"]: p["status"] for p in pulls}


@pytest.mark.parametrize("variant", ["htpasswd", "token"])
def test_verify_pull_through_a_lab_proxy_with_the_license(
    variant: str,
    request: pytest.FixtureRequest,
    replicated: lab.Registry,
    license_tokens: lab.TokenServer,
    tmp_path: Path,
) -> None:
    proxy: lab.Registry = request.getfixturevalue(
        f"proxy_{'basic' if variant == 'htpasswd' else 'token'}"
    )
    # The token realm is plain http on a host of its own: opted in like any plain-HTTP host.
    extra = [f"127.0.0.1:{license_tokens.port}"] if variant == "token" else []
    mid = _midstream(tmp_path, proxy.host, replicated.host, extra)
    insecure = [
        x for h in (proxy.host, replicated.host, *extra) for x in ("--insecure-registry", h)
    ]
    code, out, err = run("verify", str(mid), "--pull", "--format", "json", *insecure)
    _no_license(out, err)
    assert code == 1, err
    doc = json.loads(out)
    assert doc["problems"] == [] and doc["ok"] is False
    p = f"{proxy.host}/proxy/{SLUG}"
    expected = {
        f"{p}/{PROXIED['api']}:1.0": "pullable",
        f"{p}/{PROXIED['redis']}:7": "pullable",
        f"{p}/{PROXIED['missing']}:1.0": "not_found",
        f"{p}/{PROXIED['denied']}:2": "denied" if variant == "token" else "not_found",
        f"{replicated.host}/{SLUG}/app:1.0": "pullable",
    }
    assert _statuses(doc) == expected
    causes = {p["image"]: p["cause"] for p in doc["pull"]}
    assert causes[f"{p}/{PROXIED['api']}:1.0"] == "credentialed_pull"
    if variant == "token":
        assert causes[f"{p}/{PROXIED['denied']}:2"] == "credentials_denied"
        # Every token request carried the license (the service refuses any other).
        assert license_tokens.requests
        for req in license_tokens.requests:
            assert req.headers.get("authorization") == _basic("LICENSE_ID", LICENSE)
    steps = [s for pull in doc["pull"] for s in pull["evidence"]["steps"]]
    assert all(s["url"].startswith("http://127.0.0.1:") for s in steps)
    # The table says the same, for people.
    code, out, err = run("verify", str(mid), "--pull", *insecure)
    _no_license(out, err)
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines()[1:]}
    assert lines == expected and out.startswith("PULL")
    assert "3 of 5 image(s) pullable" in err or "4 of 5 image(s) pullable" in err


def test_license_flag_instead_of_the_secret(
    proxy_basic: lab.Registry, replicated: lab.Registry, tmp_path: Path
) -> None:
    mid = _midstream(tmp_path, proxy_basic.host, replicated.host, [])
    insecure = ["--insecure-registry", proxy_basic.host, "--insecure-registry", replicated.host]
    wrong = "lic-wrong-" + secrets.token_hex(6)
    args = ["verify", str(mid), "--pull", "--format", "json", *insecure]
    code, out, err = run(*args, "--license-id", wrong)
    assert code == 1 and wrong not in out + err
    doc = json.loads(out)
    assert set(_statuses(doc).values()) == {"denied"}
    assert {p["cause"] for p in doc["pull"]} == {"credentials_denied"}
    lic = tmp_path / "license.yaml"
    lic.write_text(
        "apiVersion: kots.io/v1beta1\nkind: License\nmetadata:\n  name: x\n"
        f"spec:\n  licenseID: {LICENSE}\n  appSlug: {SLUG}\n"
    )
    code, out, err = run(*args, "--license", str(lic))
    _no_license(out, err)
    assert (
        sorted(_statuses(json.loads(out)).values()) == ["not_found", "not_found"] + ["pullable"] * 3
    )


def test_pull_check_api_typed_results(proxy_basic: lab.Registry, replicated: lab.Registry) -> None:
    creds = PullCredentials.for_license(LICENSE, [proxy_basic.host, replicated.host])
    assert LICENSE not in repr(creds) and LICENSE not in repr(creds.logins)
    refs = [
        parse_image(f"{proxy_basic.host}/proxy/{SLUG}/{PROXIED['api']}:1.0"),
        parse_image(f"{proxy_basic.host}/proxy/{SLUG}/{PROXIED['missing']}:1.0"),
        parse_image(f"{replicated.host}/{SLUG}/app:1.0"),
        parse_image("127.0.0.1:1/nobody/knows:1"),
    ]
    options = kotsrewrite.ProbeOptions(
        insecure_registries=frozenset({proxy_basic.host, replicated.host, "127.0.0.1:1"}),
        timeout=3,
    )
    results = kotsrewrite.pull_check_sync(refs, creds, options)
    assert [r.status for r in results] == [
        PullStatus.PULLABLE,
        PullStatus.NOT_FOUND,
        PullStatus.PULLABLE,
        PullStatus.DENIED,
    ]
    assert results[3].evidence.cause is Cause.NO_CREDENTIALS and not results[3].evidence.steps
    assert results[0].evidence.cause is Cause.CREDENTIALED_PULL
    for r in results:
        _no_license(repr(r), json.dumps(r.to_json()))

    async def inside_a_loop() -> list[kotsrewrite.PullResult]:  # a caller already running a loop
        return kotsrewrite.pull_check_sync(refs[:1], creds, options)

    assert [r.status for r in asyncio.run(inside_a_loop())] == [PullStatus.PULLABLE]


# -- credentials go nowhere else ----------------------------------------------------------


def test_customer_registry_secret_and_no_credential_to_another_host(
    proxy_basic: lab.Registry,
    replicated: lab.Registry,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """A second registry named in the manifests, with its own pull secret (the shape of a
    customer's registry): its images are checked with its credentials; the license never
    goes there, nor its password to the proxy."""
    other_pw = "other-" + secrets.token_hex(8)
    with (
        lab.registry(
            auth="htpasswd", users={"customer": other_pw}, workdir=tmp_path_factory.mktemp("o")
        ) as other,
        lab.recording_proxy(other.url) as front,
    ):
        other.push("team/tool", "3")
        base = tmp_path / "base"
        base.mkdir()
        cfg = {"auths": {front.host: {"username": "customer", "password": other_pw}}}
        data = base64.b64encode(json.dumps(cfg).encode()).decode()
        (base / "secret.yaml").write_text(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: team-pull\n"
            f"type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {data}\n"
        )
        (base / "pod.yaml").write_text(
            _pod("tool", [f"{front.host}/team/tool:3", "quay.io/vendor/api:1.0"], "team-pull")
        )
        known = tmp_path / "installation.yaml"
        known.write_text(
            "apiVersion: kots.io/v1beta1\nkind: Installation\nmetadata:\n  name: x\nspec:\n"
            f"  knownImages:\n  - image: {front.host}/team/tool:3\n    isPrivate: false\n"
        )
        mid = tmp_path / "mid"
        hosts = [proxy_basic.host, replicated.host, front.host]
        insecure = [x for h in hosts for x in ("--insecure-registry", h)]
        code, out, err = run(
            "rewrite", str(base), "--offline", "--known-images", str(known), "--app-slug", SLUG,
            "--license-id", LICENSE, "--proxy-host", proxy_basic.host,
            "--replicated-registry", replicated.host, "--out", str(mid), *insecure,
        )  # fmt: skip
        assert code == 0, err
        code, out, err = run("verify", str(mid), "--pull", "--format", "json", *insecure)
        _no_license(out, err)
        assert other_pw not in out + err
        assert code == 0, out + err
        statuses = _statuses(json.loads(out))
        assert statuses == {
            f"{front.host}/team/tool:3": "pullable",
            f"{proxy_basic.host}/proxy/{SLUG}/{PROXIED['api']}:1.0": "pullable",
        }
        auths = [r.headers.get("authorization") for r in front.requests]
        assert _basic("customer", other_pw) in auths
        assert set(auths) <= {None, _basic("customer", other_pw)}


def _redirecting_registry(target: str) -> lab.Responder:
    """A registry asking for Basic credentials, then redirecting the manifest elsewhere."""

    def respond(req: lab.ScriptedRequest, sock: socket.socket) -> None:
        if "authorization" not in req.headers:
            sock.sendall(lab.http_response(401, {"WWW-Authenticate": 'Basic realm="x"'}))
        else:
            sock.sendall(lab.http_response(307, {"Location": f"{target}{req.path}"}))

    return respond


def test_a_redirect_to_another_host_carries_no_credentials(proxy_basic: lab.Registry) -> None:
    with (
        lab.recording_proxy(proxy_basic.url) as elsewhere,
        lab.scripted_server(_redirecting_registry(f"http://{elsewhere.host}")) as reg,
    ):
        creds = PullCredentials.for_license(LICENSE, [reg.host])
        ref = parse_image(f"{reg.host}/proxy/{SLUG}/{PROXIED['api']}:1.0")
        options = kotsrewrite.ProbeOptions(
            insecure_registries=frozenset({reg.host, elsewhere.host}), timeout=5
        )
        (res,) = kotsrewrite.pull_check_sync([ref], creds, options)
        assert [r.headers.get("authorization") for r in reg.requests] == [
            None,
            _basic("LICENSE_ID", LICENSE),
        ]
        assert elsewhere.requests, "the redirect was followed"
        assert all("authorization" not in r.headers for r in elsewhere.requests)
        # Without credentials the real registry says 401: the image is not pullable there.
        assert res.status is PullStatus.DENIED
        _no_license(repr(res), json.dumps(res.to_json()))


def test_a_token_realm_on_another_host_over_http_gets_no_credentials(
    license_tokens: lab.TokenServer,
) -> None:
    realm = license_tokens.realm  # http://127.0.0.1:PORT/token: plain http, another host

    def respond(req: lab.ScriptedRequest, sock: socket.socket) -> None:
        challenge = f'Bearer realm="{realm}",service="{lab.SERVICE}"'
        sock.sendall(lab.http_response(401, {"WWW-Authenticate": challenge}))

    before = len(license_tokens.requests)
    with lab.scripted_server(respond) as reg:
        creds = PullCredentials.for_license(LICENSE, [reg.host])
        ref = parse_image(f"{reg.host}/proxy/{SLUG}/x:1")
        # The registry itself is opted into plain HTTP; the realm's host is not.
        options = kotsrewrite.ProbeOptions(insecure_registries=frozenset({reg.host}), timeout=5)
        (res,) = kotsrewrite.pull_check_sync([ref], creds, options)
        assert all("authorization" not in r.headers for r in reg.requests)
    assert len(license_tokens.requests) == before  # the realm was never contacted
    assert res.status is PullStatus.UNREACHABLE
    assert res.evidence.cause is Cause.REALM_REFUSED
    _no_license(repr(res), json.dumps(res.to_json()))


# -- the anonymous prober cannot send credentials -----------------------------------------


def test_the_anonymous_prober_has_no_way_to_receive_credentials() -> None:
    from kotsrewrite._registry import _prober, _send, _tokens

    words = ("cred", "login", "password", "secret", "auth", "license")
    for fn in (
        kotsrewrite.probe,
        kotsrewrite.probe_sync,
        kotsrewrite.Prober.__init__,
        kotsrewrite.Prober.probe,
        kotsrewrite.Prober.probe_one,
        _tokens.TokenService.__init__,
        _tokens.TokenService.token,
    ):
        params = inspect.signature(fn).parameters
        assert not [p for p in params if any(w in p.lower() for w in words)], fn
    assert not [f for f in kotsrewrite.ProbeOptions.__attrs_attrs__ if "cred" in f.name]
    # The prober's modules know nothing of the credentialed path.
    for mod in (_prober, _tokens):
        source = inspect.getsource(mod)
        assert "._pull" not in source and "Login" not in source
        assert "credentialed" not in source  # its Sender is built anonymous (the default)
    # And its sender refuses an Authorization header from its caller at run time.
    sender = _send.Sender(kotsrewrite.ProbeOptions(), None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="anonymous"):
        import asyncio

        from kotsrewrite._registry._evidence import ProbeLog

        asyncio.run(
            sender.exchange(
                ProbeLog(),
                "manifest",
                "HEAD",
                __import__("httpx").URL("http://127.0.0.1:1/v2/"),
                {"Authorization": "Basic eDp5"},
                read_body=False,
            )
        )


def test_anonymous_probe_sends_only_tokens_it_fetched_anonymously(
    token_registry: lab.Registry, lab_token_server: lab.TokenServer
) -> None:
    with lab.recording_proxy(token_registry.url) as front:
        refs = [parse_image(f"{front.host}/{r}/app:1.0") for r in ("public", "private")]
        issued_before = len(lab_token_server.issued)
        options = kotsrewrite.ProbeOptions(insecure_registries=frozenset({front.host}))
        results = kotsrewrite.probe_sync(refs, options)
        assert [str(r.verdict) for r in results] == ["public", "private"]
        issued = set(lab_token_server.issued[issued_before:])
        sent = [r.headers.get("authorization") for r in front.requests]
        assert any(sent)
        for value in sent:
            if value is not None:
                scheme, _, token = value.partition(" ")
                assert scheme == "Bearer" and token in issued, value
    for req in lab_token_server.requests:
        assert "authorization" not in req.headers


# -- the other answers ---------------------------------------------------------------------


def _scripted_registry(after_auth: bytes) -> lab.Responder:
    """Basic challenge without credentials; ``after_auth`` with them (405 to HEAD first)."""

    def respond(req: lab.ScriptedRequest, sock: socket.socket) -> None:
        if "authorization" not in req.headers:
            sock.sendall(lab.http_response(401, {"WWW-Authenticate": 'Basic realm="p"'}))
        elif req.method == "HEAD":
            sock.sendall(lab.http_response(405))
        else:
            sock.sendall(after_auth)

    return respond


@pytest.mark.parametrize(
    ("answer", "status", "cause"),
    [
        (
            lab.http_response(
                200, {"Content-Type": "application/vnd.oci.image.index.v1+json"}, b"{}"
            ),
            PullStatus.PULLABLE,
            Cause.CREDENTIALED_PULL,
        ),
        (
            lab.http_response(429, {"Retry-After": "100"}),
            PullStatus.RATE_LIMITED,
            Cause.RETRY_AFTER_TOO_LONG,
        ),
        (lab.http_response(404), PullStatus.NOT_FOUND, Cause.MANIFEST_NOT_FOUND),
        (lab.http_response(403), PullStatus.DENIED, Cause.CREDENTIALS_DENIED),
        (lab.http_response(503), PullStatus.UNREACHABLE, Cause.SERVER_ERROR),
    ],
    ids=["200", "429", "404", "403", "503"],
)
def test_head_then_get_on_405_and_each_status(
    answer: bytes, status: PullStatus, cause: Cause
) -> None:
    with lab.scripted_server(_scripted_registry(answer)) as reg:
        creds = PullCredentials.for_license(LICENSE, [reg.host])
        ref = parse_image(f"{reg.host}/proxy/{SLUG}/a/b:1")
        options = kotsrewrite.ProbeOptions(
            insecure_registries=frozenset({reg.host}), timeout=5, backoff=0.01
        )
        (res,) = kotsrewrite.pull_check_sync([ref], creds, options)
    assert (res.status, res.evidence.cause) == (status, cause), res.evidence.reason
    first = reg.requests[0]
    assert first.method == "HEAD" and "authorization" not in first.headers
    accept = {a.strip() for a in first.headers["accept"].split(",")}
    assert accept == set(MANIFEST_ACCEPT)
    assert [r.method for r in reg.requests[1:3]] == ["HEAD", "GET"]
    assert {r.headers.get("authorization") for r in reg.requests[1:]} == {
        _basic("LICENSE_ID", LICENSE)
    }
    assert [s.method for s in res.evidence.steps][:3] == ["HEAD", "HEAD", "GET"]
    _no_license(repr(res), json.dumps(res.to_json()))


def test_a_registry_that_does_not_answer_is_unreachable() -> None:
    port = lab.free_port()
    creds = PullCredentials.for_license(LICENSE, [f"127.0.0.1:{port}"])
    ref = parse_image(f"127.0.0.1:{port}/proxy/{SLUG}/a:1")
    options = kotsrewrite.ProbeOptions(
        insecure_registries=frozenset({f"127.0.0.1:{port}"}), timeout=3, backoff=0.01
    )
    (res,) = kotsrewrite.pull_check_sync([ref], creds, options)
    assert res.status is PullStatus.UNREACHABLE
    assert res.evidence.cause is Cause.TRANSPORT_ERROR and res.evidence.steps


def test_over_https_with_a_token_service_of_its_own(
    lab_ca: object, lab_ca_file: Path, tmp_path: Path
) -> None:
    """The usual shape of a real proxy: https registry, https token realm on another port,
    no plain-HTTP opt-in anywhere (only --ca-file for the lab's CA)."""
    if not lab.have_registry():
        pytest.skip("docker-registry is not installed")
    policy = {f"proxy/{SLUG}/ghcr.io/other/*": "empty"}
    with (
        lab.token_server(policy=policy, logins={"LICENSE_ID": LICENSE}, tls=lab_ca) as ts,
        lab.registry(auth="token", token_server=ts, tls=lab_ca, workdir=tmp_path / "r") as reg,
    ):
        _push_proxied(reg, denied=True)
        base = tmp_path / "base"
        base.mkdir()
        (base / "pod.yaml").write_text(_pod("app", list(UPSTREAM.values())))
        mid = tmp_path / "mid"
        code, _, err = run(
            "rewrite", str(base), "--offline", "--app-slug", SLUG, "--license-id", LICENSE,
            "--proxy-host", reg.host, "--replicated-registry", "registry.example.test",
            "--out", str(mid),
        )  # fmt: skip
        assert code == 0, err
        code, out, err = run(
            "verify", str(mid), "--pull", "--format", "json", "--ca-file", str(lab_ca_file)
        )
        _no_license(out, err)
        assert code == 1
        doc = json.loads(out)
        p = f"{reg.host}/proxy/{SLUG}"
        assert _statuses(doc) == {
            f"{p}/{PROXIED['api']}:1.0": "pullable",
            f"{p}/{PROXIED['redis']}:7": "pullable",
            f"{p}/{PROXIED['missing']}:1.0": "not_found",
            f"{p}/{PROXIED['denied']}:2": "denied",
        }
        steps = [s["url"] for pull in doc["pull"] for s in pull["evidence"]["steps"]]
        assert steps and all(u.startswith("https://127.0.0.1:") for u in steps)
        assert any(u.startswith(ts.realm) for u in steps)
        tokens = list(ts.requests)
        assert tokens and all(
            r.headers.get("authorization") == _basic("LICENSE_ID", LICENSE) for r in tokens
        )


def test_one_checker_two_licenses_share_nothing(
    proxy_token: lab.Registry, license_tokens: lab.TokenServer
) -> None:
    """Tokens are cached per login (not per user name: every license is ``LICENSE_ID``), and
    results per call."""
    import asyncio

    from kotsrewrite._registry._pull import PullChecker

    ref = parse_image(f"{proxy_token.host}/proxy/{SLUG}/{PROXIED['api']}:1.0")
    realm_host = f"127.0.0.1:{license_tokens.port}"
    options = kotsrewrite.ProbeOptions(
        insecure_registries=frozenset({proxy_token.host, realm_host})
    )

    async def both() -> list[PullStatus]:
        async with PullChecker(options) as checker:
            out = []
            for lic in ("lic-wrong-" + secrets.token_hex(4), LICENSE, "lic-other"):
                creds = PullCredentials.for_license(lic, [proxy_token.host])
                (res,) = await checker.check([ref], creds)
                out.append(res.status)
            return out

    assert asyncio.run(both()) == [PullStatus.DENIED, PullStatus.PULLABLE, PullStatus.DENIED]


def test_the_prober_slots_bound_the_pull_check() -> None:
    """The same per-registry limit as probing: never more than ``per_registry`` requests in
    flight against one registry, and more than one (the checks do run concurrently)."""
    import threading
    import time

    lock = threading.Lock()
    now = [0]
    peak = [0]

    def respond(req: lab.ScriptedRequest, sock: socket.socket) -> None:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1  # before answering: the client may send its next request at once
        if "authorization" not in req.headers:
            sock.sendall(lab.http_response(401, {"WWW-Authenticate": 'Basic realm="p"'}))
        else:
            sock.sendall(lab.http_response(404))

    with lab.scripted_server(respond) as reg:
        creds = PullCredentials.for_license(LICENSE, [reg.host])
        refs = [parse_image(f"{reg.host}/proxy/{SLUG}/img{i}:1") for i in range(12)]
        options = kotsrewrite.ProbeOptions(
            insecure_registries=frozenset({reg.host}), per_registry=3, timeout=10
        )
        results = kotsrewrite.pull_check_sync(refs, creds, options)
    assert {r.status for r in results} == {PullStatus.NOT_FOUND}
    assert 1 < peak[0] <= 3, peak[0]

"""The anonymous prober against real Distribution registries (tests/lab.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from kotsrewrite import ImageRef, ProbeOptions, ProbeResult, Verdict, probe, probe_sync
from kotsrewrite._probe import Prober
from tests import lab

pytestmark = pytest.mark.registry


def _opts(*regs: lab.Registry | lab.RecordingProxy, **kw: object) -> ProbeOptions:
    return ProbeOptions(insecure_registries=frozenset(r.host for r in regs), **kw)  # type: ignore[arg-type]


def _run(refs: list[str], options: ProbeOptions) -> list[ProbeResult]:
    return asyncio.run(probe([ImageRef.parse(r) for r in refs], options))


def _verdicts(results: list[ProbeResult]) -> dict[str, Verdict]:
    return {str(r.image): r.verdict for r in results}


def test_token_registry_verdicts(token_registry: lab.Registry) -> None:
    reg = token_registry
    digest = reg.pushed["public/app:1.0"]
    other = reg.pushed["private/app:1.0"]
    refs = {
        reg.ref("public/app", "1.0"): Verdict.PUBLIC,
        reg.ref("public/app", digest=digest): Verdict.PUBLIC,
        reg.ref("public/app", "1.0", digest): Verdict.PUBLIC,
        # tag + digest: the digest is what is pulled, even with a tag that does not exist
        reg.ref("public/app", "no-such-tag", digest): Verdict.PUBLIC,
        reg.ref("public/app", "2.0"): Verdict.NOT_FOUND,  # missing tag
        reg.ref("public/app", digest="sha256:" + "0" * 64): Verdict.NOT_FOUND,
        reg.ref("public/missing", "1.0"): Verdict.NOT_FOUND,  # missing repository
        reg.ref("private/app", "1.0"): Verdict.PRIVATE,  # empty grant
        reg.ref("private/app", digest=other): Verdict.PRIVATE,
        reg.ref("refused/app", "1.0"): Verdict.PRIVATE,  # token endpoint 401
    }
    results = _run(list(refs), _opts(reg))
    assert _verdicts(results) == refs
    by = {str(r.image): r for r in results}
    empty = by[reg.ref("private/app", "1.0")].evidence
    assert "insufficient_scope" in empty.reason
    assert [s.step for s in empty.steps][-1] == "manifest"
    assert empty.steps[-1].status == 401
    assert empty.steps[-1].challenge and "insufficient_scope" in empty.steps[-1].challenge
    refused = by[reg.ref("refused/app", "1.0")].evidence
    assert refused.steps[-1].step.startswith("token") and refused.steps[-1].status == 401
    assert "UNAUTHORIZED" in refused.steps[-1].error_codes
    public = by[reg.ref("public/app", "1.0")].evidence
    assert public.steps[-1].status == 200 and public.probed_at
    assert all(s.elapsed_ms >= 0 for s in public.steps)


def test_anonymous_and_basic(anon_registry: lab.Registry, basic_registry: lab.Registry) -> None:
    a, b = anon_registry, basic_registry
    results = _run(
        [a.ref("app", "1.0"), a.ref("app", "9.9"), a.ref("nope", "1.0"), b.ref("app", "1.0")],
        _opts(a, b),
    )
    assert [r.verdict for r in results] == [
        Verdict.PUBLIC,
        Verdict.NOT_FOUND,
        Verdict.NOT_FOUND,
        Verdict.PRIVATE,
    ]
    basic = results[3].evidence
    assert "Basic" in basic.reason
    assert basic.steps[0].challenge == 'Basic realm="lab"'
    assert len(basic.steps) == 1  # a Basic challenge needs no token round trip
    assert results[0].evidence.steps[0].method == "HEAD"


def test_results_per_input_and_duplicates_probed_once(token_registry: lab.Registry) -> None:
    reg = token_registry
    with lab.recording_proxy(reg.url) as proxy:
        host = proxy.host
        refs = [f"{host}/public/app:1.0"] * 3 + [f"{host}/public/app:2.0", f"{host}/public/app:1.0"]
        results = _run(refs, _opts(proxy))
        assert [str(r.image) for r in results] == refs
        heads = [r for r in proxy.requests if r.method == "HEAD"]
        by_path: dict[str, int] = {}
        for r in heads:
            by_path[r.path] = by_path.get(r.path, 0) + 1
        # at most one anonymous HEAD (challenge) + one with a token per unique reference
        assert by_path["/v2/public/app/manifests/2.0"] <= 2
        assert by_path["/v2/public/app/manifests/1.0"] <= 2
        assert len(heads) <= 4


def test_second_repository_costs_two_requests(
    token_registry: lab.Registry, lab_token_server: lab.TokenServer
) -> None:
    reg = token_registry
    reg.push("public/second", "1.0")

    async def go(proxy: lab.RecordingProxy) -> tuple[int, int]:
        async with Prober(_opts(proxy)) as prober:
            first = await prober.probe([ImageRef.parse(f"{proxy.host}/public/app:1.0")])
            n1 = len(proxy.requests) + len(lab_token_server.requests)
            n_before = prober.requests
            proxy.clear()
            lab_token_server.clear()
            second = await prober.probe([ImageRef.parse(f"{proxy.host}/public/second:1.0")])
            n2 = len(proxy.requests) + len(lab_token_server.requests)
            assert prober.requests - n_before == n2
            assert first[0].verdict is second[0].verdict is Verdict.PUBLIC
            return n1, n2

    with lab.recording_proxy(reg.url) as proxy:
        lab_token_server.clear()
        n1, n2 = asyncio.run(go(proxy))
    assert (n1, n2) == (3, 2)


def test_one_token_for_many_tags_of_one_repository(
    token_registry: lab.Registry, lab_token_server: lab.TokenServer
) -> None:
    reg = token_registry
    lab_token_server.clear()
    refs = [reg.ref("public/app", f"t{i}") for i in range(60)]
    results = _run(refs, _opts(reg, per_registry=16))
    assert {r.verdict for r in results} == {Verdict.NOT_FOUND}
    scopes = [q for r in lab_token_server.requests for q in r.query.get("scope", [])]
    assert scopes == ["repository:public/app:pull"]


def test_no_credentials_ever_sent(
    token_registry: lab.Registry,
    anon_registry: lab.Registry,
    lab_token_server: lab.TokenServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    netrc = home / ".netrc"
    netrc.write_text(
        "machine 127.0.0.1 login netrcuser password netrcsecret\n"
        "default login netrcuser password netrcsecret\n"
    )
    netrc.chmod(0o600)
    basic = base64.b64encode(b"dockeruser:dockersecret").decode()
    (home / ".docker" / "config.json").write_text(
        json.dumps({"auths": {h: {"auth": basic} for h in ("127.0.0.1", reg_hosts())}})
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    lab_token_server.clear()
    with (
        lab.recording_proxy(token_registry.url) as tok_proxy,
        lab.recording_proxy(anon_registry.url) as anon_proxy,
    ):
        refs = [
            f"{tok_proxy.host}/public/app:1.0",
            f"{tok_proxy.host}/private/app:1.0",
            f"{tok_proxy.host}/refused/app:1.0",
            f"{anon_proxy.host}/app:1.0",
        ]
        results = _run(refs, _opts(tok_proxy, anon_proxy))
        assert [r.verdict for r in results] == [
            Verdict.PUBLIC,
            Verdict.PRIVATE,
            Verdict.PRIVATE,
            Verdict.PUBLIC,
        ]
        assert lab_token_server.requests, "the token endpoint was asked"
        for req in lab_token_server.requests:
            assert "authorization" not in req.headers, req
        assert anon_proxy.requests
        for req in anon_proxy.requests:
            assert "authorization" not in req.headers, req
        issued = set(lab_token_server.issued)
        bearer_seen = 0
        for req in tok_proxy.requests:
            auth = req.headers.get("authorization")
            if auth is not None:
                # only the anonymous tokens the token endpoint just handed out
                assert auth.startswith("Bearer ") and auth[7:] in issued, auth
                bearer_seen += 1
        assert bearer_seen >= 2
        everything = json.dumps(
            [r.headers for r in tok_proxy.requests + anon_proxy.requests]
            + [r.headers for r in lab_token_server.requests]
        )
        for secret in ("netrcsecret", "dockersecret", basic, "Basic "):
            assert secret not in everything


def reg_hosts() -> str:
    return "localhost"


def test_tls_with_and_without_ca_file(tls_registry: lab.Registry, lab_ca_file: Path) -> None:
    ref = tls_registry.ref("app", "1.0")
    ok = _run([ref], ProbeOptions(ca_file=str(lab_ca_file)))
    assert ok[0].verdict is Verdict.PUBLIC, ok[0].evidence
    bad = _run([ref], ProbeOptions(timeout=5))
    assert bad[0].verdict is Verdict.UNREACHABLE
    assert "TLS" in bad[0].evidence.reason
    assert "CERTIFICATE_VERIFY_FAILED" in (bad[0].evidence.steps[0].error or "")
    assert len(bad[0].evidence.steps) == 1  # a certificate failure is not retried


def test_insecure_registry_plain_http_needed(anon_registry: lab.Registry) -> None:
    # Without --insecure-registry the prober speaks https to a plain-http registry.
    res = _run([anon_registry.ref("app", "1.0")], ProbeOptions(timeout=3))
    assert res[0].verdict is Verdict.UNREACHABLE


def test_probe_sync_and_on_result(anon_registry: lab.Registry) -> None:
    seen: list[str] = []
    refs = [ImageRef.parse(anon_registry.ref("app", "1.0"))] * 2
    out = probe_sync(refs, _opts(anon_registry), on_result=lambda r: seen.append(str(r.image)))
    assert [r.verdict for r in out] == [Verdict.PUBLIC, Verdict.PUBLIC]
    assert seen == [str(r) for r in refs]

    async def inside_loop() -> list[ProbeResult]:
        return probe_sync(refs[:1], _opts(anon_registry))

    assert asyncio.run(inside_loop())[0].verdict is Verdict.PUBLIC


def test_tls_registry_with_http_realm_is_refused(
    lab_ca: object, lab_ca_file: Path, lab_token_server: lab.TokenServer, tmp_path: Path
) -> None:
    # A registry reached over https whose realm is plain http: the token is not fetched.
    lab_token_server.clear()
    with lab.registry(
        auth="token", token_server=lab_token_server, tls=lab_ca, workdir=tmp_path
    ) as reg:
        reg.push("public/app", "1.0")
        res = _run([reg.ref("public/app", "1.0")], ProbeOptions(ca_file=str(lab_ca_file)))
    assert res[0].verdict is Verdict.UNREACHABLE
    assert res[0].evidence.reason.startswith("token realm refused: realm is plain http")
    assert lab_token_server.requests == []


def test_http2_multiplexing_over_tls(tls_registry: lab.Registry, lab_ca_file: Path) -> None:
    from kotsrewrite._probe import build_client

    for i in range(12):
        tls_registry.push(f"h2/r{i}", "1")
    opts = ProbeOptions(ca_file=str(lab_ca_file), per_registry=12)
    versions: list[str] = []

    async def hook(response: object) -> None:
        versions.append(response.http_version)  # type: ignore[attr-defined]

    async def go() -> list[ProbeResult]:
        client = build_client(opts)
        client.event_hooks = {"request": [], "response": [hook]}
        async with client, Prober(opts, client=client) as prober:
            refs = [ImageRef.parse(tls_registry.ref(f"h2/r{i}", "1")) for i in range(12)]
            return await prober.probe(refs)

    results = asyncio.run(go())
    assert {r.verdict for r in results} == {Verdict.PUBLIC}
    assert versions == ["HTTP/2"] * 12


def test_all_https_token_registry(lab_ca: object, lab_ca_file: Path, tmp_path: Path) -> None:
    with (
        lab.token_server(policy={"private/*": "empty"}, tls=lab_ca) as ts,
        lab.registry(auth="token", token_server=ts, tls=lab_ca, workdir=tmp_path) as reg,
    ):
        digest = reg.push("public/app", "1.0")
        reg.push("private/app", "1.0")
        refs = [
            reg.ref("public/app", "1.0", digest),
            reg.ref("private/app", "1.0"),
            reg.ref("public/app", "9"),
        ]
        results = _run(refs, ProbeOptions(ca_file=str(lab_ca_file)))
        assert [r.verdict for r in results] == [
            Verdict.PUBLIC,
            Verdict.PRIVATE,
            Verdict.NOT_FOUND,
        ]
        assert all(r.evidence.steps[0].url.startswith("https://") for r in results)
        assert {q for r in ts.requests for q in r.query["scope"]} == {
            "repository:public/app:pull",
            "repository:private/app:pull",
        }
        assert all("authorization" not in r.headers for r in ts.requests)

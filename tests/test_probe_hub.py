"""Docker Hub specifics and request shapes, with a mock transport (no network)."""

from __future__ import annotations

import asyncio
import json

import httpx

from kotsrewrite import ImageRef, ProbeOptions, Verdict, probe
from kotsrewrite._probe import MANIFEST_ACCEPT, Prober

HUB = "registry-1.docker.io"
AUTH = "https://auth.docker.io/token"


def _hub(requests: list[httpx.Request], private: set[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        url = request.url
        if url.host == "auth.docker.io":
            scope = url.params["scope"]
            repo = scope.split(":")[1]
            token = "empty" if repo in private else f"tok-{repo}"
            return httpx.Response(200, json={"token": token, "expires_in": 300})
        assert url.host == HUB and url.scheme == "https"
        repo = url.path.removeprefix("/v2/").rsplit("/manifests/", 1)[0]
        auth = request.headers.get("authorization")
        challenge = (
            f'Bearer realm="{AUTH}",service="registry.docker.io",scope="repository:{repo}:pull"'
        )
        if auth == f"Bearer tok-{repo}":
            return httpx.Response(
                200, headers={"Content-Type": "application/vnd.oci.image.index.v1+json"}
            )
        if auth is not None:
            challenge += ',error="insufficient_scope"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    return httpx.MockTransport(handler)


def test_docker_hub_spellings_share_one_probe() -> None:
    requests: list[httpx.Request] = []
    refs = [
        "nginx",
        "nginx:latest",
        "docker.io/library/nginx",
        "index.docker.io/library/nginx:latest",
        "library/nginx",
        "acme/secret:1.0",
    ]
    results = asyncio.run(
        probe([ImageRef.parse(r) for r in refs], transport=_hub(requests, {"acme/secret"}))
    )
    assert [r.verdict for r in results] == [Verdict.PUBLIC] * 5 + [Verdict.PRIVATE]
    assert [str(r.image) for r in results] == refs
    manifest = [r for r in requests if r.url.host == HUB]
    tokens = [r for r in requests if r.url.host == "auth.docker.io"]
    assert {str(r.url) for r in manifest} == {
        f"https://{HUB}/v2/library/nginx/manifests/latest",
        f"https://{HUB}/v2/acme/secret/manifests/1.0",
    }
    # nginx: challenge + retry; acme/secret: retry only (challenge known), or both if the
    # second probe started first: 3 or 4 manifest requests, never more.
    assert len(manifest) in (3, 4)
    assert all(r.method == "HEAD" for r in manifest)
    assert all(r.headers["accept"] == ", ".join(MANIFEST_ACCEPT) for r in manifest)
    assert sorted(r.url.params["scope"] for r in tokens) == [
        "repository:acme/secret:pull",
        "repository:library/nginx:pull",
    ]
    assert all(r.url.params["service"] == "registry.docker.io" for r in tokens)
    assert all("authorization" not in r.headers for r in tokens)


def test_second_repository_two_requests_and_token_reuse() -> None:
    requests: list[httpx.Request] = []

    async def go() -> list[int]:
        counts = []
        async with Prober(ProbeOptions(), transport=_hub(requests, set())) as prober:
            for refs in (["nginx"], ["redis"], ["redis:7", "redis:6"]):
                before = len(requests)
                res = await prober.probe([ImageRef.parse(r) for r in refs])
                assert {r.verdict for r in res} == {Verdict.PUBLIC}
                counts.append(len(requests) - before)
        return counts

    # nginx: HEAD 401, token, HEAD; redis: token, HEAD; two redis tags: cached token, 2 HEADs
    assert asyncio.run(go()) == [3, 2, 2]


def test_html_200_is_not_public() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"Content-Type": "text/html"}, text="hi")
    )
    (res,) = asyncio.run(probe([ImageRef.parse("quay.io/org/app:1")], transport=transport))
    assert res.verdict is Verdict.UNREACHABLE
    assert "text/html" in res.evidence.reason


def test_authorization_dropped_on_cross_origin_redirect() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "auth.example.com":
            return httpx.Response(200, content=json.dumps({"token": "t"}).encode())
        if request.url.host == "cdn.example.com":
            return httpx.Response(200)
        if request.headers.get("authorization") == "Bearer t":
            return httpx.Response(307, headers={"Location": "https://cdn.example.com/m"})
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/t"'}
        )

    (res,) = asyncio.run(
        probe([ImageRef.parse("reg.example.com/app:1")], transport=httpx.MockTransport(handler))
    )
    assert res.verdict is Verdict.PUBLIC
    cdn = [r for r in seen if r.url.host == "cdn.example.com"]
    assert len(cdn) == 1 and "authorization" not in cdn[0].headers


def test_redirect_to_a_host_that_challenges_gets_its_own_token() -> None:
    """registry.k8s.io redirects to Artifact Registry, which challenges: as docker does, the
    token for the redirect target is fetched and sent to that host only."""
    seen: list[httpx.Request] = []
    ar = "europe-docker.pkg.dev"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        url = request.url
        if url.host == "registry.k8s.io":
            assert "authorization" not in request.headers
            path = url.path.replace("/v2/", "/v2/k8s-artifacts-prod/images/", 1)
            return httpx.Response(307, headers={"Location": f"https://{ar}{path}"})
        if url.path == "/v2/token":
            assert "authorization" not in request.headers
            return httpx.Response(200, json={"token": "ar-token"})
        assert url.host == ar
        if request.headers.get("authorization") == "Bearer ar-token":
            return httpx.Response(200, headers={"Content-Type": "application/json"})
        return httpx.Response(
            401, headers={"WWW-Authenticate": f'Bearer realm="https://{ar}/v2/token"'}
        )

    async def go() -> list[int]:
        counts = []
        async with Prober(transport=httpx.MockTransport(handler)) as prober:
            for image in ("registry.k8s.io/pause:3.9", "registry.k8s.io/coredns:1.11"):
                before = len(seen)
                (res,) = await prober.probe([ImageRef.parse(image)])
                assert res.verdict is Verdict.PUBLIC, res.evidence
                counts.append(len(seen) - before)
        return counts

    # first: 307, 401, token, 307, 200; second: token, 307, 200 (challenge remembered)
    assert asyncio.run(go()) == [5, 3]


def test_empty_input() -> None:
    assert asyncio.run(probe([])) == []

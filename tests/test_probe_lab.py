"""The registry lab itself models what the prober relies on (checked with plain HTTP)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from tests import lab

pytestmark = pytest.mark.registry


def _head(host: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    h, port = host.split(":")
    conn = http.client.HTTPConnection(h, int(port), timeout=10)
    conn.request("HEAD", path, headers={"Accept": lab.MANIFEST_ACCEPT, **(headers or {})})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def test_token_policies_model_the_real_world(
    token_registry: lab.Registry, lab_token_server: lab.TokenServer
) -> None:
    # anonymous: 401 with a Bearer challenge naming the realm and service
    resp = _head(token_registry.host, "/v2/public/app/manifests/1.0")
    assert resp.status == 401
    assert resp.getheader("WWW-Authenticate", "").startswith(
        f'Bearer realm="{lab_token_server.realm}",service="{lab.SERVICE}"'
    )
    granted = lab_token_server.mint(
        [{"type": "repository", "name": "public/app", "actions": ["pull"]}]
    )
    assert (
        _head(
            token_registry.host,
            "/v2/public/app/manifests/1.0",
            {"Authorization": f"Bearer {granted}"},
        ).status
        == 200
    )
    empty = lab_token_server.mint([])
    resp = _head(
        token_registry.host, "/v2/private/app/manifests/1.0", {"Authorization": f"Bearer {empty}"}
    )
    assert resp.status == 401
    assert 'error="insufficient_scope"' in resp.getheader("WWW-Authenticate", "")
    assert lab_token_server.behaviour("refused/x") == "refuse"
    assert lab_token_server.behaviour("other") == "grant"


def test_push_many_and_digests(anon_registry: lab.Registry) -> None:
    pushed = anon_registry.push_many([(f"many/r{i}", "1") for i in range(30)] + [("many/u", None)])
    assert len(set(pushed.values())) == 1
    digest = next(iter(pushed.values()))
    assert _head(anon_registry.host, f"/v2/many/r29/manifests/{digest}").status == 200
    assert _head(anon_registry.host, f"/v2/many/u/manifests/{digest}").status == 200
    assert _head(anon_registry.host, "/v2/many/u/manifests/latest").status == 404
    assert anon_registry.pushed["many/r0:1"] == digest


def test_recording_proxy_records_and_forwards(anon_registry: lab.Registry) -> None:
    with lab.recording_proxy(anon_registry.url) as proxy:
        assert _head(proxy.host, "/v2/app/manifests/1.0", {"X-Probe": "1"}).status == 200
        assert [(r.method, r.path, r.headers.get("x-probe")) for r in proxy.requests] == [
            ("HEAD", "/v2/app/manifests/1.0", "1")
        ]


def test_registry_stops_and_cleans_up() -> None:
    reg = lab.Registry()
    pid_dir: Path = reg.dir
    reg.stop()
    assert reg.proc.poll() is not None
    assert not pid_dir.exists()


def test_registry_start_failure_is_reported(tmp_path: Path) -> None:
    with (
        lab.token_server() as ts,
        lab.registry() as first,
        pytest.raises(RuntimeError, match="could not bind"),
    ):
        lab.Registry(auth="token", token_server=ts, port=first.port, workdir=tmp_path)
    log = (tmp_path / "registry.log").read_text()
    assert "address already in use" in log


def test_token_server_records_queries() -> None:
    with lab.token_server(default="empty", expires_in=None) as ts:
        h, port = ts.realm.split("//")[1].split("/")[0].split(":")
        conn = http.client.HTTPConnection(h, int(port), timeout=10)
        conn.request("GET", "/token?service=s&scope=repository:a/b:pull")
        body = json.loads(conn.getresponse().read())
        conn.close()
    assert set(body) == {"token", "issued_at"}  # no expires_in: the client must default it
    (req,) = ts.requests
    assert req.query == {"service": ["s"], "scope": ["repository:a/b:pull"]}
    assert ts.issued == [body["token"]]


def test_token_server_in_a_child_process(tmp_path: Path) -> None:
    import asyncio

    from kotsrewrite import ImageRef, ProbeOptions, Verdict, probe

    ts = lab.TokenServerProcess(policy={"private/*": "empty"})
    try:
        with lab.registry(auth="token", token_server=ts, workdir=tmp_path) as reg:
            reg.push("public/a", "1")
            reg.push("private/a", "1")
            results = asyncio.run(
                probe(
                    [
                        ImageRef.parse(reg.ref("public/a", "1")),
                        ImageRef.parse(reg.ref("private/a", "1")),
                    ],
                    ProbeOptions(insecure_registries=frozenset({reg.host})),
                )
            )
        assert [r.verdict for r in results] == [Verdict.PUBLIC, Verdict.PRIVATE]
    finally:
        ts.stop()
    assert ts.proc.poll() is not None

"""Stress: 2,000 images on three real registries behind fault-injecting proxies.

Registries (CNCF Distribution, loopback): an anonymous one (600 public images: 60 repositories
x 9 tags + the digest), a token one (600 public images in ``public/*`` and 400 private ones in
``private/*``, whose tokens carry an empty grant) and an htpasswd one (400 private images). Each
registry and the token server sit behind a :class:`tests.lab.FaultProxy` that, from a seeded
RNG, answers 503 to 5% of requests and resets the connection for another 5%.

Run 1 (``rewrite()`` of one manifest file naming the 2,000 images): every image gets a verdict;
the retries turn (nearly) every one into its real verdict; the run ends within its budget;
memory stays bounded. Run 2, with run 1's report as ``known_images``, makes no request at all.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kotsrewrite import ImageRef, ProbeOptions, ProbeResult, Verdict, probe_sync
from kotsrewrite._plan import RewriteOptions
from kotsrewrite._report import dump_report, load_known_images
from kotsrewrite._rewrite import rewrite
from tests import lab
from tests.name_proxy import NameProxy

pytestmark = pytest.mark.slow

REPOS_PER_KIND = {"anon": 60, "token-public": 60, "token-private": 40, "basic": 40}
TAGS = 9  # plus the digest: 10 references per repository
RUN_BUDGET = 60.0  # seconds for run 1 (2,000 probes, ~10% of requests failing); ~20 s measured
MEMORY_BUDGET = 150 * 1024 * 1024  # bytes of RSS growth during run 1
SEED = 20261123


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssPeak:
    """Samples this process's RSS every 20 ms in a thread; :attr:`peak` is the highest."""

    def __init__(self) -> None:
        self.base = _rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The three registries, their proxies, and the 2,000 references with expected verdicts."""
    if not lab.have_registry():
        pytest.skip("docker-registry is not installed")
    root = tmp_path_factory.mktemp("stress")
    with (
        lab.token_server(policy={"public/*": "grant", "private/*": "empty"}) as ts,
        lab.fault_proxy(f"http://127.0.0.1:{ts.port}", seed=SEED) as ts_proxy,
        lab.registry(workdir=root / "anon") as anon,
        lab.registry(
            auth="token", token_server=ts, realm=f"{ts_proxy.url}/token", workdir=root / "token"
        ) as tok,
        lab.registry(auth="htpasswd", workdir=root / "basic") as basic,
        lab.fault_proxy(anon.url, seed=SEED + 1) as anon_p,
        lab.fault_proxy(tok.url, seed=SEED + 2) as tok_p,
        lab.fault_proxy(basic.url, seed=SEED + 3) as basic_p,
    ):
        expected: dict[str, Verdict] = {}
        for reg, proxy, prefix, n in (
            (anon, anon_p, "", REPOS_PER_KIND["anon"]),
            (tok, tok_p, "public/", REPOS_PER_KIND["token-public"]),
        ):
            repos = [f"{prefix}app{i}" for i in range(n)]
            # One repository pushed over HTTP with its 9 tags, then cloned on disk: the
            # registry keeps no tag cache, so a copied repository directory is served as if
            # pushed (1,000 HTTP pushes would cost ~10 s of setup).
            digest = reg.push(repos[0], "t0")
            manifest = reg.request(
                "GET",
                f"/v2/{repos[0]}/manifests/t0",
                headers={"Accept": lab.OCI_MANIFEST},
                repos=[repos[0]],
            )[2]
            for t in range(1, TAGS):
                status, _, text = reg.request(
                    "PUT",
                    f"/v2/{repos[0]}/manifests/t{t}",
                    body=manifest,
                    headers={"Content-Type": lab.OCI_MANIFEST},
                    repos=[repos[0]],
                )
                assert status == 201, text[:200]
            store = reg.dir / "data" / "docker" / "registry" / "v2" / "repositories"
            for r in repos[1:]:
                shutil.copytree(store / repos[0], store / r)
            assert reg.manifest_status(repos[-1], f"t{TAGS - 1}") == 200
            assert reg.manifest_status(repos[-1], digest) == 200
            for r in repos:
                for t in range(TAGS):
                    expected[f"{proxy.host}/{r}:t{t}"] = Verdict.PUBLIC
                expected[f"{proxy.host}/{r}@{digest}"] = Verdict.PUBLIC
        # Private images need no push: the auth layer answers first (empty grant / Basic).
        fake = "sha256:" + "ab" * 32
        for proxy, prefix, n in (
            (tok_p, "private/", REPOS_PER_KIND["token-private"]),
            (basic_p, "", REPOS_PER_KIND["basic"]),
        ):
            for i in range(n):
                for t in range(TAGS):
                    expected[f"{proxy.host}/{prefix}secret{i}:t{t}"] = Verdict.PRIVATE
                expected[f"{proxy.host}/{prefix}secret{i}@{fake}"] = Verdict.PRIVATE
        assert len(expected) == 2000
        proxies = [ts_proxy, anon_p, tok_p, basic_p]
        for p in proxies:
            p.clear()
        yield {"expected": expected, "proxies": proxies, "root": root}


def _manifest_file(path: Path, refs: Sequence[str]) -> None:
    docs = []
    for d in range(0, len(refs), 10):
        containers = [{"name": f"c{j}", "image": ref} for j, ref in enumerate(refs[d : d + 10])]
        docs.append(
            json.dumps(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": f"app{d // 10}"},
                    "spec": {
                        "selector": {"matchLabels": {"app": f"app{d // 10}"}},
                        "template": {
                            "metadata": {"labels": {"app": f"app{d // 10}"}},
                            "spec": {"containers": containers},
                        },
                    },
                }
            )
        )
    path.write_text("\n---\n".join(docs) + "\n")


@pytest.fixture()
def names(fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Each fault proxy's ``127.0.0.1:PORT`` -> a name without a port (``r1.stress``), reached
    through a loopback proxy from the environment: a private image on a registry with a
    port cannot be proxied, and rewrite refuses it (issue 13)."""
    mapping = {p.host: f"r{i}.stress" for i, p in enumerate(fleet["proxies"])}
    with NameProxy({name: host for host, name in mapping.items()}) as proxy:
        for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTPS_PROXY"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # token realms: direct
        yield mapping


def test_two_thousand_images_with_ten_percent_faults(
    fleet: dict[str, Any], names: dict[str, str], tmp_path: Path
) -> None:
    def named(ref: str) -> str:
        host, _, rest = ref.partition("/")
        return f"{names.get(host, host)}/{rest}"

    expected: dict[str, Verdict] = {named(r): v for r, v in fleet["expected"].items()}
    proxies: list[lab.FaultProxy] = fleet["proxies"]
    refs = sorted(expected)
    source = tmp_path / "app.yaml"
    _manifest_file(source, refs)
    options = RewriteOptions(app_slug="stress", license_id="stress-license-0001")
    probe_options = ProbeOptions(
        insecure_registries=frozenset(p.host for p in proxies) | frozenset(names.values()),
        concurrency=64,
        per_registry=16,
        max_attempts=4,
        backoff=0.05,
        timeout=20.0,
    )
    results: list[ProbeResult] = []

    def prober(images: Sequence[ImageRef]) -> list[ProbeResult]:
        out = probe_sync(images, probe_options)
        results.extend(out)
        return out

    t0 = time.monotonic()
    with _RssPeak() as mem:
        first = rewrite(source, options, out=tmp_path / "out1", prober=prober)
    elapsed = time.monotonic() - t0
    requests_1 = sum(p.requests for p in proxies)
    faults_1 = sum(p.faults for p in proxies)

    # every image a verdict, and (almost) every one its real verdict despite the faults
    assert len(results) == 2000
    assert {r.image.original for r in results} == set(expected)
    got = Counter(str(r.verdict) for r in results)
    wrong = [r for r in results if r.verdict is not expected[r.image.original]]
    assert all(r.verdict is Verdict.UNREACHABLE for r in wrong), [
        (r.image.original, r.verdict, r.evidence.reason) for r in wrong[:5]
    ]
    assert len(wrong) <= 20, f"{len(wrong)} images lost to injected faults"
    assert faults_1 >= 0.07 * requests_1  # the faults really happened (~10%)
    assert elapsed < RUN_BUDGET
    assert mem.peak - mem.base < MEMORY_BUDGET
    retried = sum(1 for r in results if any(s.attempt > 1 for s in r.evidence.steps))
    print(
        f"\nstress run 1: {len(results)} images in {elapsed:.1f} s, verdicts {dict(got)},"
        f" {len(wrong)} unreachable; {requests_1} requests, {faults_1} faults injected,"
        f" {retried} images needed a retry; RSS +{(mem.peak - mem.base) / 2**20:.1f} MiB"
    )

    # run 2: the report as cache -> no request at all (for every public/private verdict)
    report = tmp_path / "report.json"
    report.write_text(dump_report(first.report), encoding="utf-8")
    known = load_known_images(report)
    for p in proxies:
        p.clear()
    second_results: list[ProbeResult] = []

    def prober2(images: Sequence[ImageRef]) -> list[ProbeResult]:
        out = probe_sync(images, probe_options)
        second_results.extend(out)
        return out

    t1 = time.monotonic()
    second = rewrite(source, options, out=tmp_path / "out2", known_images=known, prober=prober2)
    elapsed_2 = time.monotonic() - t1
    requests_2 = sum(p.requests for p in proxies)
    unknown = {r.image.original for r in results if not r.verdict.is_known}
    assert {r.original for r in second.probed} == unknown
    if not unknown:
        assert requests_2 == 0
        assert second.probed == ()
    print(f"stress run 2 (cached): {requests_2} requests, {elapsed_2:.1f} s")
    # same decisions for every image proved in run 1
    assert len(known) == 2000 - len(unknown)

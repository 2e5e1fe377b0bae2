"""Token requests for several repositories at once (``ProbeOptions.token_batch``), against the
lab's real token-auth registry and token server (a host of its own, like Docker Hub's).

A batch is only an optimisation: each repository the token grants ``pull`` on uses it, any
other gets a token of its own, so verdicts never differ from one-token-per-repository.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from kotsrewrite import ImageRef, ProbeOptions, ProbeResult, Verdict
from kotsrewrite._probe import Prober
from tests import lab

pytestmark = pytest.mark.registry


def _probe(reg: lab.Registry, refs: list[str], token_batch: int) -> tuple[list[ProbeResult], int]:
    opts = ProbeOptions(
        insecure_registries=frozenset({reg.host}), per_registry=2, token_batch=token_batch
    )

    async def run() -> tuple[list[ProbeResult], int]:
        async with Prober(opts) as prober:
            results = await prober.probe([ImageRef.parse(r) for r in refs])
        return results, prober.requests

    return asyncio.run(run())


def _token_requests(ts: lab.TokenServer) -> list[list[str]]:
    return [r.query.get("scope", []) for r in ts.requests if r.path == "/token"]


def test_one_token_request_for_several_public_repositories(
    token_registry: lab.Registry, lab_token_server: lab.TokenServer
) -> None:
    repos = [f"public/batch-{i}" for i in range(20)]
    token_registry.push_many([(r, "1.0") for r in repos])
    refs = [token_registry.ref(r, "1.0") for r in repos]

    lab_token_server.clear()
    one_each, requests_one_each = _probe(token_registry, refs, token_batch=1)
    assert len(_token_requests(lab_token_server)) == 20

    lab_token_server.clear()
    batched, requests_batched = _probe(token_registry, refs, token_batch=8)
    asked = _token_requests(lab_token_server)
    # The first wave (2) fetches alone, inside its registry slots; the other 18 go 8 at a time.
    assert sorted(len(scopes) for scopes in asked) == [1, 1, 2, 8, 8]
    assert sorted(s for scopes in asked for s in scopes) == sorted(
        f"repository:{r}:pull" for r in repos
    )
    assert requests_one_each - requests_batched == 20 - 5

    assert [r.verdict for r in batched] == [r.verdict for r in one_each] == [Verdict.PUBLIC] * 20
    for res in batched[2:]:
        steps = [(s.step, s.status) for s in res.evidence.steps]
        assert steps[-1] == ("manifest", 200)
        assert steps[0][0].startswith("token (batch of ") and steps[0][1] == 200, steps
        assert res.evidence.reason == "manifest HEAD 200 with anonymous token"


def test_a_batch_changes_no_verdict_when_it_grants_only_some(
    token_registry: lab.Registry, lab_token_server: lab.TokenServer
) -> None:
    # public/* granted, private/* an empty grant (Docker Hub-like), refused/* a 401 from the
    # token service for any request naming it (GHCR-like: the whole batch is refused).
    public = [f"public/mix-{i}" for i in range(8)]
    private = [f"private/mix-{i}" for i in range(6)]
    refused = [f"refused/mix-{i}" for i in range(4)]
    token_registry.push_many([(r, "1.0") for r in public + private + refused])
    # The first wave is public (its own tokens show that this service names its grants),
    # then public and private alternate, then the refused ones.
    mixed = [x for pair in itertools.zip_longest(public[2:], private) for x in pair if x]
    order = public[:2] + mixed + refused
    refs = [token_registry.ref(r, "1.0") for r in order]
    expected = {r: Verdict.PUBLIC for r in public}
    expected |= {r: Verdict.PRIVATE for r in private + refused}

    lab_token_server.clear()
    batched, _ = _probe(token_registry, refs, token_batch=8)
    asked = _token_requests(lab_token_server)
    one_each, _ = _probe(token_registry, refs, token_batch=1)

    assert [r.verdict for r in batched] == [r.verdict for r in one_each]
    assert [r.verdict for r in batched] == [expected[r] for r in order]
    assert max(len(scopes) for scopes in asked) > 1  # batches were sent
    by_repo = {r.image.repository: r for r in batched}
    for repo in private:
        steps = [(s.step, s.status) for s in by_repo[repo].evidence.steps]
        assert steps[-1] == ("manifest", 401), steps
        # not granted by its batch: asked again alone, and both requests are its evidence
        if steps[0][0].startswith("token (batch"):
            assert steps[1] == ("token", 200), steps
    for repo in refused:
        steps = [(s.step, s.status) for s in by_repo[repo].evidence.steps]
        assert steps[-1] == ("token", 401), steps

"""The peer of the probe benchmark: ``skopeo inspect`` once per image, ten at a time.

A stand-in for KOTS's probe loop: containers/image (the library KOTS uses), concurrency 10,
a fresh process per image so nothing (connections, challenges, tokens) is shared between
images. Each image gets::

    skopeo inspect --raw --no-creds [--tls-verify=false] docker://IMAGE

and its exit code and stderr map to a :class:`kotsrewrite.Verdict`:

- exit 0: ``public``;
- ``toomanyrequests`` / ``429``: ``rate_limited`` (skopeo has already retried);
- the ``/v2/`` ping failed (connect, DNS, TLS, 5xx, 404): ``unreachable``;
- ``denied``, ``unauthorized``, ``authentication required``, ``StatusCode: 401/403``:
  ``private``;
- ``manifest unknown``, ``name unknown``, ``not found``, ``StatusCode: 404``: ``not_found``;
- anything else (connection refused, TLS, 5xx, our timeout): ``unreachable``.

What skopeo 1.9.3 prints, checked against docker-registry 2.8.2 and a stub registry on
127.0.0.1 (each message follows ``level=fatal msg="Error parsing image name \\"docker://...\\": ``):

- anonymous registry, missing tag or repository: ``reading manifest TAG in REPO: manifest
  unknown: manifest unknown``;
- htpasswd registry (Basic challenge), any repository, present or not: ``reading manifest TAG
  in REPO: unauthorized: authentication required``;
- token endpoint answers 401 (GHCR, ACR): ``unable to retrieve auth token: invalid
  username/password: unauthorized``;
- token with an empty grant, then 401 ``insufficient_scope`` (Docker Hub, Quay): ``errors:
  denied: requested access to the resource is denied unauthorized: authentication required``;
- 403 ``DENIED`` (GAR/GCR): ``denied: <message>``; 403 without a body (GitLab):
  ``StatusCode: 403,``; 404 without a body: ``StatusCode: 404,``; ``NAME_UNKNOWN``: ``name
  unknown``;
- 429 ``TOOMANYREQUESTS``: retried by skopeo (about 4 s with ``Retry-After: 1``), then
  ``toomanyrequests: <message>``;
- 500: ``received unexpected HTTP status: 500 Internal Server Error``;
- nothing listening: ``pinging container registry HOST: Get "http://HOST/v2/": dial tcp
  HOST: connect: connection refused``.

With ``--tls-verify=false`` skopeo treats the registry as insecure: it tries HTTPS without
verifying the certificate and falls back to plain HTTP when the server does not speak TLS
(checked: a plain-HTTP registry on 127.0.0.1:PORT answers; without the flag skopeo fails
with ``http: server gave HTTP response to HTTPS client``). Note that skopeo reads manifests
with GET, which Docker Hub counts against the pull rate limit; our prober uses HEAD.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from kotsrewrite import Verdict

__all__ = ["SkopeoResult", "classify", "excerpt", "run_skopeo", "skopeo_command"]

_EXCERPT = 300
_PREFIX = re.compile(r'^.*?level=fatal msg="(?:Error parsing image name \\"[^"\\]*\\": )?', re.S)

_RATE_LIMITED = ("toomanyrequests", "too many requests", "statuscode: 429", "status: 429")
_PRIVATE = (
    "denied",
    "unauthorized",
    "authentication required",
    "statuscode: 401",
    "statuscode: 403",
    "status: 401",
    "status: 403",
)
_NOT_FOUND = ("manifest unknown", "name unknown", "not found", "statuscode: 404", "status: 404")


class SkopeoResult(NamedTuple):
    """One image's outcome: verdict, seconds taken, and what skopeo said (trimmed)."""

    verdict: Verdict
    elapsed: float
    stderr: str


def classify(returncode: int, stderr: str) -> Verdict:
    """Map skopeo's exit code and stderr to a verdict (see the module docstring)."""
    if returncode == 0:
        return Verdict.PUBLIC
    text = stderr.lower()
    if any(word in text for word in _RATE_LIMITED):
        return Verdict.RATE_LIMITED
    if "pinging container registry" in text and not any(w in text for w in _PRIVATE):
        return Verdict.UNREACHABLE  # never reached a manifest (refused, DNS, TLS, 5xx on /v2/)
    if any(word in text for word in _PRIVATE):
        return Verdict.PRIVATE
    if any(word in text for word in _NOT_FOUND):
        return Verdict.NOT_FOUND
    return Verdict.UNREACHABLE


def excerpt(stderr: str) -> str:
    """The useful part of skopeo's fatal message, on one line, at most 300 characters."""
    text = _PREFIX.sub("", stderr.strip(), count=1)
    text = text.replace("\\n", " ").replace("\\", "")
    text = " ".join(text.split()).rstrip('"')
    return text[:_EXCERPT]


def _pullable(image: str) -> str:
    """``name:tag@digest`` -> ``name@digest``: skopeo 1.9 refuses a tag with a digest ("Docker
    references with both a tag and digest are currently not supported"); the digest is what is
    pulled, so the tag is dropped."""
    name, at, digest = image.partition("@")
    if not at:
        return image
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return f"{name}@{digest}"


def skopeo_command(image: str, *, insecure: bool = True, skopeo: str = "skopeo") -> list[str]:
    """The argv run for one image (a tag next to a digest is dropped: the digest is pulled)."""
    argv = [skopeo, "inspect", "--raw", "--no-creds"]
    if insecure:
        argv.append("--tls-verify=false")
    argv.append(f"docker://{_pullable(image)}")
    return argv


def _environment() -> dict[str, str]:
    # No credentials may leak in: --no-creds already ignores auth files; also point
    # REGISTRY_AUTH_FILE at nothing so a misconfigured host cannot change the result.
    env = dict(os.environ)
    env["REGISTRY_AUTH_FILE"] = os.devnull
    return env


def _inspect_one(image: str, insecure: bool, timeout: float, skopeo: str) -> SkopeoResult:
    argv = skopeo_command(image, insecure=insecure, skopeo=skopeo)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the manifest itself is not needed
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            env=_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        elapsed = time.perf_counter() - start
        return SkopeoResult(Verdict.UNREACHABLE, elapsed, f"timed out after {timeout:g} s")
    except OSError as exc:
        elapsed = time.perf_counter() - start
        return SkopeoResult(Verdict.UNREACHABLE, elapsed, f"could not run skopeo: {exc}")
    elapsed = time.perf_counter() - start
    return SkopeoResult(classify(proc.returncode, proc.stderr), elapsed, excerpt(proc.stderr))


def run_skopeo(
    images: Iterable[str],
    parallel: int = 10,
    insecure: bool = True,
    timeout: float = 60.0,
    *,
    skopeo: str = "skopeo",
) -> dict[str, SkopeoResult]:
    """Run ``skopeo inspect --raw --no-creds`` once per distinct image, ``parallel`` at a time.

    Returns ``{image: (verdict, elapsed seconds, stderr excerpt)}`` in the order given.
    ``insecure`` adds ``--tls-verify=false`` (no certificate check, plain HTTP fallback);
    ``timeout`` bounds each process (a timeout is ``unreachable``).
    """
    if parallel < 1:
        raise ValueError("parallel must be >= 1")
    if shutil.which(skopeo) is None:
        raise FileNotFoundError(f"{skopeo} not found on PATH")
    unique = list(dict.fromkeys(images))
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="skopeo") as pool:
        futures = {
            image: pool.submit(_inspect_one, image, insecure, timeout, skopeo) for image in unique
        }
        results: Mapping[str, SkopeoResult] = {
            image: future.result() for image, future in futures.items()
        }
    return dict(results)

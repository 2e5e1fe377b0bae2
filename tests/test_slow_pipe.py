"""Every command that writes after probing, read through a slow pipe (issue 13, item 1).

A reader that takes 64 KiB every 0.2 s keeps the pipe full, so each large write blocks. On
uvloop (dropped since) the first such write returned short after probing, and with
``PYTHONUNBUFFERED=1`` Python's text stdout dropped the rest: 65,536 bytes arrived, exit 0.
Here ``probe --format json``, ``post-render`` and ``rewrite --report -`` each probe 400
images on the lab registries (one module fixture for all three) in a real child process
whose stdout is such a pipe, and all of their output must arrive and parse.

uvloop's short write came only when the write blocked within a few milliseconds of the
loop's end (a race: 1 to 4 runs in 6 of a bare reproduction), so the children also get a
signal every 20 ms, which makes every blocking write return short the same way: the code
before the fix then loses output every time (see also test_integrity).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import yaml as pyyaml

from tests import lab
from tests.name_proxy import NameProxy
from tests.test_integrity import INTERRUPTED_CHILD

pytestmark = [pytest.mark.registry, pytest.mark.slow]

N = 100  # images of each kind below: 400 in all


@attrs.frozen
class Lab:
    images: dict[str, str]
    """Image -> expected verdict."""
    env: dict[str, str]
    insecure: list[str]


@pytest.fixture(scope="module")
def many(
    anon_registry: lab.Registry, basic_registry: lab.Registry, token_registry: lab.Registry
) -> Iterator[Lab]:
    """400 images on the lab registries: public with a port (kept as they are), and, by
    names without a port (see tests/name_proxy.py), private (Basic challenge, token empty
    grant) and missing ones."""
    public = [(f"slow/pub{i}", "1.0") for i in range(N // 2)]
    anon_registry.push_many(public)
    token_public = [(f"public/slow{i}", "1.0") for i in range(N // 2)]
    token_registry.push_many(token_public)
    images = {anon_registry.ref(repo, tag): "public" for repo, tag in public}
    images |= {f"token.lab/{repo}:{tag}": "public" for repo, tag in token_public}
    images |= {f"basic.lab/team/app{i}:1.0": "private" for i in range(N)}
    images |= {f"token.lab/private/slow{i}:1.0": "private" for i in range(N)}
    images |= {f"anon.lab/gone/app{i}:1.0": "not_found" for i in range(N)}
    names = {
        "anon.lab": anon_registry.host,
        "basic.lab": basic_registry.host,
        "token.lab": token_registry.host,
    }
    with NameProxy(names) as proxy:
        env = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        }
        env |= {"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1,localhost"}
        env["PYTHONUNBUFFERED"] = "1"  # as on the machine of the report: no buffered retry
        yield Lab(images, env, [anon_registry.host, *names])


def _slow_run(
    args: list[str], env: dict[str, str], stdin: bytes | None = None, cwd: Path | None = None
) -> tuple[int, bytes, str]:
    """Run ``kotsrewrite ARGS`` with a signal every 20 ms (so that any blocking write on a full
    pipe returns short, as uvloop's made the first one do, only sometimes); read its stdout
    64 KiB every 0.2 s."""
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_CHILD, *args],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()))  # type: ignore[union-attr]
    drain.start()
    if stdin is not None:
        assert proc.stdin is not None
        feed = threading.Thread(target=lambda: (proc.stdin.write(stdin), proc.stdin.close()))  # type: ignore[union-attr]
        feed.start()
    chunks = []
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.2)
        chunk = os.read(fd, 64 * 1024)
        if not chunk:
            break
        chunks.append(chunk)
    code = proc.wait(30)
    drain.join(30)
    proc.stdout.close()
    return code, b"".join(chunks), b"".join(errors).decode()


def _insecure(lab_: Lab) -> list[str]:
    return [arg for host in lab_.insecure for arg in ("--insecure-registry", host)]


def test_probe_json_through_a_slow_pipe(many: Lab) -> None:
    code, out, err = _slow_run(
        ["probe", *many.images, "--format", "json", *_insecure(many), "-q"], many.env
    )
    assert code == 0, err
    assert len(out) > 4 * 64 * 1024, len(out)  # far more than a pipe holds
    doc = json.loads(out)
    assert {e["image"]: e["verdict"] for e in doc["images"]} == many.images


def _manifests(images: dict[str, str]) -> str:
    docs = []
    for i, image in enumerate(images):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"p{i}"},
                "spec": {
                    "containers": [{"name": "c", "image": image, "args": [f"id={i}" * 12] * 10}]
                },
            }
        )
    return "".join(f"---\n{json.dumps(doc)}\n" for doc in docs)


def test_post_render_through_a_slow_pipe(many: Lab) -> None:
    stdin = _manifests(many.images).encode()
    argv = ["post-render", "--app-slug", "lab", "--license-id", "LIC-SLOW", *_insecure(many)]
    code, out, err = _slow_run([*argv, "-q"], many.env, stdin=stdin)
    assert code == 0, err
    assert len(out) > 4 * 64 * 1024, len(out)
    objects = [d for d in pyyaml.safe_load_all(out) if d]
    pods = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Pod"}
    assert len(pods) == len(many.images)
    assert [o["kind"] for o in objects if o["kind"] != "Pod"] == ["Secret"]
    for i, (image, verdict) in enumerate(many.images.items()):
        container = pods[f"p{i}"]["spec"]["containers"][0]
        assert container["args"] == [f"id={i}" * 12] * 10
        if verdict == "public":
            assert container["image"] == image
        else:  # private, and not_found under --on-unknown private
            assert container["image"] == f"proxy.replicated.com/proxy/lab/{image}"


def test_rewrite_report_through_a_slow_pipe(many: Lab, tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(_manifests(many.images))
    argv = ["rewrite", "app.yaml", "--app-slug", "lab", "--license-id", "LIC-SLOW"]
    argv += ["--report", "-", *_insecure(many), "-q"]
    code, out, err = _slow_run(argv, many.env, cwd=tmp_path)
    assert code == 0, err
    assert len(out) > 4 * 64 * 1024, len(out)
    report = json.loads(out)
    assert {e["image"]: e["verdict"] for e in report["images"]} == many.images
    assert (tmp_path / "midstream" / "kustomization.yaml").is_file()

"""Benchmark: kotsrewrite's prober vs KOTS's probe loop (skopeo, 10 at a time) vs the bound.

Starts its own real registries (CNCF Distribution, ``/usr/bin/docker-registry``) on loopback,
all over TLS (a ``trustme`` CA; skopeo over plain HTTP would waste a connection trying HTTPS
first, and Distribution offers HTTP/2 over TLS):

* ``anonymous``: no auth (public images; 10 % of the images ask for a missing tag);
* ``htpasswd``: Basic auth (every image private);
* ``token-grant``: token auth, the token server grants pull (public behind tokens; 10 % ask
  for a missing tag);
* ``token-empty``: token auth, tokens with an empty grant, then 401 (private, Docker Hub-like);
* ``token-refuse``: token auth, the token endpoint answers 401 (private, GHCR-like).

Each token registry has its own token server (``tests.lab.TokenServer`` over TLS) in a child
process. One image per repository, the images spread evenly over the five registries, pushed
with ``tests.lab.Registry.push_many``. A latency relay (``benchmarks._relay.LatencyRelay``,
one-way delay RTT/2, a new connection costs one extra RTT) sits in front of every registry and
token server; all relays run in ONE CHILD PROCESS, so their CPU does not count against the
prober (which runs in this process), nor do the token servers' or the registries'. The relay
child runs on asyncio's loop; the registries run with ``GOMAXPROCS=1 GOGC=400`` (less
CPU competing with the prober on a small machine; skopeo keeps Go's defaults). Kernel
``netem`` in a namespace of our own would cost no user-space CPU: ``benchmarks._netem``
checks whether this kernel has it and the header line says why it is not used.

Then, on the same image list:

(a) kotsrewrite's prober: ``kotsrewrite.probe`` (library call, one process, a fresh
    ``Prober`` each run, cold caches); run ``--repeat`` times (default 3), the median is used;
(b) the peer: ``skopeo inspect --raw --no-creds --tls-verify=false`` once per image, 10 in
    parallel (``benchmarks._skopeo.run_skopeo``), once;
(c) the bound: for each registry ``(ceil(repos / per_registry) * rt_per_repo + rt_first) *
    RTT``, the maximum over registries. Round trips per repository once the registry's
    challenge is known: anonymous 1 (HEAD), htpasswd 1 (HEAD -> 401 Basic), token-grant and
    token-empty 2 (token GET + HEAD), token-refuse 1 (token GET -> 401); ``rt_first`` = 1 for
    token registries (the first wave's anonymous HEAD that learns the challenge), else 0.
    TCP and TLS handshakes are not counted (they are per connection, not per repository).
    This bound assumes token and manifest requests share the registry slot (KOTS, skopeo);
    the table also prints (c'), the floor of the prober's own schedule, which fetches tokens
    ahead of the slot: a first wave of 3 round trips (2 for a refused token), then 1 a wave.

Prints a table, every verdict that differs between (a) and (b) (exit status 1 if any), and
as the last line ``RESULT images=N speedup_vs_skopeo=X ratio_to_bound=Y`` where
``speedup = skopeo seconds / prober seconds`` and ``ratio = prober seconds / bound seconds``.

Run: ``.venv/bin/python benchmarks/probe_bench.py [--images 500] [--rtt-ms 20]
[--per-registry N] [--repeat 3] [--quick]`` (``--quick``: 100 images, under a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS: list[tuple[str, str, str | None]] = [
    # (name, registry auth, token server behaviour)
    ("anonymous", "none", None),
    ("htpasswd", "htpasswd", None),
    ("token-grant", "token", "grant"),
    ("token-empty", "token", "empty"),
    ("token-refuse", "token", "refuse"),
]
RT_PER_REPO = {
    "anonymous": 1,
    "htpasswd": 1,
    "token-grant": 2,
    "token-empty": 2,
    "token-refuse": 1,
}
FLOOR_LABEL = "(c') prober's own floor"
RT_FIRST = {"anonymous": 0, "htpasswd": 0, "token-grant": 1, "token-empty": 1, "token-refuse": 1}
MISSING_EVERY = 10  # every 10th image of the public registries asks for a missing tag


# --------------------------------------------------------------------------------------------
# Child processes: relays, token servers


def _relay_child(delay_ms: float, pairs: list[str]) -> int:
    from benchmarks._relay import LatencyRelay

    async def main() -> None:
        relays = []
        for pair in pairs:
            listen, target = pair.split(":")
            relay = LatencyRelay("127.0.0.1", int(target), delay_ms, port=int(listen))
            await relay.start()
            relays.append(relay)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for relay in relays:
            await relay.close()
        if os.environ.get("KR_BENCH_RELAY_STATS"):
            conns = sum(r.stats().connections for r in relays)
            print(f"relays: {conns} connections accepted", file=sys.stderr)

    _run_loop(main())
    return 0


def _run_loop(coro: Any) -> Any:
    """``asyncio.run``: the prober runs on asyncio's own loop, as ``probe_sync`` does."""
    return asyncio.run(coro)


class _PemTls:
    """Stands in for a ``trustme.CA`` in the token server child: a ready certificate."""

    def __init__(self, pem: str) -> None:
        self.pem = pem

    def issue_cert(self, *_names: str) -> _PemTls:
        return self

    def configure_cert(self, ctx: Any) -> None:
        ctx.load_cert_chain(self.pem)


def _token_child(key_file: str, port: int, default: str, cert_pem: str) -> int:
    from tests.lab import TokenServer

    server = TokenServer(
        default=default,
        port=port,
        key_pem=Path(key_file).read_bytes(),
        tls=_PemTls(cert_pem),
    )
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()
    return 0


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"child {args[0]} did not start: {line!r}")
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------------------------
# The benchmark


def _proc_cpu(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the given live processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _without(hooks: list[str]) -> None:
    """Run the prober on the fallbacks of ``hooks`` (kotsrewrite/_registry/_compat.py), to
    measure what each hook pays: ``plain-hpack`` (h2's Huffman-coding HPACK encoder kept),
    ``asyncio-backend`` (httpcore's own anyio network backend instead of the asyncio one,
    which reads ``StreamReader._buffer``)."""
    from kotsrewrite._registry import _pools

    if "plain-hpack" in hooks:
        _pools.use_plain_hpack = lambda conn: True  # type: ignore[assignment]
    if "asyncio-backend" in hooks:
        init = _pools.OriginPool.__init__

        def anyio_pool(self: Any, protocols: Any, key: Any, **kwargs: Any) -> None:
            init(self, protocols, key, **{**kwargs, "network_backend": None})

        _pools.OriginPool.__init__ = anyio_pool  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    import attrs
    import trustme
    from cryptography.hazmat.primitives import serialization

    from benchmarks._skopeo import run_skopeo
    from kotsrewrite import ImageRef, Verdict
    from kotsrewrite._probe import ProbeOptions, probe
    from tests import lab

    images_n = 100 if args.quick and args.images is None else (args.images or 500)
    repeat = 1 if args.quick and args.repeat is None else (args.repeat or 3)
    per_registry = args.per_registry or ProbeOptions().per_registry
    from benchmarks._netem import netem_unavailable

    why_not_netem = netem_unavailable()
    relay_mode = True  # kernel netem is not wired in yet: see benchmarks/README.md
    rtt = args.rtt_ms
    per_kind = [images_n // len(KINDS) + (1 if i < images_n % len(KINDS) else 0) for i in range(5)]
    print(
        f"probe_bench: {images_n} images over {len(KINDS)} registries, RTT {rtt:g} ms,"
        f" per-registry limit {per_registry}, load average {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs"
        + (f", without {', '.join(args.without)}" if args.without else ""),
        flush=True,
    )
    _without(args.without or [])
    print(
        "latency: Python relays in one child process"
        + (f" (kernel netem unavailable: {why_not_netem})" if why_not_netem else ""),
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="kotsrewrite-probe-bench-"))
    ca = trustme.CA()
    ca_file = work / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf_file = work / "leaf.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(leaf_file))

    procs: list[subprocess.Popen[str]] = []
    registries: list[Any] = []
    try:
        # Ports first, so that one relay child can be started before the servers.
        ports: dict[str, dict[str, int]] = {}
        for name, _auth, behaviour in KINDS:
            p = {"reg": lab.free_port(), "reg_relay": lab.free_port()}
            if behaviour is not None:
                p["ts"] = lab.free_port()
                p["ts_relay"] = lab.free_port()
            ports[name] = p
        pairs = []
        for p in ports.values():
            pairs.append(f"{p['reg_relay']}:{p['reg']}")
            if "ts" in p:
                pairs.append(f"{p['ts_relay']}:{p['ts']}")
        procs.append(_spawn(["--_relays", str(rtt / 2.0), *pairs]))

        t0 = time.monotonic()
        refs: list[str] = []
        kind_of: dict[str, str] = {}
        for (name, auth, behaviour), count in zip(KINDS, per_kind, strict=True):
            p = ports[name]
            ts = None
            realm = None
            if behaviour is not None:
                ts = lab.TokenServer(default=behaviour)
                ts.stop()  # only its key (for lab pushes and the registry's trust) is used
                key_file = work / f"{name}.key"
                key_file.write_bytes(
                    ts._key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
                procs.append(
                    _spawn(["--_token", str(key_file), str(p["ts"]), behaviour, str(leaf_file)])
                )
                realm = f"https://127.0.0.1:{p['ts_relay']}/token"
            # The registries stand in for far-away machines; their CPU here only competes
            # with the prober. One OS thread of Go code each (the default, one per CPU, made
            # the five runtimes spin on both cores: ~40 % more CPU for the same requests) and
            # a lazier GC (GOGC=400: ~35 % less registry CPU). skopeo keeps the defaults.
            go_env = {"GOMAXPROCS": "1", "GOGC": "400"}
            saved = {k: os.environ.get(k) for k in go_env}
            os.environ.update(go_env)
            try:
                reg = lab.Registry(
                    auth=auth,
                    token_server=ts,
                    realm=realm,
                    tls=ca,
                    port=p["reg"],
                    log_level="error",
                )
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            registries.append(reg)
            repos = [f"bench/{name}/app-{i:04d}" for i in range(count)]
            reg.push_many([(r, "1.0") for r in repos])
            public = behaviour in (None, "grant") and auth != "htpasswd"
            for i, repo in enumerate(repos):
                tag = "missing" if public and i % MISSING_EVERY == MISSING_EVERY - 1 else "1.0"
                ref = f"127.0.0.1:{p['reg_relay']}/{repo}:{tag}"
                refs.append(ref)
                kind_of[ref] = name
        print(f"setup: {len(refs)} images pushed in {time.monotonic() - t0:.1f} s", flush=True)

        # (a) the prober
        options = ProbeOptions(per_registry=per_registry, ca_file=str(ca_file))
        if args.concurrency:
            options = attrs.evolve(options, concurrency=args.concurrency)
        if args.token_batch:
            options = attrs.evolve(options, token_batch=args.token_batch)
        parsed = [ImageRef.parse(r) for r in refs]
        walls: list[float] = []
        cpus: list[float] = []
        groups = {
            "relays": [procs[0].pid] if relay_mode else [],
            "token servers": [p.pid for p in procs[1 if relay_mode else 0 :]],
            "registries": [r.proc.pid for r in registries],
        }
        helper_pids = [pid for pids in groups.values() for pid in pids]
        helpers0 = _proc_cpu(helper_pids)
        group0 = {g: _proc_cpu(pids) for g, pids in groups.items()}
        prober: dict[str, Verdict] = {}
        for _ in range(repeat):
            c0 = time.process_time()
            w0 = time.perf_counter()
            results, requests = _run_loop(_probe_counted(parsed, options))
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            prober = {ref: r.verdict for ref, r in zip(refs, results, strict=True)}
        helpers_cpu = (_proc_cpu(helper_pids) - helpers0) / repeat
        group_cpu = {g: (_proc_cpu(pids) - group0[g]) / repeat for g, pids in groups.items()}
        prober_s = statistics.median(walls)

        if args.profile:
            import cProfile
            import io
            import pstats

            prof = cProfile.Profile(time.process_time)
            prof.enable()
            _run_loop(probe(parsed, options))
            prof.disable()
            out = io.StringIO()
            st = pstats.Stats(prof)
            by_pkg: Counter[str] = Counter()
            for (file, _line, _fn), row in st.stats.items():  # type: ignore[attr-defined]
                parts = file.split("site-packages/")
                pkg = parts[1].split("/")[0] if len(parts) > 1 else file.rsplit("/", 2)[-2:][0]
                by_pkg[pkg] += row[2]
            for pkg, t in by_pkg.most_common(20):
                out.write(f"{t:8.3f} {pkg}\n")
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(45)
            pstats.Stats(prof, stream=out).sort_stats("cumtime").print_stats(60)
            Path(args.profile).write_text(out.getvalue())
            print(f"profile written to {args.profile}")
        if args.timeline:
            _timeline(parsed, options, refs, kind_of)
        if args.no_skopeo:
            print(
                f"prober only: wall {', '.join(f'{w:.3f}' for w in walls)} s;"
                f" cpu {', '.join(f'{c:.3f}' for c in cpus)} s; {requests} requests;"
                f" helpers per run: {', '.join(f'{g} {c:.3f}' for g, c in group_cpu.items())}"
            )
            return 0

        # (b) skopeo
        sc0 = _cpu_children()
        w0 = time.perf_counter()
        peer = run_skopeo(refs, parallel=10, insecure=True)
        skopeo_s = time.perf_counter() - w0
        skopeo_cpu = _cpu_children() - sc0

        # (c) the bound
        bounds = {}
        for (name, _a, _b), count in zip(KINDS, per_kind, strict=True):
            rts = math.ceil(count / per_registry) * RT_PER_REPO[name] + RT_FIRST[name]
            bounds[name] = (rts, rts * rtt / 1000.0)
        bound_s = max(b for _, b in bounds.values())
        # (c') the floor of the prober's own schedule, which fetches a repository's token
        # while it waits for a registry slot (the token service is another host here, with
        # its own limit): after the first wave (anonymous HEAD -> 401, token, HEAD), one
        # round trip per wave on the registry; a refused token decides without the registry.
        floor_rts = {}
        for (name, _a, _b), count in zip(KINDS, per_kind, strict=True):
            later = math.ceil(max(count - per_registry, 0) / per_registry)
            if name in ("anonymous", "htpasswd"):
                floor_rts[name] = math.ceil(count / per_registry)
            elif name == "token-refuse":
                floor_rts[name] = 2 + later
            else:
                floor_rts[name] = 3 + later
        floor_s = max(floor_rts.values()) * rtt / 1000.0

        # Table
        print()
        print(f"{'registry':<14} {'images':>6} {'rt/repo':>7} {'bound s':>8}  verdicts (prober)")
        for (name, _a, _b), count in zip(KINDS, per_kind, strict=True):
            verdicts = Counter(str(v) for ref, v in prober.items() if kind_of[ref] == name)
            rts, b = bounds[name]
            desc = ", ".join(f"{k} {n}" for k, n in sorted(verdicts.items()))
            print(f"{name:<14} {count:>6} {RT_PER_REPO[name]:>7} {b:>8.3f}  {desc}")
        print()
        print(f"{'contender':<28} {'wall s':>8} {'cpu s':>8}  notes")
        runs = ", ".join(f"{w:.3f}" for w in walls)
        print(
            f"{'(a) kotsrewrite prober':<28} {prober_s:>8.3f} {statistics.median(cpus):>8.3f}"
            f"  median of {repeat} ({runs}); {requests} requests; in-process CPU"
        )
        print(
            f"{'    relays+servers (per run)':<28} {'':>8} {helpers_cpu:>8.3f}"
            "  CPU of the relay child, token servers and registries during (a): "
            + ", ".join(f"{g} {c:.3f}" for g, c in group_cpu.items())
        )
        print(
            f"{'(b) skopeo x10 parallel':<28} {skopeo_s:>8.3f} {skopeo_cpu:>8.3f}"
            "  one process per image; CPU of the skopeo processes"
        )
        print(
            f"{'(c) round-trip bound':<28} {bound_s:>8.3f} {'-':>8}"
            f"  max over registries of (ceil(repos/{per_registry}) * rt/repo + first) * {rtt:g} ms"
        )
        print(
            "    assumptions: rt/repo once the challenge is known: anonymous 1, htpasswd 1,"
            " token-grant 2, token-empty 2, token-refuse 1, all within the registry's slot"
            " (as KOTS and skopeo do); +1 for a token registry's first wave (learning the"
            " challenge); TCP/TLS handshakes not counted; relays, token servers and"
            " registries run in other processes."
        )
        print(
            f"{FLOOR_LABEL:<28} {floor_s:>8.3f} {'-':>8}"
            f"  ratio {prober_s / floor_s:.2f}: the prober fetches tokens ahead of the registry"
            " slot, so token registries cost 1 rt/repo after a first wave of 3 (refused: 2);"
            " a lower floor than (c)"
        )
        # (d) what this machine's CPU allows: the prober is one thread, and it shares the
        # cores with every relay, token server and registry of the run.
        cores = os.cpu_count() or 1
        prober_cpu = statistics.median(cpus)
        cpu_floor = max(prober_cpu, (prober_cpu + helpers_cpu) / cores)
        print(
            f"{'(d) CPU floor, this machine':<28} {cpu_floor:>8.3f} {'-':>8}"
            f"  ratio {prober_s / cpu_floor:.2f}: max(prober CPU, (prober CPU + relays and"
            f" servers CPU) / {cores} cores); "
            + (
                "above (c): on this machine the run is CPU-bound, not round-trip-bound"
                if cpu_floor > bound_s
                else "below (c): round trips bind, not this machine's CPU"
            )
        )

        diffs = []
        for ref in refs:
            ours = prober[ref]
            theirs = peer[ref].verdict
            if ours != theirs:
                diffs.append((ref, ours, theirs, peer[ref].stderr))
        print()
        if diffs:
            print(f"VERDICT DIFFERENCES: {len(diffs)}")
            for ref, ours, theirs, why in diffs[:50]:
                print(f"  {ref}: prober {ours}, skopeo {theirs} ({why[:160]})")
        else:
            print(f"verdicts: all {len(refs)} agree between the prober and skopeo")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        speedup = skopeo_s / prober_s
        ratio = prober_s / bound_s
        print(
            f"RESULT images={len(refs)} speedup_vs_skopeo={speedup:.1f} ratio_to_bound={ratio:.2f}"
        )
        return 1 if diffs else 0
    finally:
        for reg in registries:
            reg.stop()
        for proc in procs:
            _stop(proc)
        import shutil

        shutil.rmtree(work, ignore_errors=True)


async def _probe_counted(parsed: list[Any], options: Any) -> tuple[list[Any], int]:
    """``kotsrewrite.probe`` (a fresh prober, closed at the end) and the HTTP requests it
    sent (a token request made once for several repositories counts once)."""
    from kotsrewrite._probe import Prober

    async with Prober(options) as prober:
        results = await prober.probe(parsed)
    return results, prober.requests


def _timeline(parsed: list[Any], options: Any, refs: list[str], kind_of: dict[str, str]) -> None:
    """One more prober run, printing per registry when its probes ended (ms after the start:
    first, median, last) and the duration of each kind of request (mean, p10, median, p90,
    max)."""
    from kotsrewrite._probe import Prober

    ends: dict[str, list[float]] = {}
    steps: dict[str, list[float]] = {}

    async def go() -> None:
        t0 = time.perf_counter()

        def done(res: Any) -> None:
            kind = kind_of[str(res.image)]
            ends.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
            for st in res.evidence.steps:
                steps.setdefault(f"{kind} {st.step}", []).append(st.elapsed_ms)

        prober = Prober(options)
        phases["built"] = (time.perf_counter() - t0) * 1000
        await prober.probe(parsed, on_result=done)
        phases["probed"] = (time.perf_counter() - t0) * 1000
        await prober.aclose()
        phases["closed"] = (time.perf_counter() - t0) * 1000

    phases: dict[str, float] = {}
    w0 = time.perf_counter()
    _run_loop(go())
    phases["loop ended"] = (time.perf_counter() - w0) * 1000
    print("timeline phases: " + ", ".join(f"{k} {v:.1f} ms" for k, v in phases.items()))
    for kind, times in ends.items():
        print(
            f"timeline {kind:<13} first {min(times):7.1f} median {statistics.median(times):7.1f}"
            f" last {max(times):7.1f} ms"
        )
    for name, els in sorted(steps.items()):
        q = statistics.quantiles(els, n=10) if len(els) > 1 else [els[0]] * 9
        print(
            f"timeline {name:<22} n={len(els):4d} mean {statistics.mean(els):6.1f}"
            f" p10 {q[0]:6.1f} median {statistics.median(els):6.1f} p90 {q[8]:6.1f}"
            f" max {max(els):6.1f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the benchmark (or a child role)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_relays":
        return _relay_child(float(argv[1]), argv[2:])
    if argv and argv[0] == "--_token":
        return _token_child(argv[1], int(argv[2]), argv[3], argv[4])
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=None, help="images (default 500)")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="round-trip time (20)")
    parser.add_argument(
        "--per-registry", type=int, default=None, help="per-registry limit (ProbeOptions')"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="global limit (ProbeOptions')"
    )
    parser.add_argument(
        "--token-batch",
        type=int,
        default=None,
        help="repositories per token request (ProbeOptions'; 1: one each)",
    )
    parser.add_argument("--repeat", type=int, default=None, help="prober runs (default 3)")
    parser.add_argument(
        "--without",
        action="append",
        choices=("plain-hpack", "asyncio-backend"),
        help="run the prober on a _compat hook's fallback (repeatable)",
    )
    parser.add_argument("--quick", action="store_true", help="100 images, one prober run")
    parser.add_argument("--no-skopeo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    parser.add_argument(
        "--timeline", action="store_true", help="one more run: when each registry's probes end"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

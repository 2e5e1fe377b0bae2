"""Can this machine add latency with ``tc netem`` in a network namespace of our own?

``probe_bench.py`` would rather delay packets in the kernel (a veth pair into a namespace it
creates, ``netem delay`` on both ends) than in the Python relays, whose CPU competes with the
prober on a small machine. :func:`netem_unavailable` checks that without touching anything
of the root namespace: it creates a scratch namespace ``kr-bench-<pid>-chk`` holding both ends
of a veth pair, tries to add a netem qdisc there, and deletes the namespace again.
"""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["netem_unavailable"]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)


def netem_unavailable() -> str | None:
    """Why netem latency cannot be used here (``None``: it can)."""
    if os.geteuid() != 0:
        return "not root (ip netns needs CAP_SYS_ADMIN)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    ns = f"kr-bench-{os.getpid()}-chk"
    made = _run("ip", "netns", "add", ns)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    try:
        veth = _run("ip", "-n", ns, "link", "add", "name", "a", "type", "veth", "peer", "name", "b")
        if veth.returncode != 0:
            return f"veth pair failed: {veth.stderr.strip()}"
        q = _run("tc", "-n", ns, "qdisc", "add", "dev", "a", "root", "netem", "delay", "1ms")
        if q.returncode != 0:
            return f"tc qdisc netem failed: {q.stderr.strip()} (kernel without sch_netem)"
        return None
    finally:
        _run("ip", "netns", "del", ns)

"""Who may send when: global and per-registry slots, the first wave, token-service slots.

* A probe takes its registry's slot first, then a global one: a busy registry never holds
  global slots while waiting for its own, so registries do not block each other.
* The first wave of a registry (its first ``per_registry`` probes) does not wait for one
  probe to learn the registry's challenge: each pays its own anonymous request, in parallel
  (at most ``per_registry - 1`` extra requests, one round trip less). Later probes wait until
  the challenge is known (:meth:`Scheduler.learned`) and fetch their tokens before taking a
  registry slot, so that the slot is held for the manifest round trip only.
* Token requests to a token service on a host of its own (Docker Hub's ``auth.docker.io``)
  share that host's :class:`PrioritySlots`: ``per_registry`` at once, like any registry, the
  fetches of probes holding a registry slot first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

from ._options import ProbeOptions

__all__ = ["PrioritySlots", "Scheduler"]


class PrioritySlots:
    """A semaphore whose urgent waiters go first.

    Token fetches share a token service's slots: those of probes holding a registry slot
    (the first wave, which learns the challenge) are urgent; those made ahead, while waiting
    for a registry slot, are not. With one FIFO queue the first wave's fetches queued behind
    a hundred fetches ahead while holding every registry slot: the registry idled.
    """

    def __init__(self, n: int) -> None:
        self._free = n
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._normal: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, urgent: bool = False) -> None:
        """Take a slot, waiting (behind earlier waiters of the same kind) if none is free."""
        if self._free > 0 and not self._urgent and not self._normal:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot just as the waiter was cancelled
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
            raise

    def release(self) -> None:
        """Hand the slot to the first waiter (urgent ones first), else free it."""
        for queue in (self._urgent, self._normal):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self._free += 1


class Scheduler:
    """The slots of one prober run (see the module's docstring)."""

    def __init__(self, options: ProbeOptions) -> None:
        self._options = options
        self._global = asyncio.Semaphore(options.concurrency)
        self._per_registry: dict[str, asyncio.Semaphore] = {}
        self._queued: dict[str, int] = {}
        """registry base URL -> probes started on it so far (the first wave is per_registry)."""
        self._learned: dict[str, asyncio.Event] = {}
        """registry base URL -> set once its challenge is known or a probe of it has ended."""
        self._token_services: dict[str, PrioritySlots] = {}
        """token service origin -> its slots."""

    def registry_slot(self, base: str) -> asyncio.Semaphore:
        """The per-registry limit of ``base`` (a token fetched from the registry's own host
        takes it too: the politeness limit is per host)."""
        sem = self._per_registry.get(base)
        if sem is None:
            sem = self._per_registry[base] = asyncio.Semaphore(self._options.per_registry)
        return sem

    def learned(self, base: str) -> asyncio.Event:
        """Set once ``base``'s challenge is known, or once one of its probes has ended."""
        event = self._learned.get(base)
        if event is None:
            event = self._learned[base] = asyncio.Event()
        return event

    def join(self, base: str) -> bool:
        """Count a new probe of ``base``; ``True`` when it is in the registry's first wave."""
        queued = self._queued[base] = self._queued.get(base, 0) + 1
        return queued <= self._options.per_registry

    @contextlib.asynccontextmanager
    async def slot(self, base: str) -> AsyncIterator[None]:
        """Hold ``base``'s slot, then a global one."""
        async with self.registry_slot(base), self._global:
            yield

    def token_service(self, origin: str) -> PrioritySlots:
        """The slots of the token service at ``origin``."""
        slots = self._token_services.get(origin)
        if slots is None:
            slots = self._token_services[origin] = PrioritySlots(self._options.per_registry)
        return slots

"""The registry client behind :mod:`kotsrewrite._probe`, one job per module.

* :mod:`._options`: :class:`ProbeOptions`, the knobs of a run.
* :mod:`._compat`: every dependence on another library's internals, with its fallback.
* :mod:`._network`: httpcore's network backend on asyncio's own streams.
* :mod:`._pools`: one connection pool per origin, proxies from the environment, the client.
* :mod:`._send`: one exchange: redirects, body caps, retries (:class:`Sender`).
* :mod:`._tokens`: the token service: cache, single flight, batching, realm checks.
* :mod:`._schedule`: global and per-registry slots, the first wave, token-service slots.
* :mod:`._verdict`: a pure function from a manifest answer to a verdict and its cause.
* :mod:`._evidence`: evidence (steps, reasons, results) built in one place.
* :mod:`._failures`: the failure hierarchy (a cause, a reason; no control flow by verdicts).
* :mod:`._prober`: :class:`Prober`, which ties them together.
"""

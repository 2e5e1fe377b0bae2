"""The ``--on-unknown`` policy: what to do with images whose visibility was not proved.

An anonymous probe proves ``public`` or ``private``. Everything else (``not_found``,
``rate_limited``, ``unreachable``, or no verdict at all under ``--offline``) is *unknown*, and
the policy decides: ``private`` (the default, what KOTS does: proxy it), ``public`` (leave it
alone) or ``fail`` (refuse the run, exit 1). Either way each such image is named in a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._errors import PolicyError
from ._model import OnUnknown, Verdict
from ._reference import ImageRef

__all__ = ["describe_unknown", "is_unknown", "raise_for_unknown", "treat_as_private"]


def is_unknown(verdict: Verdict | None) -> bool:
    """True when ``verdict`` proves nothing: anything but ``public``/``private``, or none."""
    return verdict is None or not verdict.is_known


def treat_as_private(verdict: Verdict | None, policy: OnUnknown) -> bool:
    """Whether an image with ``verdict`` is proxied under ``policy`` (``fail`` counts as private;
    :func:`raise_for_unknown` refuses those runs before anything is written)."""
    if verdict is Verdict.PUBLIC:
        return False
    if verdict is Verdict.PRIVATE:
        return True
    return policy is not OnUnknown.PUBLIC


def describe_unknown(
    image: ImageRef, verdict: Verdict | None, policy: OnUnknown, *, why: str | None = None
) -> str:
    """The warning line for an image whose verdict is unknown; ``why`` says why there is
    none (e.g. its known-images entry expired)."""
    what: object = (
        "no verdict (offline and not in the known images)" if verdict is None else verdict
    )
    if verdict is None and why is not None:
        what = f"no verdict ({why})"
    treated = {
        OnUnknown.PRIVATE: "treated as private: proxied",
        OnUnknown.PUBLIC: "treated as public: left alone",
        OnUnknown.FAIL: "refused (--on-unknown fail)",
    }[policy]
    return f"{image.original}: {what}; {treated}"


def raise_for_unknown(
    unknown: Sequence[tuple[ImageRef, Verdict | None]], policy: OnUnknown
) -> None:
    """Raise :class:`~kotsrewrite.PolicyError` when ``policy`` is ``fail`` and any image is
    unknown; the message names every such image with its verdict."""
    if policy is not OnUnknown.FAIL or not unknown:
        return
    names = ", ".join(
        f"{ref.original} ({'no verdict' if verdict is None else verdict})"
        for ref, verdict in sorted(unknown, key=lambda item: item[0].original)
    )
    raise PolicyError(
        f"{len(unknown)} image(s) could not be proved public or private: {names}",
        hint="check the registry or the reference, add the images to --known-images, or use"
        " --on-unknown private|public",
    )

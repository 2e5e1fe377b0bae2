"""Image references: parsing with the distribution grammar, wrapped in a frozen value type.

docker-image-py implements the grammar of github.com/distribution/reference. We use it to
validate, then derive every part ourselves, because of two known bugs in it:

* ``familiar_name()`` fails on digest-only references (``nginx@sha256:...``);
* its anchored regexes use ``$``, which also matches before a trailing newline, so
  ``"nginx\\n"`` is accepted.

:class:`ImageRef` keeps the string exactly as written and exposes the registry domain, the
repository path, the tag, the digest, the normalized form and the registry API host.
"""

from __future__ import annotations

import re

import attrs
from docker_image import digest as _ddigest
from docker_image import reference as _dref

from ._errors import InvalidReferenceError

__all__ = ["DOCKER_HUB", "ImageRef", "parse_image"]

#: The canonical Docker Hub domain in normalized references.
DOCKER_HUB = "docker.io"
_LEGACY_HUB = "index.docker.io"
_HUB_API_HOST = "registry-1.docker.io"
_HUB_SPELLINGS = frozenset({DOCKER_HUB, _LEGACY_HUB})
_NAME_TOTAL_LENGTH_MAX = 255
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
# Anything a reference can never contain; catches whitespace (and the trailing-newline bug)
# before the regexes see it.
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


@attrs.frozen(order=True)
class ImageRef:
    """A parsed image reference such as ``quay.io/org/api:1.2@sha256:...``.

    Build one with :meth:`ImageRef.parse` (or :func:`parse_image`); the fields are the parts as
    written. Equality and hashing compare the string as written, so ``nginx`` and
    ``docker.io/library/nginx`` are different values with the same :attr:`normalized_name`.
    """

    original: str
    """The reference exactly as written."""
    domain: str = attrs.field(eq=False, order=False)
    """The registry domain as written (``quay.io``, ``localhost:5000``), or ``""`` if none."""
    path: str = attrs.field(eq=False, order=False)
    """The repository path as written (``nginx``, ``library/nginx``, ``org/api``)."""
    tag: str | None = attrs.field(eq=False, order=False)
    """The tag, or ``None``."""
    digest: str | None = attrs.field(eq=False, order=False)
    """The digest (``sha256:<64 hex>``), or ``None``."""

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``text`` with the distribution reference grammar.

        Raises :class:`~kotsrewrite.InvalidReferenceError` for an empty string, whitespace,
        an uppercase repository, a bad tag or digest, a 64-hex identifier used as a name, or a
        name longer than 255 characters. Tag and digest together are valid.
        """
        if not isinstance(text, str) or not text:
            raise InvalidReferenceError(
                "empty image reference", hint="give an image such as nginx:1.25"
            )
        if _FORBIDDEN.search(text):
            raise InvalidReferenceError(
                f"invalid image reference {text!r}: contains whitespace or a control character",
                hint="remove the whitespace; quote the value in YAML if needed",
            )
        if _IDENTIFIER.fullmatch(text):
            raise InvalidReferenceError(
                f"invalid image reference {text!r}: a 64-hex image ID is not a repository name",
                hint="use repository@sha256:<digest> to pin by digest",
            )
        try:
            parsed = _dref.Reference.parse(text)
        except (_dref.InvalidReference, _ddigest.InvalidDigest) as exc:
            # InvalidDigest: e.g. "@ha256:<hex>" (an unsupported algorithm) raised past
            # docker-image-py's own InvalidReference (found by tests/test_fuzz_input.py).
            raise InvalidReferenceError(
                f"invalid image reference {text!r}: {exc}",
                hint="references look like [registry[:port]/]repository[:tag][@sha256:digest]"
                " with a lowercase repository",
            ) from None
        name: str = parsed["name"]
        tag: str | None = parsed.get("tag") or None
        digest: str | None = parsed.get("digest") or None
        if len(name) > _NAME_TOTAL_LENGTH_MAX:
            raise InvalidReferenceError(
                f"invalid image reference {text!r}: name longer than"
                f" {_NAME_TOTAL_LENGTH_MAX} characters"
            )
        first, sep, rest = name.partition("/")
        # distribution's splitDockerDomain: a first component is a registry host when it is
        # localhost, has a dot or a port, or has uppercase letters (repositories cannot).
        if sep and (first == "localhost" or "." in first or ":" in first or first.lower() != first):
            domain, path = first, rest
        else:
            domain, path = "", name
        return cls(original=text, domain=domain, path=path, tag=tag, digest=digest)

    # -- derived parts ---------------------------------------------------------------------

    @property
    def registry(self) -> str:
        """The normalized registry domain: ``docker.io`` for Docker Hub in any spelling."""
        if not self.domain or self.domain in _HUB_SPELLINGS:
            return DOCKER_HUB
        return self.domain

    @property
    def is_docker_hub(self) -> bool:
        """True for Docker Hub images, whichever way they are spelled."""
        return self.registry == DOCKER_HUB

    @property
    def repository(self) -> str:
        """The normalized repository path (``nginx`` -> ``library/nginx`` on Docker Hub)."""
        if self.is_docker_hub and "/" not in self.path:
            return f"library/{self.path}"
        return self.path

    @property
    def name(self) -> str:
        """The reference as written without tag and digest (``quay.io/org/api``, ``nginx``)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def normalized_name(self) -> str:
        """Domain-qualified repository: ``nginx`` -> ``docker.io/library/nginx``."""
        return f"{self.registry}/{self.repository}"

    @property
    def normalized(self) -> str:
        """The full normalized reference, tag and digest kept as written."""
        out = self.normalized_name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def api_host(self) -> str:
        """The host serving the registry API (``registry-1.docker.io`` for Docker Hub)."""
        return _HUB_API_HOST if self.is_docker_hub else self.domain

    @property
    def manifest_reference(self) -> str:
        """What is pulled: the digest if any, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"

    @property
    def hub_spellings(self) -> tuple[str, ...]:
        """Every name kustomize could see for this repository, sorted.

        For Docker Hub: ``nginx``, ``library/nginx``, ``docker.io/nginx``,
        ``docker.io/library/nginx``, ``index.docker.io/...`` (the short forms only where they
        mean the same repository). For other registries: just :attr:`name`.
        """
        if not self.is_docker_hub:
            return (self.name,)
        repo = self.repository
        names = {repo, f"{DOCKER_HUB}/{repo}", f"{_LEGACY_HUB}/{repo}"}
        if repo.startswith("library/"):
            short = repo.removeprefix("library/")
            names |= {short, f"{DOCKER_HUB}/{short}", f"{_LEGACY_HUB}/{short}"}
        return tuple(sorted(names))

    def __str__(self) -> str:
        return self.original


def parse_image(text: str) -> ImageRef:
    """Parse an image reference; see :meth:`ImageRef.parse`."""
    return ImageRef.parse(text)

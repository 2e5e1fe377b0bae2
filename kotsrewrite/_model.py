"""Value types shared by every stage: manifests, image uses, verdicts and evidence.

This module is the contract between the loader, the discovery walk, the prober and the
planner. Everything here is a frozen attrs class or an enum; nothing does I/O.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._errors import shown_path
from ._reference import ImageRef

if TYPE_CHECKING:
    from ._kustomize import Origin

__all__ = [
    "Base",
    "Cause",
    "Document",
    "Evidence",
    "ImageField",
    "ImageUse",
    "Inventory",
    "Location",
    "OnUnknown",
    "PodSpecSite",
    "ProbeCause",
    "ProbeResult",
    "ProbeStep",
    "Resource",
    "Slot",
    "Verdict",
]


# --------------------------------------------------------------------------------------------
# Manifests


@attrs.frozen(eq=False)
class Document:
    """One Kubernetes object of the base, with where it came from.

    An object that came from the ``items`` of a ``List`` has ``item`` set to its index there;
    ``index`` is always the 0-based index of the YAML document in its file.
    """

    file: str
    """Path relative to the base directory, the file name for a single file, ``<stdin>``."""
    index: int
    """0-based index of the YAML document within the file (empty documents count)."""
    line: int
    """1-based line where the object's mapping starts."""
    api_version: str
    kind: str
    name: str | None
    """``metadata.name``; ``None`` when absent (e.g. only ``generateName``)."""
    namespace: str | None
    """``metadata.namespace``; ``None`` when absent."""
    node: Any = attrs.field(repr=False)
    """The composed ruamel.yaml ``MappingNode`` of the object (carries line marks); ``None``
    when loading was told not to keep it (see ``load_manifests``' ``visit``)."""
    item: int | None = None
    """Index within the ``items`` of a List, or ``None``."""
    origin: Origin | None = attrs.field(default=None, repr=False)
    """For an object of a built kustomization: where kustomize took it from and what changed
    it; ``None`` for objects read from files as written."""

    @property
    def group(self) -> str:
        """API group (``""`` for the core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        """API version without the group."""
        return self.api_version.rpartition("/")[2]


@attrs.frozen(eq=False)
class Base:
    """The manifests read from a directory, a kustomize base, a single file or stdin."""

    source: str
    """What the user gave: a directory, a file, or ``-``."""
    root: Path | None
    """Directory that :attr:`files` are relative to; ``None`` for stdin."""
    mode: Literal["kustomize", "directory", "file", "stdin"]
    """``kustomize`` when the directory has a kustomization file: its documents are the objects
    ``kubectl kustomize`` builds, each with its :attr:`Document.origin`."""
    files: tuple[str, ...]
    """Manifest files read, relative to :attr:`root`, in the order read (for a kustomization:
    the source files the built objects came from)."""
    documents: tuple[Document, ...]
    """Every object, in file order then document order; List items expanded (for a
    kustomization: in the order kustomize prints them)."""
    text: str | None = attrs.field(default=None, repr=False)
    """The text read from stdin, or from a named pipe given as the file (copied into the
    output: neither can be read twice); ``None`` otherwise."""

    @property
    def base_dir(self) -> str | None:
        """The directory :attr:`files` are relative to, as the user gave it (``None`` for
        stdin or a file in the current directory)."""
        if self.mode == "stdin":
            return None
        if self.mode == "file":
            return os.path.dirname(self.source) or None
        return self.source

    def shown(self, file: str) -> str:
        """``file`` (a :attr:`Document.file`) as the user can open it from where they ran
        the command, e.g. ``bad1/backend.yaml``; see :func:`~kotsrewrite.InputError`."""
        return shown_path(self.base_dir, file)


# --------------------------------------------------------------------------------------------
# Discovery


class Slot(enum.StrEnum):
    """Where in an object an image reference sits."""

    CONTAINER = "containers"
    INIT_CONTAINER = "initContainers"
    EPHEMERAL_CONTAINER = "ephemeralContainers"
    IMAGE_VOLUME = "volumes"
    """``volumes[].image.reference`` (Kubernetes 1.31+ image volumes)."""
    FIELD = "field"
    """Any other string field named ``image`` (managed only with ``--image-field``)."""

    @property
    def rewritten_by_default(self) -> bool:
        """Whether kustomize's image transformer rewrites this slot without configurations."""
        return self in (Slot.CONTAINER, Slot.INIT_CONTAINER)


@attrs.frozen(order=True)
class Location:
    """Where one use of an image was found."""

    file: str
    line: int
    """1-based line of the image string."""
    document: int
    """0-based index of the YAML document in the file."""
    kind: str
    namespace: str | None
    name: str | None
    container: str | None
    """Container name (or volume name for an image volume); ``None`` for other fields."""
    field: str
    """Dotted path within the object: ``spec.template.spec.initContainers[0].image``."""
    api_version: str = ""
    item: int | None = None
    """Index within a List's ``items`` when the object came from a List."""
    origin: dict[str, Any] | None = attrs.field(default=None, eq=False, order=False)
    """Set when :attr:`file` is not the object's own file (a kustomize patch, ``images:``
    transformer or generator put the image there): ``by`` (the kustomize transformer or
    generator kind), ``configuredIn`` (the kustomization file), ``objectFile`` and
    ``objectLine`` (the object's own file and line; ``None`` for a generated object)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``kotsrewrite images`` and the report (``origin`` only when
        set)."""
        out: dict[str, Any] = {
            "file": self.file,
            "line": self.line,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "container": self.container,
            "field": self.field,
            "document": self.document,
            "apiVersion": self.api_version,
            "item": self.item,
        }
        if self.origin is not None:
            out["origin"] = dict(self.origin)
        return out


@attrs.frozen(order=True)
class ImageField:
    """A custom image field to manage, from ``--image-field KIND:PATH``.

    ``path`` is slash separated as in kustomize fieldSpecs (``spec/image``,
    ``spec/steps[]/image``); ``kind`` may be ``*`` for any kind.
    """

    kind: str
    path: str


@attrs.frozen
class ImageUse:
    """One place an image reference is used."""

    ref: ImageRef
    location: Location
    slot: Slot
    resource: int | None
    """Index into :attr:`Inventory.resources` of the object holding the PodSpec, or ``None``
    for an image field outside any PodSpec."""
    pod_spec: str | None
    """JSON pointer (RFC 6901) of the PodSpec within its object, e.g. ``/spec/template/spec``;
    ``None`` for an image field outside any PodSpec."""


@attrs.frozen
class PodSpecSite:
    """A PodSpec found inside an object."""

    pointer: str
    """JSON pointer of the PodSpec mapping within the object (``/spec``,
    ``/spec/jobTemplate/spec/template/spec``, ``/spec/template/spec``...)."""
    line: int
    pull_secrets: tuple[str, ...] | None
    """Names in the existing ``imagePullSecrets`` list; ``None`` when the key is absent or
    null (a patch then adds the whole list)."""


@attrs.frozen(eq=False)
class Resource:
    """An object of the base that holds at least one PodSpec."""

    document: Document
    pod_specs: tuple[PodSpecSite, ...]


@attrs.frozen(eq=False)
class Inventory:
    """Everything discovery found in a :class:`Base`."""

    uses: tuple[ImageUse, ...]
    """Images kustomize rewrites: containers and initContainers at any depth, plus
    ephemeral containers, image volumes and managed custom fields (these need a
    ``configurations`` file)."""
    unmanaged: tuple[ImageUse, ...]
    """Other string fields named ``image``: reported, not rewritten."""
    resources: tuple[Resource, ...]
    """Objects holding PodSpecs, in input order."""
    namespaces: tuple[str, ...]
    """Every namespace named in the manifests (``metadata.namespace`` of any object and the
    names of ``Namespace`` objects), sorted; what ``--additional-namespace '*'`` means."""
    warnings: tuple[str, ...] = ()
    crds: tuple[Document, ...] = ()
    """``CustomResourceDefinition`` objects of the base (their schemas decide where the pull
    secret of a custom resource goes)."""
    service_accounts: tuple[Document, ...] = ()
    """``ServiceAccount`` objects of the base (a place for the pull secret of a custom
    resource whose schema keeps none)."""
    field_objects: tuple[Document, ...] = ()
    """Objects holding managed custom image fields outside PodSpecs (``--image-field``)."""
    base_dir: str | None = None
    """:attr:`Base.base_dir` of the base searched: messages name files through it."""

    def shown(self, file: str) -> str:
        """``file`` (a :attr:`Location.file`) as the user can open it (:meth:`Base.shown`)."""
        return shown_path(self.base_dir, file)

    @property
    def images(self) -> tuple[ImageRef, ...]:
        """Distinct references used (managed), sorted by the string as written."""
        return tuple(sorted({use.ref for use in self.uses}))


# --------------------------------------------------------------------------------------------
# Probing


class Verdict(enum.StrEnum):
    """What an anonymous probe proved about an image."""

    PUBLIC = "public"
    """The manifest answered 2xx with no credentials."""
    PRIVATE = "private"
    """401/403/denied after anonymous auth, or a Basic challenge."""
    NOT_FOUND = "not_found"
    """404: missing, or a private repository hidden behind 404."""
    RATE_LIMITED = "rate_limited"
    """429 after bounded retries."""
    UNREACHABLE = "unreachable"
    """DNS, connect, TLS, timeout, or 5xx after bounded retries."""

    @property
    def is_known(self) -> bool:
        """True for ``public`` and ``private``, the two verdicts that prove something."""
        return self in (Verdict.PUBLIC, Verdict.PRIVATE)


class Cause(enum.StrEnum):
    """Why a probe reached its verdict, for programs (tests, the CLI's hints); the free-text
    :attr:`Evidence.reason` says the same for people. Each cause implies one verdict
    (:attr:`verdict`)."""

    ANONYMOUS_PULL = "anonymous_pull"
    """The manifest answered 2xx with no credentials at all."""
    ANONYMOUS_TOKEN_PULL = "anonymous_token_pull"
    """The manifest answered 2xx with an anonymous Bearer token."""
    MANIFEST_DENIED = "manifest_denied"
    """401/403 (or ``DENIED``/``UNAUTHORIZED`` in a 400/404 body) after anonymous auth."""
    CREDENTIALS_REQUIRED = "credentials_required"
    """A 401 with a challenge other than Bearer (Basic...): no anonymous path."""
    NO_CHALLENGE = "no_challenge"
    """A 401 with no ``WWW-Authenticate``."""
    MALFORMED_CHALLENGE = "malformed_challenge"
    """A 401 whose challenge cannot be parsed, or a Bearer challenge without a realm."""
    TOKEN_REFUSED = "token_refused"
    """The token endpoint answered 401/403 to an anonymous token request."""
    MANIFEST_NOT_FOUND = "manifest_not_found"
    """404 on the manifest."""
    RATE_LIMITED = "rate_limited"
    """429 after bounded retries."""
    RETRY_AFTER_TOO_LONG = "retry_after_too_long"
    """429 with a ``Retry-After`` longer than allowed (or than the time left)."""
    TRANSPORT_ERROR = "transport_error"
    """DNS, connect or read failures after bounded retries."""
    TLS_ERROR = "tls_error"
    """The TLS handshake failed (certificate, protocol)."""
    PLAIN_HTTP_TO_TLS = "plain_http_to_tls"
    """The server answered plain HTTP to a TLS handshake (a registry serving http only)."""
    TIMEOUT = "timeout"
    """The probe's time budget ran out."""
    REGISTRY_DOWN = "registry_down"
    """An earlier probe of this registry, its first, failed at the transport level."""
    SERVER_ERROR = "server_error"
    """5xx after bounded retries."""
    UNEXPECTED_STATUS = "unexpected_status"
    """A status that proves nothing (400, a token endpoint's 404...)."""
    NOT_A_REGISTRY = "not_a_registry"
    """A 2xx ``text/html`` page (a captive portal), not a manifest."""
    ADDRESS_REFUSED = "address_refused"
    """The registry's address is link-local or a cloud metadata address."""
    REALM_REFUSED = "realm_refused"
    """A token realm we refuse (plain http for an https registry, metadata address...)."""
    REDIRECT_REFUSED = "redirect_refused"
    """A redirect we refuse: loops, downgrades to http, no ``Location``, bad targets."""
    BAD_TOKEN_RESPONSE = "bad_token_response"
    """The token endpoint answered 2xx without a usable token."""
    INTERNAL_ERROR = "internal_error"
    """An unexpected error inside the prober (a bug): the registry proved nothing."""
    CREDENTIALED_PULL = "credentialed_pull"
    """Pull check: the manifest answered 2xx to the pull secret's credentials (Basic, or a
    token fetched with them)."""
    CREDENTIALS_DENIED = "credentials_denied"
    """Pull check: 401/403 (or ``DENIED``) with the credentials, from the registry or its
    token service: the registry is not linked, or the license has no access."""
    NO_CREDENTIALS = "no_credentials"
    """Pull check: no credentials for the image's registry."""

    @property
    def verdict(self) -> Verdict:
        """The verdict this cause implies."""
        return _CAUSE_VERDICT.get(self, Verdict.UNREACHABLE)


_CAUSE_VERDICT = {
    Cause.ANONYMOUS_PULL: Verdict.PUBLIC,
    Cause.ANONYMOUS_TOKEN_PULL: Verdict.PUBLIC,
    Cause.MANIFEST_DENIED: Verdict.PRIVATE,
    Cause.CREDENTIALS_REQUIRED: Verdict.PRIVATE,
    Cause.NO_CHALLENGE: Verdict.PRIVATE,
    Cause.MALFORMED_CHALLENGE: Verdict.PRIVATE,
    Cause.TOKEN_REFUSED: Verdict.PRIVATE,
    Cause.MANIFEST_NOT_FOUND: Verdict.NOT_FOUND,
    Cause.RATE_LIMITED: Verdict.RATE_LIMITED,
    Cause.RETRY_AFTER_TOO_LONG: Verdict.RATE_LIMITED,
}


class OnUnknown(enum.StrEnum):
    """Policy for verdicts other than public/private (and for images with no verdict)."""

    PRIVATE = "private"
    """Treat as private (what KOTS does), and warn."""
    PUBLIC = "public"
    """Leave the image alone, and warn."""
    FAIL = "fail"
    """Refuse: exit 1."""


class ProbeCause(enum.StrEnum):
    """A fact about a failed exchange that the user can act on (the CLI turns it into a hint;
    the library never acts on it by itself)."""

    PLAIN_HTTP = "plain_http"
    """The server answered the TLS handshake in plain HTTP: the registry serves http only.
    It is reached that way only when the caller names it insecure; never by itself."""


@attrs.frozen
class ProbeStep:
    """One HTTP exchange (or failed attempt) of a probe. URLs never carry credentials."""

    step: str
    """``manifest``, ``token``..."""
    method: str
    url: str
    status: int | None
    """HTTP status, or ``None`` when no response arrived."""
    elapsed_ms: float
    error_codes: tuple[str, ...] = ()
    """Registry error codes from the body (``UNAUTHORIZED``, ``DENIED``...)."""
    error: str | None = None
    """Transport failure (``ConnectError: ...``), or a note on why the answer was refused."""
    attempt: int = 1
    challenge: str | None = None
    """The ``WWW-Authenticate`` header received, if any."""
    cause: ProbeCause | None = None
    """What the failure means, when known (e.g. the server speaks plain HTTP)."""

    @property
    def host(self) -> str:
        """``host[:port]`` of :attr:`url`."""
        return self.url.partition("://")[2].partition("/")[0]

    def to_json(self) -> dict[str, Any]:
        """JSON form for reports (``cause`` only when there is one)."""
        extra = {"cause": str(self.cause)} if self.cause is not None else {}
        return {
            **extra,
            "step": self.step,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "elapsedMs": round(self.elapsed_ms, 1),
            "errorCodes": list(self.error_codes),
            "error": self.error,
            "attempt": self.attempt,
            "challenge": self.challenge,
        }


#: :attr:`Evidence.source` of a known-images entry older than the cache TTL.
EXPIRED = "expired"


@attrs.frozen
class Evidence:
    """Why a verdict was reached, for a person to check."""

    reason: str
    """One line: ``manifest HEAD 401 UNAUTHORIZED after anonymous token``."""
    steps: tuple[ProbeStep, ...] = ()
    elapsed_ms: float = 0.0
    source: str = "probe"
    """``probe``, ``known-images`` (a KOTS Installation or our report), ``skipped``, or
    ``expired`` (:data:`EXPIRED`: a report entry older than the cache TTL, whose verdict
    counts for nothing)."""
    probed_at: str | None = None
    """ISO 8601 UTC time of the probe (kept in reports used as a cache)."""
    cause: Cause | None = None
    """Why, as a :class:`Cause` (``None`` for evidence not from a probe). Not in the JSON
    report (its fields are unchanged): :attr:`reason` says it for people."""

    def causes(self) -> tuple[tuple[ProbeCause, str], ...]:
        """``(cause, host[:port])`` of each step whose failure has a known cause, once each."""
        return tuple(dict.fromkeys((s.cause, s.host) for s in self.steps if s.cause is not None))

    def to_json(self) -> dict[str, Any]:
        """JSON form for reports."""
        return {
            "reason": self.reason,
            "source": self.source,
            "elapsedMs": round(self.elapsed_ms, 1),
            "probedAt": self.probed_at,
            "steps": [step.to_json() for step in self.steps],
        }


@attrs.frozen
class ProbeResult:
    """The verdict for one image reference, with its evidence."""

    image: ImageRef
    verdict: Verdict
    evidence: Evidence

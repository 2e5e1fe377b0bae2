"""Checking a written midstream the way a cluster would see it: built with kustomize.

:func:`verify_midstream` builds the midstream directory with ``kubectl kustomize`` (or
``kustomize build``), builds its base the same way, and checks the invariants of the output
(SPEC section 6) on the built objects:

* every image in a ``containers``/``initContainers``/``ephemeralContainers`` list or an image
  volume (and in the ``configurations`` image fields) is what the kustomization's ``images``
  entries make of the base's image, tag and digest intact; an image no entry matches is
  untouched. Given the :class:`~kotsrewrite.Plan`, each image is also what its decision says
  (private renamed to the proxy, public left alone);
* every PodSpec using an image on a host of the pull secret (the proxy, the Replicated
  registry) lists the secret in ``imagePullSecrets`` exactly once, and no PodSpec lists it
  twice. A PodSpec of a custom resource whose CRD is in the build is checked on the object as
  the API server stores it (pruned by the CRD's structural schema): the secret must survive
  beside it, or in an enclosing object's declared ``imagePullSecrets`` (or its pod
  template's), or be held by the ServiceAccount it runs as, in its namespace;
* every image in the built output is a valid reference by the distribution grammar;
* every PodSpec given the pull secret (or pulling from its hosts) finds a Secret of that name
  in its own effective namespace: an object without ``metadata.namespace``, the secret
  included, is in the app namespace (``namespace``, the plan's, else ``default``), as
  ``kubectl apply -n`` would place it; given a plan, a secret is in every namespace the plan
  names;
* each pull secret is a ``kubernetes.io/dockerconfigjson`` whose ``auths`` cover the hosts
  (username ``LICENSE_ID``, ``auth`` the base64 of ``LICENSE_ID:<password>``; given a plan,
  the password is its license ID and the hosts exactly its two hosts);
* every object carries the ``kots.io/app-slug`` annotation.

Problems are returned as one line each; no line ever contains the license ID. The result also
names the images a pull check (:func:`~kotsrewrite.pull_check`, ``verify --pull``) asks for,
with the pull secrets' logins: every built image on a host of the midstream's pull secret, and
every one on a registry whose credentials are in a pull secret its PodSpec lists.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ._errors import InputError, shown_path
from ._kustomize_images import Rename, apply_renames, renames_from
from ._placement import covering_placement
from ._plan import Plan
from ._reference import ImageRef
from ._registry._pull import Login, PullCredentials, registry_key
from ._relocate import COPY_PLAN_FILE, CopyPlan
from ._schema import Pruner, crd_names, pruner_for

__all__ = ["VerifyResult", "kustomize_build", "kustomize_command", "verify_midstream"]

_KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_ANNOTATION = "kots.io/app-slug"
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_Key = tuple[str, str, str, str]


@attrs.frozen
class VerifyResult:
    """What :func:`verify_midstream` found."""

    directory: Path
    problems: tuple[str, ...]
    """One line per problem; empty when every check passed."""
    objects: int = 0
    """Objects in the built midstream."""
    images_checked: int = 0
    pod_specs_checked: int = 0
    secrets_checked: int = 0
    pull_images: tuple[ImageRef, ...] = ()
    """The distinct built images a pull check asks for (:func:`~kotsrewrite.pull_check`):
    those on the pull secret's hosts (the proxy, the Replicated registry, custom domains
    included), and those on any registry whose credentials are in a pull secret their PodSpec
    lists."""
    pull_hosts: tuple[str, ...] = ()
    """The hosts of the midstream's own pull secret (the proxy and the Replicated registry)."""
    pull_credentials: PullCredentials = attrs.field(factory=PullCredentials, repr=False, eq=False)
    """The logins of those pull secrets, per host (never shown)."""

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """One line saying what was checked."""
        verdict = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return (
            f"{self.directory}: {verdict}: {self.objects} objects, {self.images_checked} image"
            f" fields, {self.pod_specs_checked} PodSpecs, {self.secrets_checked} pull secrets"
            " checked"
        )


def kustomize_command(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """``[kubectl, kustomize]`` when kubectl is on PATH, else ``[kustomize, build]``.

    Raises :class:`~kotsrewrite.InputError` when neither is installed.
    """
    kubectl = which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = which("kustomize")
    if kustomize:
        return [kustomize, "build"]
    raise InputError(
        "neither kubectl nor kustomize is on PATH",
        hint="install kubectl (it contains kustomize) or kustomize, then run again",
    )


class _BuildFailed(Exception):
    pass


def _load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if isinstance(d, dict)]


def _build(command: Sequence[str], directory: Path) -> list[dict[str, Any]]:
    try:
        proc = subprocess.run(
            [*command, str(directory)], capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0 and "enable-helm" in proc.stderr and shutil.which("helm"):
            # a base with helmCharts (local charts): build it as rewrite read it
            proc = subprocess.run(
                [*command, "--enable-helm", str(directory)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _BuildFailed(str(exc)) from None
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        detail = " ".join(lines[:4])[:400] or f"exit status {proc.returncode}"
        raise _BuildFailed(detail)
    try:
        return _load_all(proc.stdout)
    except YAMLError as exc:  # pragma: no cover - kustomize writes valid YAML
        raise _BuildFailed(f"unreadable output: {exc}") from None


def kustomize_build(
    directory: str | os.PathLike[str], command: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize DIRECTORY`` (or ``kustomize build``) prints.

    Raises :class:`~kotsrewrite.InputError` when no kustomize is installed or the build fails.
    """
    cmd = list(command) if command is not None else kustomize_command()
    try:
        return _build(cmd, Path(directory))
    except _BuildFailed as exc:
        raise InputError(
            f"kustomize cannot build it: {exc}",
            file=str(directory),
            hint=f"run '{' '.join(cmd)} {directory}' to see the whole error",
        ) from None


# --------------------------------------------------------------------------------------------
# Walking built objects


def _key(obj: dict[str, Any]) -> _Key:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    return (
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _describe(key: _Key) -> str:
    _, kind, namespace, name = key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _fmt(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _image_sites(
    node: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, image) of every container image and image volume reference, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, key)
            if key in _CONTAINER_LISTS and isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict) and isinstance(item.get("image"), str):
                        yield (*here, i, "image"), item["image"]
            if key == "volumes" and isinstance(value, list):
                for i, item in enumerate(value):
                    image = item.get("image") if isinstance(item, dict) else None
                    if isinstance(image, dict) and isinstance(image.get("reference"), str):
                        yield (*here, i, "image", "reference"), image["reference"]
            yield from _image_sites(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _image_sites(value, (*path, i))


def _all_sites(
    obj: dict[str, Any], fields: list[tuple[str, str]]
) -> dict[tuple[str | int, ...], str]:
    """{path: image} of every image field of ``obj``: those kustomize rewrites by default and
    the ``configurations`` field specs (``fields``, ``(kind or "", path)``) that apply to it."""
    sites: dict[tuple[str | int, ...], str] = dict(_image_sites(obj))
    for kind, spec_path in fields:
        if not kind or kind == obj.get("kind"):
            sites.update(_field_sites(obj, spec_path.split("/")))
    return sites


def _field_sites(
    node: Any, segments: list[str], path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, image) along a kustomize field spec path such as ``spec/steps[]/image``."""
    if not segments or not isinstance(node, dict):
        return
    head, rest = segments[0], segments[1:]
    key = head.removesuffix("[]")
    if key not in node:
        return
    child = node[key]
    if not rest:
        if isinstance(child, str):
            yield (*path, key), child
        return
    if head.endswith("[]") and isinstance(child, list):
        for i, item in enumerate(child):
            yield from _field_sites(item, rest, (*path, key, i))
    else:
        yield from _field_sites(child, rest, (*path, key))


def _get(node: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return None
        elif not isinstance(node, dict):
            return None
        node = node[part] if isinstance(part, int) else node.get(part)
    return node


def _pod_specs(
    node: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from _pod_specs(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _pod_specs(value, (*path, i))


def _domain(image: str) -> str:
    try:
        return ImageRef.parse(image).domain.lower()
    except Exception:
        return image.split("/", 1)[0].lower()


# --------------------------------------------------------------------------------------------
# Reading the midstream


def _kustomization(directory: Path) -> dict[str, Any]:
    for name in _KUSTOMIZATION_NAMES:
        path = directory / name
        if path.is_file():
            try:
                data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, YAMLError) as exc:
                raise InputError(
                    f"cannot read it: {exc}",
                    file=str(path),
                    hint="give a midstream directory written by kotsrewrite rewrite",
                ) from None
            if not isinstance(data, dict):
                raise InputError(
                    "not a kustomization mapping",
                    file=str(path),
                    hint="give a midstream directory written by kotsrewrite rewrite",
                )
            return data
    raise InputError(
        "no kustomization.yaml in this directory",
        file=str(directory),
        hint="give the midstream directory written by kotsrewrite rewrite (--out)",
    )


def _configured_fields(directory: Path, kustomization: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, path) of the ``images`` field specs in the ``configurations`` files."""
    out: list[tuple[str, str]] = []
    for name in kustomization.get("configurations") or []:
        try:
            data = YAML(typ="safe", pure=True).load((directory / str(name)).read_text("utf-8"))
        except (OSError, UnicodeDecodeError, YAMLError):
            continue
        for spec in (data or {}).get("images") or [] if isinstance(data, dict) else []:
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                out.append((str(spec.get("kind") or ""), spec["path"]))
    return out


def _is_secret_resource(directory: Path, entry: str, secret: str) -> bool:
    path = directory / entry
    if not path.is_file():
        return False
    try:
        docs = _load_all(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError):
        return False
    return bool(docs) and all(
        d.get("kind") == "Secret" and (d.get("metadata") or {}).get("name") == secret for d in docs
    )


class _Checker:
    def __init__(
        self,
        directory: Path,
        plan: Plan | None,
        namespace: str | None,
        command: Sequence[str],
    ) -> None:
        self.directory = directory
        self.plan = plan
        self.namespace = plan.options.namespace if plan is not None else namespace
        self.command = command
        self.problems: list[str] = []
        self.images = 0
        self.pod_specs = 0
        self.secrets = 0
        self.objects = 0
        self.pull_images: dict[str, ImageRef] = {}
        self.pull_hosts: set[str] = set()
        self.pull_logins: dict[str, Login] = {}

    def relocated_host(self) -> str | None:
        """The customer registry of a relocated midstream (``rewrite --registry``): from the
        plan, else from the ``copy-plan.json`` written beside the kustomization; None for a
        proxy midstream. Its pull secret holds the customer's login, not the license."""
        if self.plan is not None:
            relocation = getattr(self.plan, "relocation", None)
            if relocation is None:
                return None
            return str(relocation.registry).partition("/")[0].lower()
        path = self.directory / COPY_PLAN_FILE
        if not path.is_file():
            return None
        try:
            copy_plan = CopyPlan.load(path)
        except InputError as exc:
            self.problem(f"{self.shown(COPY_PLAN_FILE)}: {exc.message}")
            return None
        return copy_plan.registry.partition("/")[0].lower()

    def shown(self, file: str) -> str:
        """A file of the midstream as the user can open it (the directory as they gave it)."""
        return shown_path(str(self.directory), file)

    def problem(self, text: str) -> None:
        if self.plan is not None:
            text = text.replace(self.plan.options.license_id, "<license ID>")
        if text not in self.problems:
            self.problems.append(text)

    def run(self) -> None:
        k = _kustomization(self.directory)
        annotations = k.get("commonAnnotations")
        slug = annotations.get(_ANNOTATION) if isinstance(annotations, dict) else None
        if self.plan is not None:
            if slug != self.plan.options.app_slug:
                self.problem(
                    f"{self.shown('kustomization.yaml')}: commonAnnotations {_ANNOTATION} is"
                    f" {slug!r},"
                    f" expected {self.plan.options.app_slug!r}"
                )
            slug = self.plan.options.app_slug
        if not isinstance(slug, str) or not slug:
            self.problem(
                f"{self.shown('kustomization.yaml')}: no commonAnnotations {_ANNOTATION}:"
                " cannot tell the app slug nor the pull secret's name; is it a midstream"
                " written by kotsrewrite rewrite (--out)?"
            )
            return
        secret = f"{slug}-registry"
        renames = renames_from(k.get("images"))
        try:
            built = _build(self.command, self.directory)
        except _BuildFailed as exc:
            self.problem(f"kustomize cannot build the midstream: {exc}")
            return
        self.objects = len(built)
        base: list[dict[str, Any]] = []
        for entry in k.get("resources") or []:
            entry = str(entry)
            path = self.directory / entry
            if path.is_dir():
                try:
                    base += _build(self.command, path)
                except _BuildFailed as exc:
                    self.problem(f"kustomize cannot build the base {entry}: {exc}")
                    return
            elif not _is_secret_resource(self.directory, entry, secret) and path.is_file():
                try:
                    base += _load_all(path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, YAMLError) as exc:
                    self.problem(f"{self.shown(entry)}: cannot read it: {exc}")
        fields = _configured_fields(self.directory, k)
        self.check_images(base, built, renames, fields)
        self.check_references(built, fields)
        hosts = self.check_secrets(built, secret, renames)
        self.check_pod_specs(built, secret, hosts)
        self.collect_pulls(built, hosts)
        for obj in built:
            meta = obj.get("metadata") or {}
            if (meta.get("annotations") or {}).get(_ANNOTATION) != slug:
                self.problem(f"{_describe(_key(obj))}: no annotation {_ANNOTATION}: {slug}")

    def check_images(
        self,
        base: list[dict[str, Any]],
        built: list[dict[str, Any]],
        renames: list[Rename],
        fields: list[tuple[str, str]],
    ) -> None:
        by_key = {_key(obj): obj for obj in built}
        for obj in base:
            key = _key(obj)
            if key not in by_key:
                self.problem(f"{_describe(key)}: in the base but not in the built midstream")
                continue
            sites = _all_sites(obj, fields)
            for path, image in sites.items():
                self.images += 1
                expected = apply_renames(image, renames)
                if self.plan is not None:
                    with contextlib.suppress(KeyError):
                        expected = self.plan.decision(image).new_image
                actual = _get(by_key[key], path)
                if actual == expected:
                    continue
                where = f"{_describe(key)} {_fmt(path)}"
                if actual == image:
                    self.problem(f"{where}: {image} was not renamed to {expected}")
                else:
                    self.problem(f"{where}: is {actual}, expected {expected} (from {image})")

    def check_references(self, built: list[dict[str, Any]], fields: list[tuple[str, str]]) -> None:
        """Every image in the built output is a valid reference (the distribution grammar,
        as kubelet parses it): a renamed registry with a port is not."""
        for obj in built:
            if obj.get("kind") == "CustomResourceDefinition":
                continue
            sites = _all_sites(obj, fields)
            for path, image in sites.items():
                try:
                    ImageRef.parse(image)
                except InputError as exc:
                    self.problem(
                        f"{_describe(_key(obj))} {_fmt(path)}: {image!r} is not a valid image"
                        f" reference: {exc.message}"
                    )

    def check_secrets(
        self, built: list[dict[str, Any]], secret: str, renames: list[Rename]
    ) -> set[str]:
        """Check every pull secret; return the hosts its auths cover."""
        hosts: set[str] = set()
        required = {_domain(r.new_name) for r in renames}
        relocated = self.relocated_host()
        if relocated is not None:
            required = {relocated}
        elif self.plan is not None:
            required = {h.lower() for h in self.plan.options.replicated_hosts}
        found = [o for o in built if o.get("kind") == "Secret" and _key(o)[3] == secret]
        self.secrets = len(found)
        for obj in found:
            where = _describe(_key(obj))
            if obj.get("type") != "kubernetes.io/dockerconfigjson":
                self.problem(
                    f"{where}: type is {obj.get('type')!r}, not kubernetes.io/dockerconfigjson"
                )
            data = obj.get("data") or {}
            try:
                config = json.loads(
                    base64.b64decode(str(data.get(".dockerconfigjson")), validate=True)
                )
                auths = config["auths"]
                assert isinstance(auths, dict)
            except (binascii.Error, ValueError, KeyError, TypeError, AssertionError):
                self.problem(f"{where}: data .dockerconfigjson is not base64 JSON with auths")
                continue
            seen = {str(h).lower() for h in auths}
            hosts |= seen
            with contextlib.suppress(InputError):
                own = PullCredentials.from_docker_config(config).logins
                for host, login in own.items():
                    self.pull_logins.setdefault(host, login)
            for host in sorted(required - seen):
                self.problem(f"{where}: auths has no entry for {host}")
            if self.plan is not None and seen - required:
                self.problem(f"{where}: auths has unexpected hosts {sorted(seen - required)}")
            for host, entry in sorted(auths.items()):
                if not isinstance(entry, dict):
                    self.problem(f"{where}: auths {host} is not a mapping")
                    continue
                password = entry.get("password")
                if relocated is not None and str(host).lower() == relocated:
                    self.check_customer_login(where, str(host), entry)
                    continue
                if entry.get("username") != "LICENSE_ID":
                    self.problem(f"{where}: auths {host} username is not LICENSE_ID")
                if not isinstance(password, str) or not password:
                    self.problem(f"{where}: auths {host} has no password")
                    continue
                if self.plan is not None and password != self.plan.options.license_id:
                    self.problem(f"{where}: auths {host} password is not the license ID")
                good = base64.b64encode(f"LICENSE_ID:{password}".encode()).decode("ascii")
                if entry.get("auth") != good:
                    self.problem(
                        f"{where}: auths {host} auth is not base64 of LICENSE_ID:<password>"
                    )
        return hosts | required

    def check_customer_login(self, where: str, host: str, entry: dict[str, Any]) -> None:
        """A relocated midstream's auths entry: the customer's username and password, and
        ``auth`` the base64 of ``username:password`` (what the kubelet sends)."""
        username, password = entry.get("username"), entry.get("password")
        if not isinstance(username, str) or not username:
            self.problem(f"{where}: auths {host} has no username")
            return
        if not isinstance(password, str) or not password:
            self.problem(f"{where}: auths {host} has no password")
            return
        good = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        if entry.get("auth") != good:
            self.problem(f"{where}: auths {host} auth is not base64 of <username>:<password>")

    def collect_pulls(self, built: list[dict[str, Any]], hosts: set[str]) -> None:
        """The images a pull check asks for, and the logins it uses (see :class:`VerifyResult`)."""
        self.pull_hosts = {registry_key(h) for h in hosts}
        secrets: dict[tuple[str | None, str], dict[str, Login]] = {}
        for obj in built:
            if obj.get("kind") != "Secret":
                continue
            try:
                raw = base64.b64decode(str((obj.get("data") or {}).get(".dockerconfigjson")))
                logins = PullCredentials.from_docker_config(json.loads(raw)).logins
            except (binascii.Error, ValueError, InputError):
                continue
            secrets[(_key(obj)[2] or None, _key(obj)[3])] = dict(logins)
        for obj in built:
            if obj.get("kind") == "CustomResourceDefinition":
                continue
            ns = _key(obj)[2] or None
            for _, spec in _pod_specs(obj):
                names = [
                    str(s.get("name"))
                    for s in spec.get("imagePullSecrets") or []
                    if isinstance(s, dict)
                ]
                usable: dict[str, Login] = {}
                for name in names:
                    found = secrets.get((ns, name)) or secrets.get((None, name)) or {}
                    for host, login in found.items():
                        usable.setdefault(host, login)
                for _, image in _image_sites(spec):
                    try:
                        ref = ImageRef.parse(image)
                    except Exception:
                        continue
                    host = registry_key(ref.registry)
                    if host in self.pull_hosts or host in usable:
                        self.pull_images.setdefault(image, ref)
                        if host in usable and host not in self.pull_hosts:
                            self.pull_logins.setdefault(host, usable[host])

    def check_pod_specs(self, built: list[dict[str, Any]], secret: str, hosts: set[str]) -> None:
        """Each PodSpec lists the secret once when it pulls from its hosts, and every PodSpec
        listing it finds a Secret of that name in its own effective namespace (an object
        without ``metadata.namespace`` is in the app namespace, ``default`` unless told)."""
        app = self.namespace or "default"
        served = {
            _key(obj)[2] or app
            for obj in built
            if obj.get("kind") == "Secret" and _key(obj)[3] == secret
        }
        stored = _StoredObjects(built)
        for obj in built:
            if obj.get("kind") == "CustomResourceDefinition":
                continue
            key = _key(obj)
            pruned = stored.pruned(obj)
            for path, spec in _pod_specs(obj):
                self.pod_specs += 1
                pulls = spec.get("imagePullSecrets") or []
                names = [s.get("name") for s in pulls if isinstance(s, dict)]
                count = names.count(secret)
                where = f"{_describe(key)} {_fmt(path) or '(object)'}"
                if count > 1:
                    self.problem(f"{where}: imagePullSecrets lists {secret} {count} times")
                images = [image for _, image in _image_sites(spec)]
                using = [i for i in images if _domain(i) in hosts]
                if using and pruned is not None:
                    self.check_stored(stored, pruned, obj, path, where, using[0], secret)
                elif using and count == 0:
                    self.problem(f"{where}: pulls {using[0]} but imagePullSecrets lacks {secret}")
                namespace = key[2] or app
                if (using or count) and namespace not in served:
                    self.problem(
                        f"{where}: no pull secret {secret} in namespace {namespace}"
                        + ("" if key[2] else " (the app namespace: --namespace)")
                        + " where it runs"
                    )
        if self.plan is not None:
            for pull in self.plan.secrets:
                if (pull.namespace or app) not in served:
                    self.problem(
                        f"no pull secret {secret} in namespace {pull.namespace or app},"
                        " which the plan names"
                    )

    def check_stored(
        self,
        stored: _StoredObjects,
        pruned: tuple[Pruner, Any],
        obj: dict[str, Any],
        path: tuple[str | int, ...],
        where: str,
        image: str,
        secret: str,
    ) -> None:
        """A PodSpec of a custom resource whose CRD is in the build: the secret must survive
        the API server's pruning (beside it, in an enclosing object's declared field) or be
        held by the ServiceAccount it runs as, in its namespace."""
        pruner, data = pruned
        accounts = stored.accounts(_key(obj)[2])
        if covering_placement(data, path, pruner, secret, accounts) is None:
            self.problem(
                f"{where}: pulls {image} but {secret} does not survive pruning by"
                f" CustomResourceDefinition {pruner.crd}, and no ServiceAccount it runs as in"
                " its namespace holds it"
            )


class _StoredObjects:
    """The built objects as the API server would store them: custom resources pruned by the
    structural schemas of the CRDs in the build."""

    def __init__(self, built: list[dict[str, Any]]) -> None:
        self._crds: dict[tuple[str, str], dict[str, Any]] = {}
        self._accounts: dict[str, dict[str, Any]] = {}
        self._built = built
        for obj in built:
            if obj.get("kind") == "CustomResourceDefinition":
                names = crd_names(obj)
                if names is not None:
                    self._crds.setdefault(names, obj)

    def pruned(self, obj: dict[str, Any]) -> tuple[Pruner, Any] | None:
        """(pruner, pruned copy) of a custom resource whose CRD is in the build, else None."""
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        crd = self._crds.get((group, str(obj.get("kind", ""))))
        if crd is None:
            return None
        pruner = pruner_for(crd, version)
        if not isinstance(pruner, Pruner):
            return None
        return pruner, pruner.prune(obj)

    def accounts(self, namespace: str) -> dict[str, Any]:
        """ServiceAccounts of the build in ``namespace`` (``""``: none named), by name."""
        return {
            _key(o)[3]: o
            for o in self._built
            if o.get("kind") == "ServiceAccount"
            and o.get("apiVersion") == "v1"
            and _key(o)[2] == namespace
        }


def verify_midstream(
    directory: str | os.PathLike[str],
    plan: Plan | None = None,
    *,
    namespace: str | None = None,
    command: Sequence[str] | None = None,
    base: str | os.PathLike[str] | None = None,
) -> VerifyResult:
    """Build the midstream in ``directory`` with kustomize and check it (see the module doc).

    ``plan`` (what :func:`~kotsrewrite.rewrite` returns in its result) makes the checks exact;
    without it they follow the kustomization itself. ``namespace`` is the app namespace (the
    plan's when given). ``command`` is the kustomize command (default
    :func:`kustomize_command`). ``base``, the base the midstream was made from, adds a problem
    for each file added, changed or removed since its snapshot (or when the midstream names
    another base). A build failure is a problem, not an exception. Raises
    :class:`~kotsrewrite.InputError` when ``directory`` holds no kustomization or no kustomize
    is installed.
    """
    path = Path(directory)
    if not path.is_dir():
        raise InputError(
            "not a directory" if path.exists() else "no such directory",
            file=str(directory),
            hint="give the midstream directory written by kotsrewrite rewrite (--out)",
        )
    cmd = list(command) if command is not None else kustomize_command()
    checker = _Checker(path, plan, namespace, cmd)
    checker.run()
    if base is not None:
        from ._snapshot import snapshot_problems

        for problem in snapshot_problems(path, base):
            checker.problem(problem)
    return VerifyResult(
        directory=path,
        problems=tuple(checker.problems),
        objects=checker.objects,
        images_checked=checker.images,
        pod_specs_checked=checker.pod_specs,
        secrets_checked=checker.secrets,
        pull_images=tuple(checker.pull_images.values()),
        pull_hosts=tuple(sorted(checker.pull_hosts)),
        pull_credentials=PullCredentials(checker.pull_logins),
    )

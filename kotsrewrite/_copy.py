"""Executing a copy plan with skopeo: registry to registry, to an OCI directory, or from one.

skopeo (``copy --all --preserve-digests``) is the field's standard copier: it keeps
multi-arch indexes whole and digests unchanged, speaks every registry's auth, retries, and
handles blob mounts. We drive it, one process per image, a bounded number at a time:

* **resumable**: before copying, the destination's manifest is read (``skopeo inspect
  --raw``); an image already there with the planned digest is skipped;
* **pinned**: the source is pulled by digest (the plan's, or the tag's digest read just
  before copying), so a tag moving mid-copy cannot slip in another image;
* **verified**: after copying, the destination's raw manifest must hash to that digest.

OCI directories (``--to-dir``/``--from-dir``): one OCI layout per image under
``DIR/images/<key>`` (``key``: the first 24 hex of sha256 of the destination), with every blob
in one shared ``DIR/blobs`` (skopeo's ``--dest-shared-blob-dir``): concurrent exports never
write one ``index.json`` at once, and layers shared by images are stored once.

Credentials go to skopeo as it takes them: ``--authfile FILE``, else ``REGISTRY_AUTH_FILE``,
else ``$DOCKER_CONFIG/config.json`` (and skopeo's own defaults). The license, for the proxy and
the Replicated registry, is merged into a temporary copy of that file (mode 0600, in a 0700
directory, deleted afterwards): never on a command line, never printed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from ._errors import InputError
from ._reference import ImageRef
from ._relocate import CopyEntry, CopyPlan, default_auth_file

__all__ = [
    "CopyOptions",
    "CopyResult",
    "ImageCopy",
    "copy_images",
    "resolve_digests",
    "skopeo_command",
]

_SKOPEO_HINT = (
    "install skopeo (Debian/Ubuntu: apt-get install skopeo; Fedora: dnf install skopeo;"
    " macOS: brew install skopeo), or give its path with --skopeo"
)


def skopeo_command(skopeo: str | None = None) -> str:
    """The skopeo executable; :class:`~kotsrewrite.InputError` (exit 2) when missing."""
    found = shutil.which(skopeo or "skopeo")
    if found is None:
        raise InputError(
            f"{skopeo or 'skopeo'} not found: kotsrewrite copies images with skopeo",
            file="skopeo",
            hint=_SKOPEO_HINT,
        )
    return found


def _str_tuple(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.lower() for v in value)


@attrs.frozen
class CopyOptions:
    """How to run the copy. The license never appears in a repr."""

    authfile: Path | None = None
    """Docker config with the credentials (default: as skopeo finds them)."""
    license_id: str | None = attrs.field(default=None, repr=False)
    """For images pulled from the proxy or the Replicated registry (user ``LICENSE_ID``)."""
    insecure_registries: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    """Hosts reached over plain HTTP or unverified TLS (skopeo ``--tls-verify=false``)."""
    concurrency: int = 4
    retry_times: int = 2
    skopeo: str | None = None
    """skopeo's path (default: found on ``PATH``)."""
    timeout: float = 3600.0
    """Seconds one skopeo process may take."""
    env: Mapping[str, str] | None = attrs.field(default=None, repr=False)
    """Environment for finding the default auth file (default ``os.environ``)."""


@attrs.frozen
class ImageCopy:
    """What happened to one image."""

    entry: CopyEntry
    status: str
    """``copied``, ``present`` (already at the destination with the digest: skipped),
    ``failed``."""
    digest: str | None
    """The digest copied (or found)."""
    error: str | None = None
    """Why it failed (skopeo's last error line; never a credential)."""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "destination": self.entry.destination,
            "status": self.status,
            "digest": self.digest,
            "error": self.error,
        }


@attrs.frozen
class CopyResult:
    """The outcome of :func:`copy_images`."""

    images: tuple[ImageCopy, ...]

    @property
    def ok(self) -> bool:
        """True when no image failed."""
        return all(i.status != "failed" for i in self.images)

    def count(self, status: str) -> int:
        """How many images ended with ``status``."""
        return sum(1 for i in self.images if i.status == status)

    def summary(self) -> str:
        """``N images: C copied, P already present, F failed``."""
        return (
            f"{len(self.images)} images: {self.count('copied')} copied,"
            f" {self.count('present')} already present, {self.count('failed')} failed"
        )


# --------------------------------------------------------------------------------------------
# Credentials


@contextmanager
def _authfile(plan: CopyPlan, options: CopyOptions) -> Iterator[Path | None]:
    """The auth file to give skopeo: the user's, or a private temporary copy with the
    license added for the plan's license hosts."""
    base = options.authfile
    if base is None:
        base = default_auth_file(options.env)
    if base is not None and not base.is_file():
        raise InputError(
            "cannot read the auth file",
            file=str(base),
            hint="give --authfile FILE, a Docker config.json (e.g. written by skopeo login)",
        )
    if options.license_id is None:
        yield base
        return
    config: dict[str, Any] = {}
    if base is not None:
        try:
            loaded = json.loads(base.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(
                "not a readable Docker config file",
                file=str(base),
                hint="give --authfile FILE, a Docker config.json",
            ) from None
        if isinstance(loaded, dict):
            config = loaded
    auths = dict(config.get("auths") or {})
    raw = f"LICENSE_ID:{options.license_id}".encode()
    entry = {"auth": base64.b64encode(raw).decode("ascii")}
    for host in plan.license_hosts:
        auths[host] = entry
    config["auths"] = auths
    directory = tempfile.mkdtemp(prefix="kotsrewrite-auth-")  # mode 0700
    path = Path(directory) / "auth.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Running skopeo


@attrs.frozen
class _Runner:
    skopeo: str
    authfile: Path | None
    options: CopyOptions
    secrets: tuple[str, ...] = attrs.field(repr=False)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                [self.skopeo, *args],
                capture_output=True,
                timeout=self.options.timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, b"", b"timed out")

    def error_line(self, proc: subprocess.CompletedProcess[bytes]) -> str:
        text = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = text[-1] if text else f"exit {proc.returncode}"
        if 'msg="' in last:  # logrus: level=fatal msg="..."
            last = last.split('msg="', 1)[1].rstrip('"')
        return self._scrub(last)[:500]

    def _tls(self, flag: str, image: str) -> list[str]:
        if not image.startswith("docker://"):
            return []
        host = ImageRef.parse(image.removeprefix("docker://")).domain.lower()
        return [f"{flag}=false"] if host in self.options.insecure_registries else []

    def _auth(self) -> list[str]:
        return ["--authfile", str(self.authfile)] if self.authfile is not None else []

    def raw_manifest(self, image: str, shared: str | None = None) -> tuple[bytes | None, str]:
        """The raw manifest of ``image`` (transport-qualified), or ``None`` and why."""
        args = ["inspect", "--raw", "--retry-times", str(self.options.retry_times)]
        if image.startswith("docker://"):
            args += self._auth() + self._tls("--tls-verify", image)
        if shared is not None:
            args += ["--shared-blob-dir", shared]
        proc = self._run([*args, image])
        if proc.returncode != 0:
            return None, self.error_line(proc)
        return proc.stdout, ""

    def digest(self, image: str, shared: str | None = None) -> tuple[str | None, str]:
        raw, why = self.raw_manifest(image, shared)
        if raw is None:
            return None, why
        return "sha256:" + hashlib.sha256(raw).hexdigest(), ""

    def copy(
        self, src: str, dst: str, src_shared: str | None, dst_shared: str | None
    ) -> tuple[bool, str]:
        args = ["copy", "--all", "--preserve-digests", "--quiet"]
        args += ["--retry-times", str(self.options.retry_times), *self._auth()]
        args += self._tls("--src-tls-verify", src) + self._tls("--dest-tls-verify", dst)
        if src_shared is not None:
            args += ["--src-shared-blob-dir", src_shared]
        if dst_shared is not None:
            args += ["--dest-shared-blob-dir", dst_shared]
        proc = self._run([*args, src, dst])
        return proc.returncode == 0, "" if proc.returncode == 0 else self.error_line(proc)


def _layout_key(entry: CopyEntry) -> str:
    return hashlib.sha256(entry.destination.encode()).hexdigest()[:24]


def _copy_one(
    runner: _Runner, entry: CopyEntry, to_dir: Path | None, from_dir: Path | None
) -> ImageCopy:
    key = _layout_key(entry)
    shared_src = shared_dst = None
    if from_dir is not None:
        shared_src = str(from_dir / "blobs")
        source = f"oci:{from_dir / 'images' / key}"
    else:
        source = f"docker://{entry.source_image()}"
    if to_dir is not None:
        shared_dst = str(to_dir / "blobs")
        destination = f"oci:{to_dir / 'images' / key}"
    else:
        destination = f"docker://{entry.destination_image()}"

    want = entry.digest
    if from_dir is not None:
        found, why = runner.digest(source, shared_src)
        if found is None:
            return ImageCopy(entry, "failed", want, f"not in {from_dir}: {why}")
        if want is not None and found != want:
            return ImageCopy(entry, "failed", found, f"{from_dir} holds {found}, plan says {want}")
        want = found
    elif want is None:
        found, why = runner.digest(source)
        if found is None:
            return ImageCopy(entry, "failed", None, f"source {entry.source_image()}: {why}")
        want = found
        # Pull exactly what was inspected, even should the tag move meanwhile.
        source = f"docker://{ImageRef.parse(entry.source_image()).name}@{want}"

    if to_dir is None or (to_dir / "images" / key).is_dir():
        present, _ = runner.digest(destination, shared_dst)
        if present == want:
            return ImageCopy(entry, "present", want)

    if to_dir is not None:
        (to_dir / "images").mkdir(parents=True, exist_ok=True)
    ok, why = runner.copy(source, destination, shared_src, shared_dst)
    if not ok:
        return ImageCopy(entry, "failed", want, why)
    copied, why = runner.digest(destination, shared_dst)
    if copied != want:
        detail = why or f"destination has {copied}"
        return ImageCopy(entry, "failed", want, f"digest check failed: {detail}, want {want}")
    return ImageCopy(entry, "copied", want)


def copy_images(
    plan: CopyPlan,
    options: CopyOptions | None = None,
    *,
    to_dir: str | os.PathLike[str] | None = None,
    from_dir: str | os.PathLike[str] | None = None,
    on_result: Callable[[ImageCopy], None] | None = None,
) -> CopyResult:
    """Copy every image of ``plan``: registry to registry (default), from the registries to
    the OCI directory ``to_dir``, or from the OCI directory ``from_dir`` to the registry.

    Images already at their destination with the planned digest are skipped; every copy is
    checked by digest afterwards. Raises :class:`~kotsrewrite.InputError` when skopeo is
    missing, the auth file is unreadable, or both directories are given; a failed image is
    reported in the result (``status == "failed"``), never raised.
    """
    options = options or CopyOptions()
    if to_dir is not None and from_dir is not None:
        raise InputError(
            "--to-dir and --from-dir together",
            file="--to-dir",
            hint="export with --to-dir DIR on the connected side, import with --from-dir DIR",
        )
    skopeo = skopeo_command(options.skopeo)
    out_dir = Path(to_dir).absolute() if to_dir is not None else None
    in_dir = Path(from_dir).absolute() if from_dir is not None else None
    if in_dir is not None and not (in_dir / "images").is_dir():
        raise InputError(
            "not an export of kotsrewrite copy --to-dir (no images/ directory)",
            file=str(in_dir),
            hint="give the directory written by kotsrewrite copy PLAN --to-dir DIR",
        )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    with _authfile(plan, options) as authfile:
        runner = _Runner(skopeo, authfile, options, (options.license_id or "",))
        results: list[ImageCopy] = []
        with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
            futures = [
                pool.submit(_copy_one, runner, entry, out_dir, in_dir) for entry in plan.images
            ]
            for future in futures:
                result = future.result()
                if on_result is not None:
                    on_result(result)
                results.append(result)
    return CopyResult(images=tuple(results))


def resolve_digests(plan: CopyPlan, options: CopyOptions | None = None) -> dict[str, str]:
    """The current digest of every tag-only entry's source (``rewrite --resolve``), keyed by
    :attr:`CopyEntry.pull_from`. Raises :class:`~kotsrewrite.InputError` naming the image
    when one cannot be read (nothing is written then)."""
    options = options or CopyOptions()
    skopeo = skopeo_command(options.skopeo)
    wanted = [e for e in plan.images if e.digest is None]
    out: dict[str, str] = {}
    with _authfile(plan, options) as authfile:
        runner = _Runner(skopeo, authfile, options, (options.license_id or "",))
        with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
            found = list(pool.map(lambda e: runner.digest(f"docker://{e.source_image()}"), wanted))
    for entry, (digest, why) in zip(wanted, found, strict=True):
        if digest is None:
            raise InputError(
                f"cannot resolve {entry.source_image()}: {why}",
                file="--resolve",
                hint="check the credentials (--license, the auth file) and --insecure-registry,"
                " or drop --resolve to copy the tag's digest at copy time",
            )
        out[entry.pull_from] = digest
    return out

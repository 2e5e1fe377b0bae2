"""kotsrewrite: make a Kubernetes application's private images pull through a proxy.

Find every image in rendered manifests, probe each registry anonymously, and write a midstream
kustomization that renames private images to the proxy and adds the license pull secret.

Typical use, step by step (each step is a pure function but probing and writing)::

    import kotsrewrite

    base = kotsrewrite.load_manifests("manifests/")          # Base: documents with locations
    inventory = kotsrewrite.find_images(base)                  # Inventory: every image use
    results = kotsrewrite.probe_sync(inventory.images)         # ProbeResult: verdict + evidence
    options = kotsrewrite.RewriteOptions(app_slug="my-app", license_id="...")
    plan = kotsrewrite.build_plan(inventory, results, options) # Plan: renames, patches, secrets
    texts = kotsrewrite.read_base_texts(base)                  # the files to copy into base/
    files = kotsrewrite.render_plan(plan, base, out_dir="midstream", base_texts=texts)
    kotsrewrite.write_output(files, "midstream")               # atomic

or all at once: ``kotsrewrite.rewrite("manifests/", options)`` -> :class:`RewriteResult`.
Verdicts can come from a KOTS Installation or an earlier report instead of probing
(:func:`load_known_images`); the app slug, license ID, additional namespaces and
proxy-public-images setting from KOTS License and Application files (:func:`load_license`,
:func:`load_application`). Errors a user can cause are :class:`InputError` (with ``file``,
``line`` and ``hint``); :class:`PolicyError` is a refusal under ``on_unknown="fail"``.
Whether a customer can pull each built image with the pull secret's credentials (the license):
:func:`pull_check` (a separate, credentialed path; probing never sends credentials).
``rewrite(..., relocation=RelocationOptions(registry=...))`` relocates every image into the
customer's own registry and returns a :class:`CopyPlan`, which :func:`copy_images` carries out
with skopeo.
"""

from ._copy import CopyOptions, CopyResult, ImageCopy, copy_images, resolve_digests
from ._discovery import find_images
from ._errors import (
    InputError,
    InvalidReferenceError,
    KotsRewriteError,
    OutputError,
    PolicyError,
)
from ._kots import KotsApplication, KotsLicense, load_application, load_license
from ._kustomize import Origin
from ._manifests import Limits, load_manifests, node_to_data
from ._model import (
    Base,
    Cause,
    Document,
    Evidence,
    ImageField,
    ImageUse,
    Inventory,
    Location,
    OnUnknown,
    PodSpecSite,
    ProbeCause,
    ProbeResult,
    ProbeStep,
    Resource,
    Slot,
    Verdict,
)
from ._placement import OnUnplaced, Placement, PlacementNote, SecretPlacement
from ._plan import (
    Action,
    FieldSpec,
    ImageDecision,
    Patch,
    PatchOp,
    PatchTarget,
    Plan,
    PullSecret,
    Rename,
    RewriteOptions,
    build_plan,
)
from ._postrender import dump_documents, post_render
from ._probe import ProbeOptions, Prober, probe, probe_sync
from ._reference import ImageRef, parse_image
from ._registry._pull import (
    Login,
    PullCredentials,
    PullResult,
    PullStatus,
    pull_check,
    pull_check_sync,
)
from ._relocate import (
    CopyEntry,
    CopyPlan,
    Layout,
    RegistryCredentials,
    RelocationOptions,
    RelocationPlan,
    build_copy_plan,
    read_registry_auth,
    relocate_plan,
)
from ._render import read_base_texts, render_plan
from ._report import build_report, load_known_images
from ._rewrite import RewriteResult, rewrite
from ._verify import VerifyResult, kustomize_build, kustomize_command, verify_midstream
from ._write import write_output

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Base",
    "Cause",
    "CopyEntry",
    "CopyOptions",
    "CopyPlan",
    "CopyResult",
    "Document",
    "Evidence",
    "FieldSpec",
    "ImageCopy",
    "ImageDecision",
    "ImageField",
    "ImageRef",
    "ImageUse",
    "InputError",
    "InvalidReferenceError",
    "Inventory",
    "KotsApplication",
    "KotsLicense",
    "KotsRewriteError",
    "Layout",
    "Limits",
    "Location",
    "Login",
    "OnUnknown",
    "OnUnplaced",
    "Origin",
    "OutputError",
    "Patch",
    "PatchOp",
    "PatchTarget",
    "Placement",
    "PlacementNote",
    "Plan",
    "PodSpecSite",
    "PolicyError",
    "ProbeCause",
    "ProbeOptions",
    "ProbeResult",
    "ProbeStep",
    "Prober",
    "PullCredentials",
    "PullResult",
    "PullSecret",
    "PullStatus",
    "RegistryCredentials",
    "RelocationOptions",
    "RelocationPlan",
    "Rename",
    "Resource",
    "RewriteOptions",
    "RewriteResult",
    "SecretPlacement",
    "Slot",
    "Verdict",
    "VerifyResult",
    "__version__",
    "build_copy_plan",
    "build_plan",
    "build_report",
    "copy_images",
    "dump_documents",
    "find_images",
    "kustomize_build",
    "kustomize_command",
    "load_application",
    "load_known_images",
    "load_license",
    "load_manifests",
    "node_to_data",
    "parse_image",
    "post_render",
    "probe",
    "probe_sync",
    "pull_check",
    "pull_check_sync",
    "read_base_texts",
    "read_registry_auth",
    "relocate_plan",
    "render_plan",
    "resolve_digests",
    "rewrite",
    "verify_midstream",
    "write_output",
]

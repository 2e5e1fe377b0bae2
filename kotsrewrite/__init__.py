"""kotsrewrite: make a Kubernetes application's private images pull through a proxy.

Find every image in rendered manifests, probe each registry anonymously, and write a midstream
kustomization that renames private images to the proxy and adds the license pull secret.

Typical use::

    import kotsrewrite

    base = kotsrewrite.load_manifests("manifests/")
    inventory = kotsrewrite.find_images(base)
    results = kotsrewrite.probe_sync(inventory.images)
"""

from ._discovery import find_images
from ._errors import (
    InputError,
    InvalidReferenceError,
    KotsRewriteError,
    OutputError,
    PolicyError,
)
from ._manifests import Limits, load_manifests
from ._model import (
    Base,
    Document,
    Evidence,
    ImageField,
    ImageUse,
    Inventory,
    Location,
    OnUnknown,
    PodSpecSite,
    ProbeResult,
    ProbeStep,
    Resource,
    Slot,
    Verdict,
)
from ._probe import ProbeOptions, probe, probe_sync
from ._reference import ImageRef, parse_image

__version__ = "0.1.0"

__all__ = [
    "Base",
    "Document",
    "Evidence",
    "ImageField",
    "ImageRef",
    "ImageUse",
    "InputError",
    "InvalidReferenceError",
    "Inventory",
    "KotsRewriteError",
    "Limits",
    "Location",
    "OnUnknown",
    "OutputError",
    "PodSpecSite",
    "PolicyError",
    "ProbeOptions",
    "ProbeResult",
    "ProbeStep",
    "Resource",
    "Slot",
    "Verdict",
    "__version__",
    "find_images",
    "load_manifests",
    "parse_image",
    "probe",
    "probe_sync",
]

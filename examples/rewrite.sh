#!/usr/bin/env bash
# Rewrite the acme-platform example into a midstream and show the images kustomize builds.
#
#   examples/rewrite.sh                  # writes examples/acme/midstream/
#   OUT=/tmp/acme-midstream examples/rewrite.sh
#
# Runs offline: every verdict comes from the KOTS Installation CR's knownImages, so nothing
# is probed. Needs kotsrewrite on PATH (pip install .) and kubectl (or kustomize) for the build.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-examples/acme/midstream}"

kotsrewrite rewrite examples/acme/manifests \
    --license examples/acme/kots/license.yaml \
    --application examples/acme/kots/application.yaml \
    --known-images examples/acme/kots/installation.yaml \
    --offline \
    --out "$out" \
    --force

echo
echo "# images in the built midstream (kubectl kustomize $out):"
if command -v kubectl >/dev/null 2>&1; then
    build=(kubectl kustomize "$out")
elif command -v kustomize >/dev/null 2>&1; then
    build=(kustomize build "$out")
else
    echo "rewrite.sh: neither kubectl nor kustomize is on PATH; skipping the build" >&2
    exit 0
fi
"${build[@]}" | grep -E '^[[:space:]]*(- )?image: [^[:space:]]' | sed -E 's/^[[:space:]]*(- )?//' | sort | uniq -c

#!/usr/bin/env bash
# Rewrite a copy of the acme-platform example into a midstream and show the images kustomize
# builds from it.
#
#   examples/rewrite.sh                 # works in a new temporary directory
#   examples/rewrite.sh /tmp/acme       # works in /tmp/acme (acme/ copied there, midstream/ beside)
#
# Runs offline: every verdict comes from the KOTS Installation CR's knownImages, so nothing is
# probed. Works on a copy so that midstream/ is written beside it, not into this repository
# (kotsrewrite itself never writes into its input: a plain manifest directory is copied into
# midstream/base/). Needs kotsrewrite on PATH (pip install .) and kubectl (or kustomize).
set -euo pipefail
examples="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d "${TMPDIR:-/tmp}/acme.XXXXXX")}"

mkdir -p "$work"
cp -R "$examples/acme/manifests" "$examples/acme/kots" "$work/"
cd "$work"
echo "# in $work"

kotsrewrite rewrite manifests \
    --license kots/license.yaml \
    --application kots/application.yaml \
    --known-images kots/installation.yaml \
    --offline \
    --out midstream

echo
echo "# images in the built midstream (kubectl kustomize $work/midstream):"
if command -v kubectl >/dev/null 2>&1; then
    build=(kubectl kustomize midstream)
elif command -v kustomize >/dev/null 2>&1; then
    build=(kustomize build midstream)
else
    echo "rewrite.sh: neither kubectl nor kustomize is on PATH; skipping the build" >&2
    exit 0
fi
"${build[@]}" | grep -oE 'image: [^[:space:]]+' | sort | uniq -c

#!/usr/bin/env bash
# Validates the Kubernetes manifests against the API schemas of one Kubernetes version with
# kubernetes-validate (PyPI; it bundles the schemas and needs no network or cluster).
#
#   scripts/validate-kubernetes.sh [DIR]     # default: deploy/kubernetes
#
# Strict: an unknown field (a typo) fails, as does a wrong type or a missing required field.
# Every *.yaml in DIR except kustomization.yaml must be listed under its `resources:`, so a new
# manifest cannot be left out of the check. Environment: KUBERNETES_VERSION (default 1.34.0),
# KUBERNETES_VALIDATE (default: kubernetes-validate on PATH).
set -euo pipefail
dir=${1:-"$(dirname "$0")/../deploy/kubernetes"}
version=${KUBERNETES_VERSION:-1.34.0}
validate=${KUBERNETES_VALIDATE:-kubernetes-validate}

if ! command -v "$validate" >/dev/null 2>&1; then
  echo "validate-kubernetes: $validate not found (pip install kubernetes-validate==1.37.0)" >&2
  exit 2
fi
kustomization="$dir/kustomization.yaml"
[ -f "$kustomization" ] || { echo "validate-kubernetes: no $kustomization" >&2; exit 1; }

# The `resources:` list: "  - name.yaml" lines after "resources:" until the next top-level key.
mapfile -t resources < <(awk '
  /^resources:/ { inside = 1; next }
  /^[^ #-]/     { inside = 0 }
  inside && /^ *- / { sub(/^ *- */, ""); sub(/ *#.*/, ""); print }
' "$kustomization")
[ "${#resources[@]}" -gt 0 ] || { echo "validate-kubernetes: no resources in $kustomization" >&2; exit 1; }

status=0
for file in "$dir"/*.yaml; do
  name=$(basename "$file")
  [ "$name" = kustomization.yaml ] && continue
  if ! printf '%s\n' "${resources[@]}" | grep -qxF "$name"; then
    echo "validate-kubernetes: $name is not listed in kustomization.yaml resources" >&2
    status=1
  fi
done
files=()
for name in "${resources[@]}"; do
  # A directory is a kustomize base (an overlay's ../): validated on its own.
  [ -d "$dir/$name" ] && continue
  [ -f "$dir/$name" ] || { echo "validate-kubernetes: $name (in resources) does not exist" >&2; status=1; continue; }
  files+=("$dir/$name")
done
if [ "${#files[@]}" -gt 0 ]; then
  "$validate" --strict --kubernetes-version "$version" "${files[@]}" || status=1
fi
if [ "$status" -eq 0 ]; then
  echo "validate-kubernetes: ${#files[@]} manifests valid for Kubernetes $version (strict)"
fi
exit "$status"

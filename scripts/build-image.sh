#!/usr/bin/env bash
# Builds the container image: a statically linked regauth (glibc, +crt-static) with cargo,
# staged with the Dockerfile and the default settings file into a small build context, then
# `docker build`. No base image is pulled and nothing compiles inside docker.
#
#   scripts/build-image.sh [TAG]          # default tag: regauth:dev
#   scripts/build-image.sh --binary-only  # build and check the static binary, print its path
#
# Environment: DOCKER (default: docker), CARGO_PROFILE (default: image, see Cargo.toml;
# `release` gives the thin-LTO build), and DOCKER_HOST as docker reads it.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
profile=${CARGO_PROFILE:-image}
docker=${DOCKER:-docker}
binary_only=false
tag=regauth:dev
case "${1:-}" in
  --binary-only) binary_only=true ;;
  "") ;;
  *) tag=$1 ;;
esac

# --target keeps RUSTFLAGS off build scripts and proc macros (they run on the host, dynamic).
start=$(date +%s)
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --locked --profile "$profile" --target "$target" --bin regauth >&2
echo "build-image: cargo build (profile $profile) took $(( $(date +%s) - start )) s" >&2
bin=target/$target/$profile/regauth

# An empty image has no dynamic loader: refuse anything that is not fully static.
if ! file -L "$bin" | grep -Eq 'statically linked|static-pie linked'; then
  echo "build-image: $bin is not statically linked:" >&2
  file -L "$bin" >&2
  exit 1
fi
if ldd "$bin" >/dev/null 2>&1 && ! ldd "$bin" 2>&1 | grep -q 'statically linked'; then
  echo "build-image: ldd lists shared libraries for $bin:" >&2
  ldd "$bin" >&2
  exit 1
fi
if $binary_only; then
  echo "$bin"
  exit 0
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp Dockerfile "$context/Dockerfile"
cp "$bin" "$context/regauth"
cp deploy/container/regauth.yaml "$context/regauth.yaml"
chmod 0755 "$context/regauth"
chmod 0644 "$context/regauth.yaml"
"$docker" build --quiet --tag "$tag" "$context" >&2
size=$("$docker" image inspect --format '{{.Size}}' "$tag")
echo "build-image: $tag is $size bytes" >&2
echo "$tag"

#!/bin/bash
# Build a built-in environment: images/build.sh NAME [--force]
# The image is tagged localhost/rosetta/NAME and labelled with a hash of its sources, so an
# unchanged image is not rebuilt (CI and set-up reuse what a previous run built).
set -euo pipefail
name=${1:?usage: images/build.sh NAME [--force]}
force=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
src="$here/$name"
tag="localhost/rosetta/$name"
[ -f "$src/Containerfile" ] || { echo "no such image: $name" >&2; exit 2; }

podman_() { env ${CONTAINERS_CONF:+CONTAINERS_CONF=$CONTAINERS_CONF} podman "$@"; }

hash=$( (cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum; command -v busybox >/dev/null && sha256sum "$(command -v busybox)") | sha256sum | cut -c1-16)
current=$(podman_ image inspect --format '{{ index .Labels "rosetta.source-hash" }}' "$tag" 2>/dev/null || true)
if [ "$current" = "$hash" ] && [ "$force" != "--force" ]; then
    echo "$tag is up to date ($hash)"
    exit 0
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp -a "$src/." "$context/"
if [ -x "$context/stage.sh" ]; then
    "$context/stage.sh" "$context/rootfs"
fi
podman_ build --quiet --pull=never --label "rosetta.source-hash=$hash" --tag "$tag" --file "$context/Containerfile" "$context" >/dev/null
echo "built $tag ($hash)"

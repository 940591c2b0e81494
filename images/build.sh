#!/bin/bash
# Build a built-in environment:   images/build.sh NAME [--force]
# List the buildable ones:        images/build.sh --list
#
# Each images/NAME/ holds a Containerfile, and optionally stage.sh, which is run first with
# the build context's rootfs path to stage files the Containerfile copies (hello: the host's
# busybox; base: a debootstrapped Debian as rootfs.tar). No container registry is used: an
# image is either FROM scratch or FROM another image built here (localhost/rosetta/BASE),
# and that base is built first.
#
# The image is tagged localhost/rosetta/NAME and labelled with a hash of its sources (its
# folder, the host inputs it copies, and its base's hash), so an unchanged image is not rebuilt
# and a changed base rebuilds its dependants. --force rebuilds NAME even when unchanged (its
# base only when changed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=localhost/rosetta

# This machine's podman needs its settings (runc, ulimits); `rosetta build-image` passes them,
# a direct call falls back to the file the platform writes.
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$here/../var/podman/containers.conf" ]; then
    export CONTAINERS_CONF="$here/../var/podman/containers.conf"
fi
lock_fd=""   # the build lock held while building; podman must not inherit it (rootless podman
             # leaves a pause process behind, which would hold the lock for ever)
podman_() {
    if [ -n "$lock_fd" ]; then
        env ${CONTAINERS_CONF:+CONTAINERS_CONF=$CONTAINERS_CONF} podman "$@" {lock_fd}>&-
    else
        env ${CONTAINERS_CONF:+CONTAINERS_CONF=$CONTAINERS_CONF} podman "$@"
    fi
}
say() { printf '==> %s\n' "$*"; }

# The Debian mirror this machine's apt uses for SUITE: the first `deb` source that serves it,
# in one-line (.list) or deb822 (.sources) form. ROSETTA_DEBIAN_MIRROR and
# ROSETTA_DEBIAN_SECURITY_MIRROR override.
apt_mirror() {
    local suite=$1 f
    {
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] || continue
            awk -v s="$suite" '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == s) { print $i; exit } }' "$f"
        done
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" } {
                types = uris = suites = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^#/ || !match($i, /^[A-Za-z-]+:/)) continue
                    key = tolower(substr($i, 1, RLENGTH - 1)); val = substr($i, RLENGTH + 1)
                    if (key == "types") types = val; else if (key == "uris") uris = val
                    else if (key == "suites") suites = val; else if (key == "enabled") enabled = val
                }
                if (enabled ~ /no/ || (types " ") !~ /[ \t]deb[ \t]/) next
                if ((" " suites " ") ~ ("[ \t]" s "[ \t]")) { split(uris, u, " "); print u[1]; exit }
            }' "$f"
        done
    } | head -n1
}
export DEBIAN_MIRROR=${ROSETTA_DEBIAN_MIRROR:-$(apt_mirror bookworm)}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DEBIAN_SECURITY_MIRROR=${ROSETTA_DEBIAN_SECURITY_MIRROR-$(apt_mirror bookworm-security)}

# What an image is built from besides its own folder.
host_inputs() {
    case $1 in
        hello) if command -v busybox >/dev/null; then sha256sum "$(command -v busybox)"; fi ;;
        base) echo "debian bookworm $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR" ;;
    esac
}

# The image NAME is built FROM, when that is one of ours (FROM localhost/rosetta/BASE).
parent_of() {
    local p
    p=$(sed -n 's|^[[:space:]]*FROM[[:space:]]\{1,\}\(--[^[:space:]]*[[:space:]]\{1,\}\)*localhost/rosetta/\([a-z0-9._-]*\).*|\2|Ip' \
        "$here/$1/Containerfile" | head -n1)
    if [ -n "$p" ] && [ -f "$here/$p/Containerfile" ]; then echo "$p"; fi
}

source_hash() {
    local name=$1 parent
    parent=$(parent_of "$name")
    {
        (cd "$here/$name" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
        (cd "$here/$name" && find . -type l -printf 'link %p -> %l\n' | sort)
        host_inputs "$name"
        if [ -n "$parent" ]; then echo "from $parent $(source_hash "$parent")"; fi
    } | sha256sum | cut -c1-16
}

built_hash() {
    podman_ image inspect --format '{{ index .Labels "rosetta.source-hash" }}' "$prefix/$1" 2>/dev/null || true
}

buildable() {
    local d
    for d in "$here"/*/; do
        [ -f "$d/Containerfile" ] && basename "$d"
    done
}

list() {
    local name parent hash built state description
    printf '%-12s %-8s %-12s %s\n' NAME FROM STATE DESCRIPTION
    for name in $(buildable); do
        parent=$(parent_of "$name")
        hash=$(source_hash "$name")
        built=$(built_hash "$name")
        if [ -z "$built" ]; then state="not built"
        elif [ "$built" = "$hash" ]; then state="up to date"
        else state="outdated"; fi
        description=$(sed -n 's/.*org\.opencontainers\.image\.description="\([^"]*\)".*/\1/p' "$here/$name/Containerfile" | head -n1)
        printf '%-12s %-8s %-12s %s\n' "$name" "${parent:--}" "$state" "$description"
    done
}

contexts=()
cleanup() { if [ ${#contexts[@]} -gt 0 ]; then rm -rf --one-file-system "${contexts[@]}"; fi; }
trap cleanup EXIT

unlock() { exec {lock_fd}>&-; lock_fd=""; }

build() {
    local name=$1 force=$2 depth=${3:-0}
    local src=$here/$name tag=$prefix/$name parent hash old_id new_id context started lock
    local -a args
    [ -f "$src/Containerfile" ] || { echo "no such image: $name (images/build.sh --list)" >&2; exit 2; }
    [ "$depth" -lt 8 ] || { echo "FROM chain too deep at $name" >&2; exit 2; }
    parent=$(parent_of "$name")
    if [ -n "$parent" ]; then
        build "$parent" "" $((depth + 1))
    fi
    hash=$(source_hash "$name")
    if [ "$(built_hash "$name")" = "$hash" ] && [ -z "$force" ]; then
        echo "$tag is up to date ($hash)"
        return 0
    fi
    # One build of an image at a time on this machine (set-up, CI and tests may race).
    lock=${TMPDIR:-/tmp}/rosetta-build-$name.lock
    exec {lock_fd}>"$lock"
    if ! flock -n "$lock_fd"; then
        say "[$name] waiting for another build of $tag"
        flock "$lock_fd"
        if [ "$(built_hash "$name")" = "$hash" ] && [ -z "$force" ]; then
            echo "$tag is up to date ($hash)"
            unlock
            return 0
        fi
    fi
    started=$(date +%s)
    old_id=$(podman_ image inspect --format '{{ .Id }}' "$tag" 2>/dev/null || true)
    say "[$name] building $tag ($hash)${parent:+ from $prefix/$parent}"
    context=$(mktemp -d "${TMPDIR:-/tmp}/rosetta-build-$name.XXXXXX")
    contexts+=("$context")
    cp -a "$src/." "$context/"
    if [ -x "$context/stage.sh" ]; then
        say "[$name] staging files (stage.sh)"
        "$context/stage.sh" "$context/rootfs" {lock_fd}>&- 2>&1 | sed -u "s/^/[$name] /"
    fi
    args=(--pull=never --label "rosetta.source-hash=$hash" --tag "$tag" --file "$context/Containerfile")
    # Build options a Containerfile asks for in a comment line: `# build.sh: --squash`.
    read -r -a extra <<<"$(sed -n 's/^# build\.sh:[[:space:]]*//p' "$context/Containerfile" | tr '\n' ' ')"
    args+=(${extra[@]+"${extra[@]}"})
    if grep -q '^ARG DEBIAN_MIRROR' "$context/Containerfile"; then
        args+=(--build-arg "DEBIAN_MIRROR=$DEBIAN_MIRROR" --build-arg "DEBIAN_SECURITY_MIRROR=$DEBIAN_SECURITY_MIRROR")
    fi
    # pip inside a build needs the host's CA bundle where TLS is intercepted: it is offered as
    # the build secret `host-ca`, which a RUN step that downloads mounts
    # (RUN --mount=type=secret,id=host-ca,target=/run/host-ca.crt); it never lands in a layer.
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        args+=(--secret id=host-ca,src=/etc/ssl/certs/ca-certificates.crt)
    fi
    say "[$name] podman build"
    podman_ build "${args[@]}" "$context" 2>&1 | sed -u "s/^/[$name] /"
    rm -rf --one-file-system "$context"
    new_id=$(podman_ image inspect --format '{{ .Id }}' "$tag")
    # Drop the image this one replaces when nothing uses it any more (untagged, no container).
    if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
        podman_ image rm "$old_id" >/dev/null 2>&1 || true
    fi
    unlock
    echo "built $tag ($hash) in $(( $(date +%s) - started ))s"
}

case ${1:-} in
    --list|-l) list ;;
    ""|-h|--help) sed -n '2,3p' "$0" | sed 's/^# //'; exit 2 ;;
    --force) build "${2:?usage: images/build.sh NAME [--force]}" --force ;;
    *) case ${2:-} in ""|--force) build "$1" "${2:-}" ;; *) echo "usage: images/build.sh NAME [--force]" >&2; exit 2 ;; esac ;;
esac

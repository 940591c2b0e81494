#!/bin/bash
# Bootstrap Debian bookworm (minbase) from this machine's apt mirror into $1.tar, which the
# Containerfile ADDs (ADD keeps owners and modes). Needs root and debootstrap. build.sh
# exports DEBIAN_MIRROR (read from /etc/apt/sources*). No container registry is involved.
set -euo pipefail
dir=$1
out=$1.tar
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "base: debootstrap needs root" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
    echo "installing debootstrap"
    apt-get -o DPkg::Lock::Timeout=600 install -y debootstrap \
        || { apt-get -o DPkg::Lock::Timeout=600 update && apt-get -o DPkg::Lock::Timeout=600 install -y debootstrap; }
fi
cleanup() {
    # debootstrap mounts /proc and /sys in the target while it works; never follow them.
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
    rm -rf --one-file-system "$dir"
}
trap cleanup EXIT
echo "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase --include=ca-certificates \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg bookworm "$dir" "$mirror"
echo "packing rootfs"
tar --numeric-owner --xattrs -C "$dir" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' -cf "$out" .
echo "rootfs.tar: $(du -h "$out" | cut -f1)"

#!/bin/sh
# Stage a minimal root filesystem from Debian's busybox-static into $1.
set -eu
rootfs=$1
busybox=$(command -v busybox)
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/home/rosetta"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nrosetta:x:1000:1000:Rosetta:/home/rosetta:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nrosetta:x:1000:\n' > "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

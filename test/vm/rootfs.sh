#!/usr/bin/env bash
# Builds (once) the Debian 12 root filesystem that `make test-vm` boots, and
# prints the path of the cached tarball. The cache key is the suite, the
# mirror and the package list, so changing any of them builds a new one;
# building is most of the test's cost (about 4 minutes), booting is not.
set -euo pipefail

CACHE=${VMTEST_CACHE:-/var/cache/xdpguard-vmtest}
SUITE=bookworm
# udev loads virtio_net (a module in Debian's kernel); the rest is what the
# guest test needs: systemd as PID 1, Debian's own 6.1 kernel, Dovecot.
PKGS=systemd-sysv,udev,kmod,linux-image-amd64,dovecot-imapd,dovecot-pop3d,iproute2,procps
# The initramfs holds only what finds the root disk (MODULES=list): with
# Debian's MODULES=most, mkinitramfs runs twice during the build and each
# run copies ~1,000 modules, half an hour on a busy two-core machine.
INITRD_MODULES="virtio_pci virtio_blk ext4 crc32c_generic"

# The mirror apt already uses on this machine (deb822 or one-line format).
mirror() {
	local m
	m=$(sed -n 's/^URIs: *\(\S*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
	[ -n "$m" ] || m=$(awk '$1=="deb" && $2 !~ /security/ && $3 ~ /^bookworm/ {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
	echo "${m:-http://deb.debian.org/debian}"
}

MIRROR=${VMTEST_MIRROR:-$(mirror)}
key=$(printf '%s\n' "$SUITE" "$MIRROR" "$PKGS" "$INITRD_MODULES" | sha256sum | cut -c1-16)
tar=$CACHE/rootfs-$SUITE-$key.tar
if [ -s "$tar" ]; then
	echo "$tar"
	exit 0
fi
command -v mmdebstrap >/dev/null || {
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
}
mkdir -p "$CACHE"
echo ">> test-vm: building the $SUITE root filesystem from $MIRROR (cached as $tar)" >&2
start=$(date +%s)
mmdebstrap --quiet --format=tar --variant=minbase --include="$PKGS" \
	--setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
	--setup-hook='echo MODULES=list >"$1/etc/initramfs-tools/conf.d/xdpguard-vmtest"' \
	--setup-hook="printf '%s\\n' $INITRD_MODULES >\"\$1/usr/share/initramfs-tools/modules.d/xdpguard-vmtest\"" \
	"$SUITE" "$tar.tmp" \
	"deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" >&2
mv "$tar.tmp" "$tar"
# Older keys are stale package lists: ~700 MB each.
find "$CACHE" -maxdepth 1 -name "rootfs-$SUITE-*.tar" ! -name "${tar##*/}" -delete
echo ">> test-vm: root filesystem built in $(($(date +%s) - start)) s" >&2
echo "$tar"

#!/usr/bin/env bash
# Runs the kernel-facing Go test binaries inside a QEMU VM booted with a
# Debian kernel package, so the BPF code is checked on the kernels mail hosts
# run, not just on the build machine's. See README.md in this directory.
#
# Usage: tools/vmtest/vmtest.sh [-p PKGDIR]... KERNEL...
#   KERNEL   6.1 | 6.12 | a full package name (linux-image-6.1.0-56-amd64)
#   -p DIR   a Go package directory to test (repeatable; default $VMTEST_PKGS)
#
# Exit status: 0 all passed; the tests' own status if they failed;
# 125 if a VM did not boot, crashed, or timed out (no result marker);
# 2 on usage or setup errors. With several kernels, the first failure wins.
set -euo pipefail

readonly VM_FAILED=125

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${VMTEST_CACHE:-$ROOT/build/vmtest-cache}
WORK=${VMTEST_WORK:-$ROOT/build/vmtest}
GO=${GO:-go}

# Go packages whose test binaries run in the VM: only those that touch the
# kernel, since everything runs 10-15x slower under TCG.
VMTEST_PKGS=${VMTEST_PKGS:-./internal/datapath ./internal/bpf}
# Flags for every test binary. -test.short keeps the slow cases out.
VMTEST_TESTFLAGS=${VMTEST_TESTFLAGS:--test.v -test.short -test.timeout=20m}
# Kernel modules (and their dependencies) loaded before the tests.
VMTEST_MODULES=${VMTEST_MODULES:-veth tcp_diag}
# Seconds before a VM counts as hung. Must exceed -test.timeout so a hung
# test prints its goroutine dump before the VM is killed.
VMTEST_TIMEOUT=${VMTEST_TIMEOUT:-1500}
# Seconds until /init must have started; a VM stuck in early boot is
# killed then (and retried once) rather than waiting for VMTEST_TIMEOUT.
VMTEST_BOOT_TIMEOUT=${VMTEST_BOOT_TIMEOUT:-120}
VMTEST_MEM=${VMTEST_MEM:-1024}
# One vCPU: with two, the 6.12 guest now and then died of an int3 oops in
# kernel text patching (stale translated code across MTTCG vCPUs), and a
# second TCG thread only competes for the host's two cores.
VMTEST_SMP=${VMTEST_SMP:-1}
# auto: KVM only if the CPU advertises vmx/svm and a probe VM boots; else TCG.
VMTEST_ACCEL=${VMTEST_ACCEL:-auto}
# Debian packages for QEMU itself. The lib* ones are QEMU's shared libraries
# that a minimal machine lacks; only those not installed are downloaded.
VMTEST_QEMU_DEBS=${VMTEST_QEMU_DEBS:-qemu-system-x86 qemu-system-common qemu-system-data seabios busybox-static}
VMTEST_QEMU_LIBS=${VMTEST_QEMU_LIBS:-libaio1 libcapstone4 libfdt1 libfuse3-3 libibverbs1 librdmacm1 libnl-3-200 libnl-route-3-200 libpmem1 libndctl6 libdaxctl1 libslirp0 libvdeplug2 liburing2}

log() { printf '>> vmtest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

pkgs=()
while getopts p:h opt; do
	case $opt in
	p) pkgs+=("$OPTARG") ;;
	*) sed -n '2,13p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || die "no kernel given (6.1, 6.12 or linux-image-...)"
[ ${#pkgs[@]} -gt 0 ] || read -ra pkgs <<<"$VMTEST_PKGS"
[ "$(id -u)" = 0 ] || die "must run as root (apt-get download, dpkg-deb)"

mkdir -p "$CACHE/debs" "$WORK"

apt_updated=
apt_update() {
	[ -n "$apt_updated" ] || [ -n "${VMTEST_NO_UPDATE:-}" ] || {
		log "apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
	}
	apt_updated=1
}

# Downloads .deb files into the cache; prints their paths. apt-get download
# fetches again every time, so a file of the same version is reused.
fetch_debs() {
	local p ver f out=()
	for p in "$@"; do
		ver=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
		[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "apt-cache knows no package $p"
		ver=${ver#*:}
		f=$(compgen -G "$CACHE/debs/${p}_*${ver//+/?}_*.deb" | head -1 || true)
		if [ -z "$f" ]; then
			log "downloading $p $ver"
			(cd "$CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "$p" >&2) ||
				die "apt-get download $p failed"
			f=$(compgen -G "$CACHE/debs/${p}_*.deb" | sort -V | tail -1)
		fi
		out+=("$f")
	done
	printf '%s\n' "${out[@]}"
}

# Picks the newest kernel package apt-cache lists for a series; old ABIs
# disappear from the archive, so the name is never hard-coded.
resolve_kernel() {
	local re
	case $1 in
	linux-image-*) echo "$1"; return ;;
	6.1) re='^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
	6.12) re='^linux-image-6\.12\.[0-9]+\+deb12-amd64$' ;;
	*) die "unknown kernel $1 (use 6.1, 6.12 or a linux-image-... package)" ;;
	esac
	apt_update
	apt-cache pkgnames linux-image-6. | grep -E "$re" | sort -V | tail -1 | grep . ||
		die "apt-cache lists no package matching $re"
}

QEMU_ROOT=$CACHE/qemu
setup_qemu() {
	local stamp=$QEMU_ROOT/.stamp want p libs=()
	for p in $VMTEST_QEMU_LIBS; do
		dpkg -s "$p" >/dev/null 2>&1 || libs+=("$p")
	done
	want="$VMTEST_QEMU_DEBS ${libs[*]}"
	if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
		apt_update
		rm -rf "$QEMU_ROOT"
		mkdir -p "$QEMU_ROOT"
		# shellcheck disable=SC2086
		fetch_debs $want | while read -r f; do dpkg-deb -x "$f" "$QEMU_ROOT"; done
		echo "$want" >"$stamp"
	fi
	QEMU=$QEMU_ROOT/usr/bin/qemu-system-x86_64
	BUSYBOX=$QEMU_ROOT/bin/busybox
	export LD_LIBRARY_PATH=$QEMU_ROOT/usr/lib/x86_64-linux-gnu:$QEMU_ROOT/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	local missing
	missing=$(ldd "$QEMU" | awk '/not found/ {print $1}')
	[ -z "$missing" ] || die "qemu needs libraries none of VMTEST_QEMU_LIBS provide: $missing"
	"$QEMU" --version | head -1 >&2
}

# The kernel's scripts/extract-vmlinux: find a compression magic inside the
# bzImage, decompress from there, keep the first result that is an ELF file.
# Booting the ELF directly (PVH entry) skips the in-guest decompression,
# which costs seconds under TCG.
extract_vmlinux() {
	local img=$1 out=$2 magic tool off
	for spec in '\x1f\x8b\x08:gzip -dc' '\xfd7zXZ\x00:xz -dc' 'BZh:bzip2 -dc' \
		'\x5d\x00\x00\x00:xz -dc --format=lzma' '\x89\x4c\x5a:lzop -dc' \
		'\x02\x21\x4c\x18:lz4 -dc' '\x28\xb5\x2f\xfd:zstd -dc'; do
		magic=${spec%%:*} tool=${spec#*:}
		command -v "${tool%% *}" >/dev/null || continue
		for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1 | head -5); do
			tail -c +$((off + 1)) "$img" | $tool >"$out" 2>/dev/null || true
			[ "$(head -c 4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ] && return 0
		done
	done
	rm -f "$out"
	return 1
}

# Unpacks a kernel package once: vmlinux plus the package tree for modules.
setup_kernel() {
	local pkg=$1 dir=$CACHE/kernels/$1 deb
	KDIR=$dir
	[ -f "$dir/vmlinux" ] && return 0
	apt_update
	deb=$(fetch_debs "$pkg")
	rm -rf "$dir" && mkdir -p "$dir/pkg"
	dpkg-deb -x "$deb" "$dir/pkg"
	extract_vmlinux "$(echo "$dir"/pkg/boot/vmlinuz-*)" "$dir/vmlinux.tmp" ||
		die "no known compressed payload in the vmlinuz of $pkg"
	mv "$dir/vmlinux.tmp" "$dir/vmlinux"
}

# Drops older packages of the same series from the cache: each new ABI
# would otherwise leave ~500 MB behind.
prune_series() {
	local glob f
	glob=$(sed -E 's/[0-9]+(\+deb12)?-amd64$/*\1-amd64/' <<<"$1")
	for f in "$CACHE"/kernels/$glob "$CACHE"/debs/${glob}_*.deb; do
		[ -e "$f" ] || continue
		case ${f##*/} in "$1" | "$1"_*) continue ;; esac
		log "pruning $f"
		rm -rf "$f"
	done
}

# Copies module $1 and its dependencies, uncompressed (busybox insmod cannot
# read .ko.xz), into $2 and appends them, dependencies first, to $2/order.
add_module() {
	local name=$1 dst=$2 f dep
	grep -qx "$name" "$dst/order" 2>/dev/null && return 0
	f=$(find "$KDIR"/pkg/lib/modules -name "$name.ko*" -o -name "${name//_/-}.ko*" | head -1)
	[ -n "$f" ] || die "module $name not in the kernel package"
	case $f in
	*.xz) xz -dc "$f" ;;
	*.zst) zstd -dc "$f" ;;
	*.gz) gzip -dc "$f" ;;
	*) cat "$f" ;;
	esac >"$dst/$name.ko"
	for dep in $(tr '\0' '\n' <"$dst/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
		add_module "$dep" "$dst"
	done
	echo "$name" >>"$dst/order"
}

# Builds each package's test binary once, for all kernels, into $WORK/tests/<name>/
# next to a copy of the package directory (tests open testdata/ relative to cwd).
build_tests() {
	local d name abs
	rm -rf "$WORK/tests" && mkdir -p "$WORK/tests"
	for d in "${pkgs[@]}"; do
		case $d in /*) abs=$d ;; *) abs=$ROOT/$d ;; esac
		[ -d "$abs" ] || die "no package directory $d"
		if ! compgen -G "$abs/*_test.go" >/dev/null; then
			log "$d has no tests; skipped"
			continue
		fi
		name=$(basename "$abs")
		mkdir -p "$WORK/tests/$name"
		cp -a "$abs/." "$WORK/tests/$name/"
		# The binary needs the package's files (testdata), not its Go
		# sources; left there, `go test ./...` would test the copy too.
		find "$WORK/tests/$name" \( -name '*.test' -o -name '*.go' \) -delete
		log "building test binary for $d"
		(cd "$abs" && CGO_ENABLED=0 $GO test -c -o "$WORK/tests/$name/$name.test" .) ||
			die "go test -c failed for $d"
	done
	compgen -G "$WORK/tests/*/*.test" >/dev/null || die "no test binaries to run"
}

write_init() {
	cat >"$1" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root TMPDIR=/tmp
mkdir -p /proc /sys /dev /tmp /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ip link set lo up
echo "==vmtest== init uptime=\$(cut -d' ' -f1 /proc/uptime) kernel=\$(uname -r)"
rc=0
for m in \$(cat /modules/order 2>/dev/null); do
	insmod /modules/\$m.ko || { echo "==vmtest== insmod \$m failed"; rc=1; }
done
[ \$rc = 0 ] && for t in /tests/*/*.test; do
	cd "\${t%/*}"
	echo "==vmtest== run \${t##*/}"
	"\$t" $VMTEST_TESTFLAGS
	r=\$?
	echo
	echo "==vmtest== \${t##*/} exit=\$r"
	[ \$rc != 0 ] || rc=\$r
done
echo "==vmtest== done exit=\$rc uptime=\$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
EOF
	chmod +x "$1"
}

# Packs an initramfs: busybox, modules, test binaries with their package dirs.
# Left uncompressed: QEMU copies it straight into guest memory, while
# decompressing inside a TCG guest is slow.
build_initramfs() {
	local out=$1 init=${2:-} ird=$WORK/initramfs m
	rm -rf "$ird" && mkdir -p "$ird/bin" "$ird/modules"
	cp "$BUSYBOX" "$ird/bin/busybox"
	if [ -n "$init" ]; then
		cp "$init" "$ird/init"
	else
		for m in $VMTEST_MODULES; do add_module "$m" "$ird/modules"; done
		cp -a "$WORK/tests" "$ird/tests"
		write_init "$ird/init"
	fi
	(cd "$ird" && find . | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) >"$out"
}

qemu_cmd() {
	local accel=$1 initrd=$2 cpu=max
	[ "$accel" = kvm ] && cpu=host
	echo "$QEMU" -L "$QEMU_ROOT/usr/share/qemu" -L "$QEMU_ROOT/usr/share/seabios" \
		-nodefaults -no-user-config -display none -monitor none -no-reboot \
		-machine q35 -accel "$accel" -cpu "$cpu" -m "$VMTEST_MEM" -smp "$VMTEST_SMP" \
		-serial stdio -kernel "$KDIR/vmlinux" -initrd "$initrd" \
		-append "'console=ttyS0 panic=-1 quiet no_timer_check'" ${VMTEST_QEMU_ARGS:-}
}

# KVM only when the CPU advertises it and a kernel really boots under it:
# on these machines /dev/kvm exists but cannot run a normal guest.
pick_accel() {
	case $VMTEST_ACCEL in
	tcg | kvm) ACCEL=$VMTEST_ACCEL; return ;;
	esac
	ACCEL=tcg
	grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ] || { log "no vmx/svm CPU flag: TCG"; return 0; }
	local init=$WORK/probe-init
	printf '#!/bin/busybox sh\necho VMTEST-KVM-OK\n/bin/busybox poweroff -f\n' >"$init"
	chmod +x "$init"
	build_initramfs "$WORK/probe.cpio" "$init"
	if eval "timeout -k 5 30 $(qemu_cmd kvm "$WORK/probe.cpio")" </dev/null 2>&1 | grep -q VMTEST-KVM-OK; then
		ACCEL=kvm
		log "KVM probe booted: KVM"
	else
		log "KVM probe failed: TCG"
	fi
}

# Boots one kernel and streams its console. Sets RESULT, BOOT_S, TEST_S.
# A VM that dies before /init starts is retried once: under TCG on a loaded
# host, early boot now and then trips over timing (see README); a crash
# after /init started is the tests' doing and is never retried.
run_vm() {
	local pkg=$1 logf=$WORK/$1.log initrd=$WORK/$1.cpio attempt
	build_initramfs "$initrd"
	for attempt in 1 2; do
		log "booting $pkg ($ACCEL, initramfs $(($(stat -c %s "$initrd") / 1048576)) MiB, attempt $attempt)"
		boot_once "$initrd" "$logf"
		[ -z "$T_INIT" ] || break
		[ $attempt = 2 ] || log "$pkg: VM died before /init; console in $logf; retrying once"
		[ $attempt = 2 ] || cp "$logf" "$logf.1"
	done
	BOOT_S=- TEST_S=-
	[ -z "$T_INIT" ] || BOOT_S=$(awk "BEGIN{printf \"%.1f\", $T_INIT-$T0}")
	[ -z "$T_DONE" ] || TEST_S=$(awk "BEGIN{printf \"%.1f\", $T_DONE-$T_INIT}")
	if [ -z "$RC" ]; then
		log "$pkg: VM failed, crashed or hit the ${VMTEST_TIMEOUT}s limit (no result marker; console in $logf)"
		RESULT=$VM_FAILED
	else
		RESULT=$RC
	fi
}

boot_once() {
	local initrd=$1 logf=$2 line part= fd st pidf=$WORK/qemu.pid
	T_INIT= T_DONE= RC=
	T0=$EPOCHREALTIME
	rm -f "$pidf"
	exec {fd}< <(eval "timeout -k 5 $VMTEST_TIMEOUT $(qemu_cmd "$ACCEL" "$initrd") -pidfile $pidf" </dev/null 2>&1 | tee "$logf")
	while :; do
		st=0
		IFS= read -t 5 -r line <&"$fd" || st=$?
		if [ $st -gt 128 ]; then
			# read timed out; keep the partial line and check the boot deadline.
			part+=$line
			if [ -z "$T_INIT" ] && [ "${EPOCHSECONDS}" -ge $((${T0%.*} + VMTEST_BOOT_TIMEOUT)) ] && [ -s "$pidf" ]; then
				log "no /init after ${VMTEST_BOOT_TIMEOUT}s: killing the VM"
				kill "$(cat "$pidf")" 2>/dev/null || true
			fi
			continue
		fi
		line=$part$line part=
		[ $st = 0 ] || [ -n "$line" ] || break
		line=${line//$'\r'/}
		printf '%s\n' "$line"
		case $line in
		'==vmtest== init '*) T_INIT=$EPOCHREALTIME ;;
		'==vmtest== done exit='*)
			T_DONE=$EPOCHREALTIME
			RC=${line#*exit=} RC=${RC%% *}
			;;
		esac
		[ $st = 0 ] || break
	done
	exec {fd}<&-
}

apt_update
setup_qemu
build_tests

kernels=()
for k in "$@"; do kernels+=("$(resolve_kernel "$k")"); done

status=0
summary=()
for pkg in "${kernels[@]}"; do
	prune_series "$pkg"
	setup_kernel "$pkg"
	[ -n "${ACCEL:-}" ] || pick_accel # the KVM probe needs a kernel
	run_vm "$pkg"
	summary+=("$(printf '%-36s boot %5ss  tests %6ss  exit %s' "$pkg" "$BOOT_S" "$TEST_S" "$RESULT")")
	[ "$status" != 0 ] || status=$RESULT
done

log "summary (${ACCEL:-}):"
printf '   %s\n' "${summary[@]}" >&2
exit "$status"

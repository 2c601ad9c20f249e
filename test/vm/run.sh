#!/usr/bin/env bash
# make test-vm: boots Debian 12 (its own 6.1 kernel, systemd as PID 1)
# under QEMU, installs the xdpguard .deb in it and runs test/vm/guest.sh
# there; see test/vm/README.md.
#
#   test/vm/run.sh XDPGUARD.deb
#
# The VM's NIC (virtio-net) is a tap device in a network namespace this
# script creates; the namespace holds the "host side" with two addresses,
# 198.18.77.1 (never banned) and 198.18.77.2 (banned by the guest), and
# nothing else. Exit status: 0 pass, 1 a check failed, 125 the VM did not
# finish in time, 2 usage or setup errors.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEB=${1:?usage: test/vm/run.sh XDPGUARD.deb}
WORK=${VMTEST_WORK:-$ROOT/build/test-vm}
# Seconds for the whole run and for one boot to reach the guest test. TCG
# on a busy two-core machine is slow; a boot takes 30-120 s.
TIMEOUT=${VMTEST_TIMEOUT:-1500}
GUEST=198.18.77.10
GOOD=198.18.77.1
BANNED=198.18.77.2
NS=xdpg-deb-vm-$$
TAP=xdpgtap0

log() { printf '>> test-vm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (mkfs, chroot, tap)"
[ -f "$DEB" ] || die "no package $DEB (make deb)"
DEB=$(readlink -f "$DEB")
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v curl >/dev/null || need+=(curl)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

start=$(date +%s)
tar=${VMTEST_ROOTFS:-$("$ROOT/test/vm/rootfs.sh")} # VMTEST_ROOTFS: a tarball of your own

# The disk: the cached root filesystem plus the package, the test and what
# only this VM needs (its address, a mail user, plaintext POP3 on the
# private network).
rm -rf "$WORK" && mkdir -p "$WORK/root"
tar -C "$WORK/root" -xf "$tar"
R=$WORK/root
install -D -m 0644 "$DEB" "$R/root/xdpguard.deb"
install -D -m 0755 "$ROOT/test/vm/provision.sh" "$R/usr/local/lib/xdpguard-vmtest/provision.sh"
install -D -m 0755 "$ROOT/test/vm/guest.sh" "$R/usr/local/lib/xdpguard-vmtest/guest.sh"
cat >"$R/etc/systemd/system/xdpguard-vmtest.service" <<UNIT
[Unit]
Description=xdpguard VM test (test/vm/guest.sh)
After=network-online.target dovecot.service xdpguard.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/lib/xdpguard-vmtest/guest.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
cat >"$R/etc/systemd/network/10-vmtest.network" <<NET
[Match]
Name=eth0

[Network]
Address=$GUEST/24
NET
systemctl --root="$R" -q enable systemd-networkd.service systemd-networkd-wait-online.service xdpguard-vmtest.service
# A getty on the console would hang up the test's output on ttyS0.
systemctl --root="$R" -q mask serial-getty@ttyS0.service
printf 'disable_plaintext_auth = no\n' >"$R/etc/dovecot/conf.d/99-vmtest.conf"
chroot "$R" sh -c 'useradd -m vmtest && echo vmtest:vmtest-pw | chpasswd &&
	install -o vmtest -g mail -m 0660 /dev/null /var/mail/vmtest'
echo xdpguard-vm >"$R/etc/hostname"
truncate -s 3G "$WORK/disk.img"
mkfs.ext4 -q -F -d "$R" "$WORK/disk.img"
kernel=$(ls "$R"/boot/vmlinuz-* | tail -1)
initrd=$(ls "$R"/boot/initrd.img-* | tail -1)
cp "$kernel" "$WORK/vmlinuz" && cp "$initrd" "$WORK/initrd"
rm -rf "$R"
log "disk ready after $(($(date +%s) - start)) s ($(basename "$kernel"))"

# The host side of the VM's network, and the control line (second serial
# port) the guest asks for traffic checks on.
qemu_pid=
cleanup() {
	[ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" addr add "$GOOD/24" dev "$TAP"
ip -n "$NS" addr add "$BANNED/24" dev "$TAP"
ip -n "$NS" link set "$TAP" up
rm -f "$WORK/ctl.in" "$WORK/ctl.out" && mkfifo "$WORK/ctl.in" "$WORK/ctl.out"
: >"$WORK/console.log"

accel=tcg
[ -w /dev/kvm ] && grep -Eqw 'vmx|svm' /proc/cpuinfo && accel=kvm
nsenter --net="/var/run/netns/$NS" qemu-system-x86_64 -machine q35 -accel "$accel" -cpu max -m 1536 -smp 1 \
	-display none -monitor none -serial "file:$WORK/console.log" -serial "pipe:$WORK/ctl" \
	-kernel "$WORK/vmlinuz" -initrd "$WORK/initrd" \
	-append "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 quiet systemd.show_status=false" \
	-drive "file=$WORK/disk.img,format=raw,if=virtio" \
	-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device virtio-net-pci,netdev=n0 \
	>"$WORK/qemu.log" 2>&1 &
qemu_pid=$!
boot_start=$(date +%s)
exec 3<>"$WORK/ctl.in" # held open so QEMU never reads EOF
log "QEMU ($accel) pid $qemu_pid; console in $WORK/console.log"

# pop3_login SRC: one POP3 login as vmtest from SRC; the SYN of a banned
# source is dropped, so connect times out.
pop3_login() {
	nsenter --net="/var/run/netns/$NS" curl -sS --connect-timeout 10 --max-time 90 \
		--interface "$1" --user vmtest:vmtest-pw "pop3://$GUEST/" >/dev/null 2>>"$WORK/curl.log"
}
traffic() {
	local want=$1 good=fail banned=fail
	pop3_login "$GOOD" && good=login
	pop3_login "$BANNED" && banned=login
	log "traffic ($want): $GOOD $good, $BANNED $banned"
	case $want:$good:$banned in
	banned:login:fail | unbanned:login:login) echo ok ;;
	*) echo "$GOOD $good, $BANNED $banned" ;;
	esac
}

seen=0 result=
while :; do
	if ! kill -0 "$qemu_pid" 2>/dev/null; then
		wait "$qemu_pid" || true
		qemu_pid=
		break
	fi
	if [ $(($(date +%s) - start)) -gt "$TIMEOUT" ]; then
		log "timed out after $TIMEOUT s"
		break
	fi
	n=$(wc -l <"$WORK/console.log")
	if [ "$n" -gt "$seen" ]; then
		while IFS= read -r line; do
			line=${line%$'\r'}
			case $line in
			*XDPG-VMTEST*)
				echo "${line#*XDPG-VMTEST }"
				case $line in
				*"XDPG-VMTEST boot "*) log "boot reached the test $(($(date +%s) - boot_start)) s after it began" ;;
				*"XDPG-VMTEST rebooting"*) boot_start=$(date +%s) ;;
				*"XDPG-VMTEST traffic "*) traffic "${line##* }" >&3 ;;
				*"XDPG-VMTEST PASS"*) result=pass ;;
				*"XDPG-VMTEST FAIL"*) result=fail ;;
				esac
				;;
			*"  journal: "* | *"provision: "*) echo "$line" ;;
			esac
		done < <(sed -n "$((seen + 1)),${n}p" "$WORK/console.log")
		seen=$n
	fi
	sleep 1
done
log "finished after $(($(date +%s) - start)) s"
case $result in
pass) exit 0 ;;
fail) exit 1 ;;
*) log "no verdict on the console; its tail:"; tail -30 "$WORK/console.log" >&2; exit 125 ;;
esac

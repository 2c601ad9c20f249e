#!/usr/bin/env bash
# The test inside the booted VM (make test-vm), run at every boot by
# xdpguard-vmtest.service. It reports on the serial console (ttyS0) in lines
# starting with "XDPG-VMTEST", and asks the host for traffic checks over the
# second serial port (ttyS1): it writes "XDPG-VMTEST traffic EXPECT" and
# reads the host's one-line verdict. test/vm/run.sh is the other side.
#
# Boot 1: provision (install, configure, start, status, reload), ban the
#   host's second address; traffic: the banned source is dropped, the
#   other logs in. systemctl stop; the bans stay in force (traffic again).
#   Reboot.
# Boot 2: the daemon restored the ban from its state (traffic again).
#   apt-get purge; nothing is left: no pins, no state, no program on the
#   NIC, and the once-banned source logs in. Power off.
set -uo pipefail
# After a pipe, `grep PATTERN >/dev/null`, never `grep -q`: with pipefail,
# grep -q exits at the first match, the writer dies of SIGPIPE and a check
# that held fails (make test-vm saw it on `xdpguard status | grep -q`).

IFACE=eth0
BANNED=198.18.77.2
DIR=/var/lib/xdpguard-vmtest
LIB=/usr/local/lib/xdpguard-vmtest

say() { echo "XDPG-VMTEST $*"; }
fail() {
	say "FAIL: $*"
	journalctl -u xdpguard.service --no-pager -n 40 2>&1 | sed 's/^/  journal: /'
	systemctl poweroff
	exit 1
}
# ask_host EXPECT: the host tries POP3 logins from both of its addresses and
# answers "ok" when EXPECT held (banned: only the unbanned source logs in;
# unbanned: both do).
ask_host() {
	local answer
	say "traffic $1"
	read -r -t 900 -u 3 answer || fail "no answer from the host for traffic $1"
	answer=${answer%$'\r'}
	[ "$answer" = ok ] || fail "traffic $1: host says: $answer"
	say "ok: traffic $1"
}

stty -F /dev/ttyS1 raw -echo || fail "no control line on ttyS1"
exec 3</dev/ttyS1 # open for the whole run, so no answer arrives while closed
mkdir -p "$DIR"
boot=$(($(cat "$DIR/boots" 2>/dev/null || echo 0) + 1))
echo "$boot" >"$DIR/boots"
say "boot $boot: up $(cut -d' ' -f1 /proc/uptime) s; $(systemd-analyze time 2>/dev/null | head -1)"

case $boot in
1)
	"$LIB/provision.sh" /root/xdpguard.deb "$IFACE" || fail "provision.sh"
	/usr/sbin/xdpguard ban "$BANNED" --for 2h || fail "xdpguard ban $BANNED"
	/usr/sbin/xdpguard status | grep "^  $BANNED/32 " >/dev/null || fail "status does not list the ban"
	ask_host banned

	systemctl stop xdpguard.service || fail "systemctl stop"
	ip link show dev "$IFACE" | grep xdp >/dev/null || fail "stop took the program off $IFACE"
	/usr/sbin/xdpguard status | grep "^  $BANNED/32 " >/dev/null || fail "stop lost the ban"
	say "ok: stopped; the program and the ban stay"
	ask_host banned
	# The ban is in the state journal (synced before it was reported); the
	# reboot clears bpffs.
	/usr/sbin/xdpguard state export | grep -q "\"$BANNED/32\"" || fail "the state journal lacks $BANNED: $(/usr/sbin/xdpguard state export 2>&1 | head -c 2000)"
	say "rebooting"
	systemctl reboot
	;;
2)
	[ "$(systemctl is-active xdpguard.service)" = active ] || fail "not active after the reboot"
	/usr/sbin/xdpguard status | grep "^  $BANNED/32 " >/dev/null || fail "the reboot lost the ban: $(/usr/sbin/xdpguard status 2>&1)"
	say "ok: after the reboot the daemon restored the ban from its state"
	ask_host banned

	apt-get purge -y -qq xdpguard >/dev/null 2>&1 || fail "apt-get purge xdpguard"
	left=$(ls -d /sys/fs/bpf/xdpguard /var/lib/xdpguard /etc/xdpguard /usr/sbin/xdpguard \
		/lib/systemd/system/xdpguard.service 2>/dev/null)
	[ -z "$left" ] || fail "purge left: $left"
	! ip link show dev "$IFACE" | grep xdp >/dev/null || fail "purge left a program on $IFACE: $(ip link show dev $IFACE)"
	! systemctl is-active --quiet xdpguard.service || fail "still running after purge"
	say "ok: purge left no pins, no state, no program on $IFACE"
	ask_host unbanned
	say "PASS"
	systemctl poweroff
	;;
*)
	fail "unexpected boot $boot"
	;;
esac

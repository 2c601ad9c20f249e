#!/usr/bin/env bash
# Installs the xdpguard .deb on a Debian 12 host with systemd, configures it
# for one interface, starts it, and checks what an operator would:
#
#   test/vm/provision.sh XDPGUARD.deb IFACE
#
# It is the one provisioning script for both the booted test VM (make
# test-vm, through test/vm/guest.sh) and the Vagrantfile, so the two cannot
# drift apart. Each check prints "provision: ok: ..." or stops with
# "provision: FAIL: ..." and status 1.
set -euo pipefail
# After a pipe, `grep PATTERN >/dev/null`, never `grep -q`: with pipefail,
# grep -q exits at the first match, the writer dies of SIGPIPE and a check
# that held fails (make test-vm saw it on `xdpguard status | grep -q`).

deb=${1:?usage: provision.sh XDPGUARD.deb IFACE}
iface=${2:?usage: provision.sh XDPGUARD.deb IFACE}
conf=/etc/xdpguard/xdpguard.yaml
export DEBIAN_FRONTEND=noninteractive

ok() { echo "provision: ok: $*"; }
fail() {
	echo "provision: FAIL: $*"
	journalctl -u xdpguard.service --no-pager -n 30 2>/dev/null || true
	exit 1
}

[ -d /run/systemd/system ] || fail "systemd is not PID 1"
[ -e "/sys/class/net/$iface" ] || fail "no interface $iface"

# The mail server it protects (already in the test VM's image).
if ! dpkg -s dovecot-pop3d dovecot-imapd >/dev/null 2>&1; then
	apt-get update -qq
	apt-get install -y -qq dovecot-imapd dovecot-pop3d
fi

fresh=yes
dpkg -s xdpguard >/dev/null 2>&1 && fresh= # re-provisioning: an upgrade
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
ok "installed $(dpkg-query -W -f '${Package} ${Version}' xdpguard)"
/usr/sbin/xdpguard version
man -w xdpguard >/dev/null 2>&1 || [ -f /usr/share/man/man8/xdpguard.8.gz ] || fail "no man page"

# A fresh install neither enables nor starts it: the conffile names no
# interface, and the daemon refuses to start with one line saying so.
if [ -n "$fresh" ]; then
	! systemctl is-enabled --quiet xdpguard.service || fail "enabled by the package"
	! systemctl is-active --quiet xdpguard.service || fail "started by the package"
fi
if grep -Eq '^interfaces: \[\]' "$conf"; then
	set +e
	err=$(/usr/sbin/xdpguard run --config "$conf" 2>&1 >/dev/null)
	code=$?
	set -e
	[ "$code" = 2 ] && [ "$(wc -l <<<"$err")" = 1 ] && grep -q interfaces <<<"$err" ||
		fail "unconfigured run: exit $code, want 2 and one line naming interfaces: $err"
	ok "refuses to start unconfigured: $err"
	sed -i "s/^interfaces: \[\]/interfaces: [$iface]/" "$conf"
fi
grep -Eq "^interfaces: \[$iface\]" "$conf" || fail "$conf does not protect $iface"

# Type=notify: enable --now returns once the program is attached.
systemctl enable --now xdpguard.service || fail "systemctl enable --now"
[ "$(systemctl show -p Type --value xdpguard.service)" = notify ] || fail "not Type=notify"
[ "$(systemctl is-active xdpguard.service)" = active ] || fail "not active after start"
ok "active (Type=notify), $(systemctl show -p ExecMainPID --value xdpguard.service) is the main PID"

status=$(/usr/sbin/xdpguard status) || fail "xdpguard status: $status"
mode=$(awk -v i="$iface" '$1 == i && $3 == "mode" {print $2}' <<<"$status")
[ -n "$mode" ] || fail "xdpguard status shows no program on $iface: $status"
ok "attached to $iface in $mode mode"
ip link show dev "$iface" | grep 'xdp' >/dev/null || fail "ip link shows no XDP program on $iface"

pid=$(systemctl show -p MainPID --value xdpguard.service)
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl reload xdpguard.service || fail "systemctl reload"
for _ in $(seq 60); do
	journalctl -u xdpguard.service --since "$since" --no-pager | grep 'configuration reloaded' >/dev/null && break
	sleep 1
done
journalctl -u xdpguard.service --since "$since" --no-pager | grep 'configuration reloaded' >/dev/null ||
	fail "no 'configuration reloaded' in the journal within 60 s of systemctl reload"
[ "$(systemctl show -p MainPID --value xdpguard.service)" = "$pid" ] || fail "reload restarted the daemon"
[ "$(systemctl is-active xdpguard.service)" = active ] || fail "not active after reload"
ok "systemctl reload re-read the configuration (same PID $pid)"

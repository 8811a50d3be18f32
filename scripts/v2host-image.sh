#!/usr/bin/env bash
# Build the disk of the systemd, cgroup-v2-only test host (vm/testhost.py boots it).
#
#   scripts/v2host-image.sh OUT LAYER [REPO]
#
# LAYER base: a stock Debian 12 as the hosts of cvbench's users have it: systemd as PID 1,
#   udev, dbus, Debian's cloud kernel with its initramfs, sshd, and what the README assumes a
#   user brings (git, make, python3, python3-venv, ca-certificates). `make bench` from a clone
#   runs there with the guest's network (the package mirrors through QEMU's user networking).
# LAYER tests: base plus the packages and the virtualenv (at /root/cvbench/.venv, the project
#   from REPO installed in editable mode) that the in-VM test subset needs, so that subset runs
#   without any network.
#
# Writes into OUT: disk.qcow2 (the root file system, ext4, no partition table), vmlinuz and
# initrd.img (direct kernel boot), id_ed25519 (root's key; its .pub is in the guest's
# authorized_keys). The debootstrap of the base is cached as a tarball beside OUT (keyed by
# what it includes) and reused by both layers. Mounts made for the chroot steps live in a
# private mount namespace and die with it; the work directory is removed on exit.
set -euo pipefail

PROG=v2host-image
SUITE=bookworm
# The stock host. systemd-sysv makes systemd PID 1; Debian 12's systemd mounts cgroup2 only.
BASE_INCLUDE=systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,openssh-server,git,make,python3,python3-venv,ca-certificates,iproute2,procps
# What the in-VM test subset needs beyond the base: the peers, the image's busybox, the shared
# seccomp profile, the runtime's tools, CRIU (runc's restore variant: `criu check` passes on
# Debian 12's kernel), and what building the virtualenv needs (libvirt-python is a source
# distribution).
TEST_PACKAGES=(crun runc criu busybox-static cpio e2fsprogs golang-github-containers-common
               libseccomp2 bpftool strace gcc libc6-dev python3-dev pkg-config libvirt-dev)

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 OUT base|tests [REPO]"
OUT="$1"
LAYER="$2"
REPO="${3:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
case "$LAYER" in base|tests) ;; *) die "LAYER must be base or tests, not $LAYER" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
# shellcheck source=scripts/lib/debian-root.sh
. "$REPO/scripts/lib/debian-root.sh"

SOURCES="$(suite_sources "$SUITE")"
MIRROR="$(suite_mirror "$SUITE" "$SOURCES")"
[ -n "$MIRROR" ] || die "no Debian $SUITE source in the host's /etc/apt"
ensure_debootstrap || die "apt-get install debootstrap failed"
for tool in debootstrap mkfs.ext4 qemu-img ssh-keygen unshare; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found on the host"
done

CACHE="$(dirname "$OUT")"
mkdir -p "$OUT"
WORK="$(mktemp -d /var/tmp/cvbench-v2host-build.XXXXXX)"
trap 'rm -rf --one-file-system "$WORK"' EXIT
ROOT="$WORK/root"
mkdir -m 0755 "$ROOT"

# --- the debootstrap, cached --------------------------------------------------------------------
KEY="$(printf '%s %s' "$SUITE" "$BASE_INCLUDE" | sha256sum | cut -c1-12)"
TARBALL="$CACHE/debootstrap-$SUITE-$KEY.tar"
if [ ! -s "$TARBALL" ]; then
    say "debootstrap $SUITE with systemd (log: $OUT/debootstrap.log)"
    t="$(date +%s)"
    unshare --mount --propagation private \
        debootstrap --include="$BASE_INCLUDE" "$SUITE" "$ROOT" "$MIRROR" \
        >"$OUT/debootstrap.log" 2>&1 || die "debootstrap failed; see $OUT/debootstrap.log"
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*_*
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$ROOT" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    for old in "$CACHE"/debootstrap-*.tar; do [ "$old" = "$TARBALL" ] || rm -f "$old"; done
    say "debootstrap done in $(($(date +%s) - t)) s"
else
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$ROOT" -xpf "$TARBALL"
fi

# --- the host's settings: mirrors, boot, login, readiness ---------------------------------------
copy_network_settings "$ROOT" "$SOURCES"
echo cvbench-v2host >"$ROOT/etc/hostname"
printf '127.0.1.1\tcvbench-v2host\n' >>"$ROOT/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$ROOT/etc/fstab"
# QEMU's user networking: DHCP on the one NIC; its DNS forwarder for the mirrors.
mkdir -p "$ROOT/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' >"$ROOT/etc/systemd/network/50-cvbench.network"
printf 'nameserver 10.0.2.3\n' >"$ROOT/etc/resolv.conf"
ln -sf /lib/systemd/system/systemd-networkd.service \
    "$ROOT/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
# Nothing that waits for a network the test host may not have, or wakes up to do upkeep.
for unit in systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
            man-db.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service; do
    ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
# Root logs in with the key made here, over ssh only.
[ -s "$OUT/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C cvbench-v2host -f "$OUT/id_ed25519"
install -d -m 0700 "$ROOT/root/.ssh"
install -m 0600 "$OUT/id_ed25519.pub" "$ROOT/root/.ssh/authorized_keys"
# The line the host waits for on the serial console once sshd listens (vm/console.py's marker).
cat >"$ROOT/etc/systemd/system/cvbench-ready.service" <<'UNIT'
[Unit]
Description=Say READY on the serial console once sshd runs (cvbench test host)
After=ssh.service multi-user.target
Wants=ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo READY >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/cvbench-ready.service \
    "$ROOT/etc/systemd/system/multi-user.target.wants/cvbench-ready.service"

# --- in a chroot, at the host's speed: the local CA certificates; for the test layer its packages
# and the virtualenv -----------------------------------------------------------------------------
INSTALL=""
if [ "$LAYER" = tests ]; then
    say "installing the test subset's packages and virtualenv (log: $OUT/chroot.log)"
    install -d -m 0755 "$ROOT/root/cvbench"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 tar --no-recursion -cf - 2>/dev/null) | tar -C "$ROOT/root/cvbench" -xf -
    INSTALL="apt-get update -q
apt-get install -y -q --no-install-recommends ${TEST_PACKAGES[*]}
apt-get clean
rm -rf /var/lib/apt/lists/*_*
python3 -m venv /root/cvbench/.venv
/root/cvbench/.venv/bin/pip install -q --upgrade pip
/root/cvbench/.venv/bin/pip install -q -e /root/cvbench[dev]
rm -rf /root/.cache/pip
install -d /var/cache/cvbench/bin
gcc -O2 -Wall -static -o /var/cache/cvbench/bin/cvbench-floor \
    /root/cvbench/harness/backends/floor/launcher.c"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf.host"
cat >"$WORK/chroot.sh" <<CHROOT
set -euo pipefail
root="$ROOT"
mount -t proc proc "\$root/proc"
mount -t sysfs sysfs "\$root/sys"
mount --rbind /dev "\$root/dev"
mount -t tmpfs tmpfs "\$root/run"
mount -t tmpfs tmpfs "\$root/tmp"
mount --bind "\$root/etc/resolv.conf.host" "\$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"\$root/usr/sbin/policy-rc.d"
chmod 755 "\$root/usr/sbin/policy-rc.d"
chroot "\$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive /bin/bash -euo pipefail -c 'update-ca-certificates
$INSTALL'
rm -f "\$root/usr/sbin/policy-rc.d"
CHROOT
unshare --mount --propagation private bash "$WORK/chroot.sh" >"$OUT/chroot.log" 2>&1 \
    || die "the $LAYER layer's chroot step failed; see $OUT/chroot.log"
rm -f "$ROOT/etc/resolv.conf.host"

# --- kernel, initramfs and the disk -------------------------------------------------------------
kernel="$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -n 1)"
initrd="$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -n 1)"
[ -s "$kernel" ] && [ -s "$initrd" ] || die "no kernel or initramfs in the root's /boot"
install -m 0644 "$kernel" "$OUT/vmlinuz"
install -m 0644 "$initrd" "$OUT/initrd.img"
say "making the disk"
truncate -s 24G "$WORK/disk.raw"
mkfs.ext4 -q -L cvbench-root -d "$ROOT" "$WORK/disk.raw" || die "mkfs.ext4 -d failed"
qemu-img convert -O qcow2 "$WORK/disk.raw" "$OUT/disk.qcow2.tmp"
chmod 0644 "$OUT/disk.qcow2.tmp"
mv "$OUT/disk.qcow2.tmp" "$OUT/disk.qcow2"
say "$LAYER image ready in $OUT ($(du -sh "$OUT/disk.qcow2" | cut -f1))"

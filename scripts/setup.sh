#!/usr/bin/env bash
# Idempotent host set-up for cvbench on Debian 12, as root.
#   system packages, libvirtd/virtlogd, dockerd (and podman's socket) running (through their
#   systemd units where systemd is PID 1, started by hand elsewhere), a virtualenv with the
#   project installed,
#   the guest kernel and its modules extracted from Debian's cloud kernel package, the default
#   and workloads images.
# A second run does no network work and takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CVBENCH_VENV:-$ROOT/.venv}"
CACHE="${CVBENCH_CACHE_DIR:-/var/cache/cvbench}"
PYTHON="${CVBENCH_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

log() { printf 'setup: %s\n' "$*" >&2; }

# Where systemd is PID 1 (sd_booted: /run/systemd/system exists) the daemons belong to their
# units (systemctl); elsewhere set-up starts them by hand under scripts/subreaper.py.
SYSTEMD=""
[ -d /run/systemd/system ] && SYSTEMD=1
# dockerd's settings on both paths: no NAT, no forwarding rules, no default bridge, and the
# cgroupfs driver, the one cgroup manager crun, runc, podman and ours use (dockerd would pick
# systemd on a cgroup v2 host under systemd). harness/backends/engines/docker/service.py: DAEMON_FLAGS.
DOCKERD_FLAGS="--iptables=false --ip-forward=false --ip-masq=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs"
DOCKER_DROPIN=/etc/systemd/system/docker.service.d/cvbench.conf
CACHE_BIN="$CACHE/bin"
CRUN_WRAPPER="$CACHE_BIN/crun-v1view"
# crun as the engines run it: on a hybrid host (cgroup v1 controllers beside a cgroup2 mount)
# crun 1.8 runs only through the wrapper (harness/backends/engines/crun-v1view.c); on v1 and v2
# hosts as it is.
hybrid_cgroups() {
    [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] &&
        [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]
}
engine_crun() { if hybrid_cgroups; then echo "$CRUN_WRAPPER"; else command -v crun || echo /usr/bin/crun; fi; }
# cvbench-runtime (ours behind the OCI runtime command line: runtime/oci/), the virtualenv's
# console script by its resolved path (a virtualenv reached through a symlink is named where it
# lives). The virtualenv is made in step 5, after dockerd starts: dockerd looks a runtime's
# binary up only when a container runs on it.
OURS_RUNTIME="$(realpath -m "$VENV/bin/cvbench-runtime")"
# The OCI runtimes dockerd offers beside its runc, on both paths (the docker backend's "crun",
# the docker-ours backend's "cvbench-runtime"): harness/backends/engines/docker/service.py,
# DAEMON_RUNTIMES.
dockerd_runtimes() { echo "--add-runtime crun=$(engine_crun) --add-runtime cvbench-runtime=$OURS_RUNTIME"; }
# docker.service's command line (Debian 12's unit, socket-activated by docker.socket) with
# cvbench's flags: written before docker.io is installed, so that its first start has them.
write_docker_dropin() {
    local wanted
    wanted="$(printf '%s\n' "# written by cvbench's scripts/setup.sh: dockerd as cvbench's docker backend needs it" \
        "[Service]" "ExecStart=" \
        "ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock \$DOCKER_OPTS $DOCKERD_FLAGS $(dockerd_runtimes)")"
    if [ "$(cat "$DOCKER_DROPIN" 2>/dev/null)" != "$wanted" ]; then
        log "writing $DOCKER_DROPIN"
        mkdir -p "$(dirname "$DOCKER_DROPIN")"
        printf '%s\n' "$wanted" > "$DOCKER_DROPIN.tmp"
        mv "$DOCKER_DROPIN.tmp" "$DOCKER_DROPIN"
        return 0  # changed
    fi
    return 1
}

if [ "$(id -u)" != 0 ]; then
    echo "setup: must run as root (namespaces, cgroups, libvirt)" >&2
    exit 1
fi

# 1. System packages -----------------------------------------------------------------------
# libvirt-python is a source distribution: pip builds it with gcc against libvirt-dev and the
# Python headers, which a minimal Debian root does not have.
# golang-github-containers-common ships the containers/Docker default seccomp profile that
# every container backend installs alike; libseccomp2 compiles it.
# chromium: the tests open the HTML report in it (headless) and check what a reader sees.
# strace: the tests trace a warm container's init across its start (the same split for every
# runtime: tests/integration/harness/backends/test_warm_split.py).
# The engines: docker.io (dockerd, containerd), podman (conmon; CNI plugins for its bridge
# networks), lxc with its Python binding (python3-lxc, linked into the virtualenv below).
PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
          busybox-static crun runc cpio iproute2 python3-venv e2fsprogs
          golang-github-containers-common libseccomp2
          gcc libc6-dev python3-dev pkg-config libvirt-dev
          chromium strace
          docker.io podman containernetworking-plugins lxc python3-lxc)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    policy_made=""
    if [ -n "$SYSTEMD" ]; then
        # The packages' units start as installed, so what would start with NAT is set up
        # first: docker.service gets cvbench's flags (no docker0, no NAT rules), and lxc-net
        # (a NAT bridge, lxcbr0; the lxc backend makes its own bridge) is masked when set-up
        # is the one installing lxc. libvirt's default network is not autostarted on Debian.
        write_docker_dropin || true
        if printf '%s\n' "${missing[@]}" | grep -qx lxc; then
            systemctl mask lxc-net.service >/dev/null 2>&1 || true
        fi
    elif [ ! -e /usr/sbin/policy-rc.d ]; then
        # No package may start its service (docker.io's would start dockerd with NAT rules,
        # lxc's lxc-net a NAT bridge): set-up starts what cvbench needs itself, below.
        printf '#!/bin/sh\n# cvbench set-up: no service starts during package installs\nexit 101\n' \
            > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}" || { [ -z "$policy_made" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
    [ -z "$policy_made" ] || rm -f /usr/sbin/policy-rc.d
fi

# crun for the engines on hybrid cgroup hosts (see the source): built once, rebuilt if changed.
# (Built on every host kind, so a cache directory moved between hosts has it; used on hybrid
# hosts only: engine_crun.)
mkdir -p "$CACHE_BIN"
if [ ! -x "$CRUN_WRAPPER" ] || [ "$ROOT/harness/backends/engines/crun-v1view.c" -nt "$CRUN_WRAPPER" ]; then
    log "building $CRUN_WRAPPER"
    gcc -O2 -Wall -o "$CRUN_WRAPPER.tmp" "$ROOT/harness/backends/engines/crun-v1view.c"
    mv "$CRUN_WRAPPER.tmp" "$CRUN_WRAPPER"
fi
# The floor backend's launcher (harness/backends/floor/launcher.c): static, so that its start
# loads no shared library (glibc's static link works for it: it uses no NSS function).
FLOOR_LAUNCHER="$CACHE_BIN/cvbench-floor"
if [ ! -x "$FLOOR_LAUNCHER" ] || [ "$ROOT/harness/backends/floor/launcher.c" -nt "$FLOOR_LAUNCHER" ]; then
    log "building $FLOOR_LAUNCHER"
    gcc -O2 -Wall -static -o "$FLOOR_LAUNCHER.tmp" "$ROOT/harness/backends/floor/launcher.c"
    mv "$FLOOR_LAUNCHER.tmp" "$FLOOR_LAUNCHER"
fi
# The exec helper an imported image's VM guest ends its init with (vm/guest_exec.c, copied to
# the image's disk as /.cvbench/exec): static, as the image may have no C library.
GUEST_EXEC="$CACHE_BIN/cvbench-guest-exec"
if [ ! -x "$GUEST_EXEC" ] || [ "$ROOT/vm/guest_exec.c" -nt "$GUEST_EXEC" ]; then
    log "building $GUEST_EXEC"
    gcc -O2 -Wall -static -o "$GUEST_EXEC.tmp" "$ROOT/vm/guest_exec.c"
    mv "$GUEST_EXEC.tmp" "$GUEST_EXEC"
fi

# 2. /dev/kvm as Debian's udev rule leaves it (group kvm, mode 0660) -----------------------
# Without udev the node keeps the kernel's root:root 0600. libvirt probes QEMU's capabilities
# as root (KVM usable), then finds KVM unusable for the QEMU user at every domain start and
# probes again: createXML takes seconds instead of a fraction of one, even under TCG.
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
    if [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
        log "/dev/kvm was $(stat -c '%U:%G %a' /dev/kvm); applying Debian's udev rule (root:kvm 0660)"
        chgrp kvm /dev/kvm
        chmod 0660 /dev/kvm
    fi
fi

# 3. Services ---------------------------------------------------------------------------------
# Where systemd is PID 1: the packages' units, enabled and started (libvirtd.service with its
# sockets, virtlogd.socket; docker.socket and docker.service with the drop-in above;
# podman.socket), each idempotent; docker.service is restarted only when its drop-in changed.
# Elsewhere (no systemd, as on cvbench's own machines): each daemon is started by hand when it
# is not running, under scripts/subreaper.py, which reaps orphans (QEMU processes) at once:
# some hosts' PID 1 reaps only every few seconds, and libvirt waits for that on every destroy.
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ -n "$SYSTEMD" ]; then
    log "enabling and starting libvirtd, virtlogd, docker and podman's socket (systemd)"
    dropin_changed=""
    write_docker_dropin && dropin_changed=1
    systemctl daemon-reload
    systemctl enable --now virtlogd.socket libvirtd.socket libvirtd-ro.socket \
        libvirtd-admin.socket libvirtd.service >/dev/null 2>&1 ||
        systemctl enable --now virtlogd.socket libvirtd.service
    systemctl enable --now docker.socket docker.service
    if [ -n "$dropin_changed" ] && systemctl is-active -q docker.service; then
        log "restarting docker.service with cvbench's flags"
        systemctl restart docker.service
    fi
    systemctl enable --now podman.socket
    for _ in $(seq 50); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
    for _ in $(seq 200); do [ -S /run/docker.sock ] && running /run/docker.pid && break; sleep 0.05; done
else
    start_daemon() { setsid /usr/bin/python3 "$ROOT/scripts/subreaper.py" "$@" </dev/null >/dev/null 2>&1 & }
    running /run/virtlogd.pid || { log "starting virtlogd"; start_daemon virtlogd -d; }
    running /run/libvirtd.pid || { log "starting libvirtd"; start_daemon libvirtd -d; }
    for _ in $(seq 100); do running /run/virtlogd.pid && running /run/libvirtd.pid && break; sleep 0.1; done
    for _ in $(seq 50); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
    # dockerd (it starts its own containerd), with its data under its default root, with
    # $DOCKERD_FLAGS (above): the docker backend's bridge network is an internal one it
    # creates. crun and cvbench-runtime are offered as the runtimes "crun" and
    # "cvbench-runtime" (dockerd_runtimes). A dockerd set-up started earlier (under
    # subreaper.py) with other flags is stopped (TERM, until it exited) and started again with
    # these, as docker.service is restarted when its drop-in changed; one started otherwise is
    # left alone, with a warning.
    wanted_dockerd="dockerd $DOCKERD_FLAGS $(dockerd_runtimes)"
    if running /run/docker.pid; then
        dockerd_pid="$(cat /run/docker.pid)"
        have="$(tr '\0' ' ' < "/proc/$dockerd_pid/cmdline")"
        if [ "${have% }" != "$wanted_dockerd" ]; then
            dockerd_parent="$(awk '{print $4}' "/proc/$dockerd_pid/stat")"
            if tr '\0' ' ' < "/proc/$dockerd_parent/cmdline" 2>/dev/null | grep -q "scripts/subreaper.py dockerd "; then
                log "restarting dockerd with cvbench's flags (it ran with: ${have% })"
                kill -TERM "$dockerd_pid"
                for _ in $(seq 600); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.05; done
                if kill -0 "$dockerd_pid" 2>/dev/null; then
                    log "dockerd ($dockerd_pid) did not stop within 30 s; left as it is"
                fi
            else
                log "warning: dockerd ($dockerd_pid) was not started by set-up and runs without cvbench's flags; restart it as: $wanted_dockerd"
            fi
        fi
    fi
    if ! running /run/docker.pid; then
        log "starting dockerd"
        mkdir -p /var/log/cvbench
        # shellcheck disable=SC2086  # the flags are words
        setsid /usr/bin/python3 "$ROOT/scripts/subreaper.py" $wanted_dockerd \
            </dev/null >>/var/log/cvbench/dockerd.log 2>&1 &
        for _ in $(seq 200); do [ -S /run/docker.sock ] && running /run/docker.pid && break; sleep 0.05; done
    fi
fi
# Podman's storage makes its overlay directory a private bind mount the first time it is used;
# do it now, so that no later run or `cvbench clean` adds a mount to the host's table.
if ! mountpoint -q /var/lib/containers/storage/overlay; then
    log "initialising podman's storage"
    podman --cgroup-manager=cgroupfs --events-backend=file info >/dev/null
fi

# 4. Guest kernel and its modules from Debian's cloud kernel package ------------------------
# vmlinuz for direct kernel boot, lib/modules/<release>/ for the disk boot's initramfs
# (virtio_pci, virtio_blk and virtio_net are modules in the cloud kernel). The package stays
# in $CACHE/apt/archives/; the kernel already extracted is kept (its package is fetched again
# only if the modules are missing), so a host's guest kernel does not change under its runs.
mkdir -p "$CACHE/guest" "$CACHE/apt/archives"
if [ ! -s "$CACHE/guest/vmlinuz" ] || [ ! -d "$CACHE/guest/modules" ]; then
    current_kernel_package() {
        local found
        found="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')"
        if [ -z "$found" ]; then apt-get update -q >&2; found="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')"; fi
        echo "$found"
    }
    fetch_kernel_package() {  # $1: package name; prints the .deb's path
        local deb
        deb="$(ls "$CACHE/apt/archives/$1"_*.deb 2>/dev/null | head -n 1)"
        if [ -z "$deb" ]; then
            (cd "$CACHE/apt/archives" && apt-get download -q -o APT::Sandbox::User=root "$1" >&2) || return 1
            deb="$(ls "$CACHE/apt/archives/$1"_*.deb 2>/dev/null | head -n 1)"
        fi
        [ -n "$deb" ] && echo "$deb"
    }
    pkg=""
    if [ -s "$CACHE/guest/vmlinuz" ] && [ -s "$CACHE/guest/kernel-package" ]; then
        pkg="$(cat "$CACHE/guest/kernel-package")"
    fi
    deb=""
    [ -n "$pkg" ] && deb="$(fetch_kernel_package "$pkg" || true)"
    if [ -z "$deb" ]; then  # no kernel yet, or its package is gone from the archive: take the current one
        pkg="$(current_kernel_package)"
        deb="$(fetch_kernel_package "$pkg")"
    fi
    log "extracting guest kernel and modules from $pkg"
    work="$(mktemp -d /tmp/cvbench-kernel.XXXXXX)"
    dpkg-deb -x "$deb" "$work/extract"
    cp "$work"/extract/boot/vmlinuz-* "$CACHE/guest/vmlinuz.tmp"
    rm -rf "$CACHE/guest/modules.tmp" "$CACHE/guest/modules"
    mkdir -p "$CACHE/guest/modules.tmp"
    cp -a "$work"/extract/lib/modules/. "$CACHE/guest/modules.tmp/"
    echo "$pkg" > "$CACHE/guest/kernel-package"
    mv "$CACHE/guest/vmlinuz.tmp" "$CACHE/guest/vmlinuz"
    mv "$CACHE/guest/modules.tmp" "$CACHE/guest/modules"
    rm -rf "$work"
fi
chmod 755 "$CACHE" "$CACHE/guest"; chmod 644 "$CACHE/guest/vmlinuz"

# 5. Virtualenv with the project -------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# The stamp names the tree the editable install points at: a virtualenv that another
# checkout's set-up installed from (a worktree sharing it) is installed from this one again.
stamp="$VENV/.cvbench-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] \
        || [ "$(cat "$stamp")" != "$ROOT" ]; then
    log "installing cvbench into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e "$ROOT[dev]"
    printf '%s\n' "$ROOT" > "$stamp"
fi

# LXC's Python binding is Debian's (python3-lxc, for the system Python 3.11): link the
# module and its extension into the virtualenv (same CPython 3.11 ABI).
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for item in /usr/lib/python3/dist-packages/lxc /usr/lib/python3/dist-packages/_lxc.cpython-311-*.so; do
    if [ -e "$item" ] && [ ! -e "$site/$(basename "$item")" ]; then
        ln -s "$item" "$site/$(basename "$item")"
    fi
done

# 6. Host limits for density runs, and the images ---------------------------------------------
# The workloads image is assembled from Debian packages fetched into $CACHE/apt/archives/ (the
# first time only); a second build with the same package versions returns at once.
[ "$(cat /proc/sys/kernel/pid_max)" -ge 4194304 ] || echo 4194304 > /proc/sys/kernel/pid_max
"$VENV/bin/cvbench" image build --quiet
"$VENV/bin/cvbench" image build workloads --quiet

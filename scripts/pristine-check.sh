#!/usr/bin/env bash
# Prove the README's two commands work on a pristine Debian 12: build a minimal root
# (debootstrap --variant=minbase bookworm + git, make, python3, python3-venv, ca-certificates),
# clone the repository's committed HEAD (or REF) into it, and run `make test` then `make bench`
# there as root, in private mount and pid namespaces. Exit 0 only if both succeed.
#
#   scripts/pristine-check.sh [--keep] [--verbose] [--refresh] [--dir DIR] [--mirror URL] [REF]
#
# Inside the root: its own /proc (of the new pid namespace), /sys, the host's cgroup
# hierarchies (bind-mounted), a tmpfs /dev with the usual nodes and /dev/kvm as the kernel
# leaves it without udev (root:root 0600, a node of the root's own), fresh tmpfs /run and /tmp.
# The network namespace is the host's. From the host the root gets only its network settings:
# resolv.conf, the Debian sources of the host's apt (bookworm suites only), apt's Acquire::
# options, locally added CA certificates and /etc/pip.conf. The minimal root is cached as a
# tarball under /var/cache/cvbench/ and unpacked afresh for every run.
#
# Every process started inside dies with the pid namespace when the check ends, also on Ctrl-C;
# the mounts live only in the private mount namespace. The root is removed afterwards unless
# --keep; the logs stay under DIR (default /var/tmp/cvbench-pristine).
#
# Environment: CVBENCH_HOST_LOCK=FILE holds flock(1) on FILE while the two commands run (the
# host is shared: they create cgroups, a bridge and VMs); unset means no lock.
# CVBENCH_PRISTINE_CACHE overrides the cache directory.
set -euo pipefail

PROG=pristine-check
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE=bookworm
INCLUDE=git,make,python3,python3-venv,ca-certificates
CACHE="${CVBENCH_PRISTINE_CACHE:-/var/cache/cvbench}"
LOCK="${CVBENCH_HOST_LOCK:-}"
WORK=/var/tmp/cvbench-pristine
KEEP=0
VERBOSE=0
REFRESH=0
MIRROR=
REF=HEAD

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --keep) KEEP=1 ;;
        --verbose|-v) VERBOSE=1 ;;
        --refresh) REFRESH=1 ;;
        --dir) [ $# -ge 2 ] || die "--dir needs a directory"; WORK="$2"; shift ;;
        --dir=*) WORK="${1#--dir=}" ;;
        --mirror) [ $# -ge 2 ] || die "--mirror needs a URL"; MIRROR="$2"; shift ;;
        --mirror=*) MIRROR="${1#--mirror=}" ;;
        -h|--help) usage 0 ;;
        -*) printf '%s: error: unknown option %s (see --help)\n' "$PROG" "$1" >&2; exit 2 ;;
        *) REF="$1" ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, mknod, namespaces)"
case "$WORK" in /*) ;; *) WORK="$PWD/$WORK" ;; esac
for tool in git unshare flock mount pivot_root tar sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found on the host"
done

# --- the repository and the commit to check ---------------------------------------------------
COMMIT="$(git -C "$REPO" rev-parse --verify --quiet "$REF^{commit}")" \
    || die "$REF is not a commit of $REPO"
if [ "$REF" = HEAD ] && [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]; then
    say "note: $REPO has uncommitted changes; only the committed HEAD is checked"
fi

# --- the host's Debian sources for the suite -----------------------------------------------
# shellcheck source=scripts/lib/debian-root.sh
. "$REPO/scripts/lib/debian-root.sh"
SOURCES="$(suite_sources "$SUITE")"
if [ -z "$MIRROR" ]; then
    MIRROR="$(suite_mirror "$SUITE" "$SOURCES")"
    [ -n "$MIRROR" ] || die "no Debian $SUITE source in the host's /etc/apt; give --mirror URL"
fi

# --- debootstrap on the host ------------------------------------------------------------------
ensure_debootstrap || die "apt-get install debootstrap failed"

mkdir -p "$WORK" "$CACHE" || die "cannot create $WORK or $CACHE"
STAMP="$(date +%Y%m%d-%H%M%S)"
RUN="$(mktemp -d "$WORK/cvbench-run-$STAMP-XXXX")" || die "cannot create a run directory in $WORK"
ROOT="$RUN/root"
LOGS="$RUN/logs"
mkdir -p "$ROOT" "$LOGS"
T0="$(date +%s)"
NS_PID=
BOOT_TMP=

mounted_under() { awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo; }
# shellcheck disable=SC2317  # run by a trap, or inside the namespace, not in line
remove_root() {
    [ -d "$ROOT" ] || return 0
    if [ -n "$(mounted_under "$ROOT")" ]; then
        say "error: something is still mounted under $ROOT on the host; not removing it"
        return 1
    fi
    rm -rf --one-file-system "$ROOT"
}
# shellcheck disable=SC2317  # run by a trap, or inside the namespace, not in line
on_exit() {
    local rc=$?
    if [ -n "$NS_PID" ] && kill -0 "$NS_PID" 2>/dev/null; then
        kill -KILL "$NS_PID" 2>/dev/null || true   # unshare --kill-child: takes the namespace along
        wait "$NS_PID" 2>/dev/null || true
    fi
    [ -z "$BOOT_TMP" ] || rm -rf --one-file-system "$BOOT_TMP" "$TARBALL.tmp" "$TARBALL.sha256.tmp"
    if [ "$KEEP" = 1 ]; then
        say "root kept: $ROOT"
    else
        remove_root || rc=1
    fi
    exit "$rc"
}
# shellcheck disable=SC2317  # run by a trap, or inside the namespace, not in line
on_signal() { say "interrupted; stopping everything in the root"; exit 130; }
trap on_exit EXIT
trap on_signal INT TERM HUP

# --- the minimal root, cached as a tarball ----------------------------------------------------
KEY="$(printf '%s %s %s' "$SUITE" minbase "$INCLUDE" | sha256sum | cut -c1-8)"
TARBALL="$CACHE/cvbench-pristine-$SUITE-minbase-$KEY.tar.gz"
exec {cachefd}>"$CACHE/cvbench-pristine.lock"
flock "$cachefd"
if [ "$REFRESH" = 1 ] || [ ! -s "$TARBALL" ] || [ ! -s "$TARBALL.sha256" ]; then
    say "debootstrap --variant=minbase $SUITE (+ $INCLUDE) from $MIRROR (log: $LOGS/debootstrap.log)"
    t="$(date +%s)"
    BOOT_TMP="$(mktemp -d "$WORK/cvbench-bootstrap-XXXX")"
    # in a private mount namespace: the /proc and /sys it mounts in the target cannot outlive it
    unshare --mount --propagation private \
        debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$BOOT_TMP" "$MIRROR" \
        >"$LOGS/debootstrap.log" 2>&1 || die "debootstrap failed; see $LOGS/debootstrap.log"
    rm -rf "$BOOT_TMP"/var/cache/apt/archives/*.deb "$BOOT_TMP"/var/lib/apt/lists/*_*
    chmod 0755 "$BOOT_TMP"                     # the root's / (mktemp made it 0700)
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$BOOT_TMP" -czf "$TARBALL.tmp" . \
        || die "cannot write $TARBALL"
    printf '%s  %s\n' "$(sha256sum <"$TARBALL.tmp" | cut -d' ' -f1)" "$(basename "$TARBALL")" \
        >"$TARBALL.sha256.tmp"
    mv "$TARBALL.tmp" "$TARBALL"
    mv "$TARBALL.sha256.tmp" "$TARBALL.sha256"
    rm -rf --one-file-system "$BOOT_TMP"
    BOOT_TMP=
    say "minimal root cached in $TARBALL ($(($(date +%s) - t)) s)"
fi
(cd "$CACHE" && sha256sum --quiet -c "$(basename "$TARBALL").sha256") >/dev/null 2>&1 \
    || die "$TARBALL does not match its checksum; rerun with --refresh"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$ROOT" -xzpf "$TARBALL" \
    || die "cannot unpack $TARBALL"
chmod 0755 "$ROOT"
exec {cachefd}>&-

# --- the host's network settings, and the repository ------------------------------------------
copy_network_settings "$ROOT" "$SOURCES"

git clone --quiet --no-hardlinks "$REPO" "$ROOT/root/cvbench" 2>"$LOGS/git.log" \
    || die "git clone of $REPO failed; see $LOGS/git.log"
git -C "$ROOT/root/cvbench" checkout --quiet --detach "$COMMIT" 2>>"$LOGS/git.log" \
    || die "cannot check out $COMMIT; see $LOGS/git.log"

# --- inside the namespaces --------------------------------------------------------------------
# ns_main runs as PID 1 of the new pid namespace, in the new mount namespace, with the host's
# file system still visible: it builds the root's mounts, pivots into it and execs inner_main.
# shellcheck disable=SC2317  # run by a trap, or inside the namespace, not in line
ns_main() {
    set -euo pipefail
    local root="$1" logs="$2" kvm="$3" tun="$4"
    shift 4
    mount --bind "$root" "$root"               # a mount point, for pivot_root here and in runtimes
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    mount -t sysfs -o nosuid,nodev,noexec sysfs "$root/sys"
    mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"
    mount -t tmpfs -o nosuid,mode=0755 cvbench-dev "$root/dev"
    local d="$root/dev"
    mknod -m 0666 "$d/null" c 1 3; mknod -m 0666 "$d/zero" c 1 5; mknod -m 0666 "$d/full" c 1 7
    mknod -m 0666 "$d/random" c 1 8; mknod -m 0666 "$d/urandom" c 1 9; mknod -m 0666 "$d/tty" c 5 0
    if [ -n "$kvm" ]; then mknod -m 0600 "$d/kvm" c "${kvm%:*}" "${kvm#*:}"; fi
    if [ -n "$tun" ]; then mkdir "$d/net"; mknod -m 0666 "$d/net/tun" c "${tun%:*}" "${tun#*:}"; fi
    mkdir -m 0755 "$d/pts"
    mkdir -m 1777 "$d/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$d/pts"
    mount -t tmpfs -o nosuid,nodev,mode=1777 cvbench-shm "$d/shm"
    ln -s pts/ptmx "$d/ptmx"; ln -s /proc/self/fd "$d/fd"
    ln -s /proc/self/fd/0 "$d/stdin"; ln -s /proc/self/fd/1 "$d/stdout"; ln -s /proc/self/fd/2 "$d/stderr"
    mount -t tmpfs -o nosuid,nodev,mode=0755 cvbench-run "$root/run"
    mount -t tmpfs -o nosuid,nodev,mode=1777 cvbench-tmp "$root/tmp"
    mkdir -p "$root/var/log/cvbench-pristine"
    mount --bind "$logs" "$root/var/log/cvbench-pristine"
    cd "$root"
    pivot_root . .
    umount -l .                                 # the host's file system is gone from here on
    cd /
    exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8 TERM=dumb \
        /bin/bash /var/log/cvbench-pristine/cvbench-inner.sh "$@"
}

# The processes alive in the root's pid namespace but PID 1 (the root has no ps): "PID ARGS".
# shellcheck disable=SC2317  # run inside the namespace, not in line
ps_inside() {
    local p args
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = 1 ] && continue
        args="$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" || continue
        [ -n "$args" ] && echo "${p#/proc/} ${args% }"
    done
    return 0
}

# inner_main runs inside the root (PID 1 of its pid namespace): both commands, one log each,
# "NAME EXIT SECONDS" lines in status. When it returns, the kernel kills whatever is left.
# shellcheck disable=SC2317  # run by a trap, or inside the namespace, not in line
inner_main() {
    set -uo pipefail
    local verbose="$1" out=/var/log/cvbench-pristine
    readlink /proc/self/ns/pid >"$out/pidns"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null \
        || compgen -G '/usr/local/share/ca-certificates/*/*.crt' >/dev/null; then
        update-ca-certificates >/dev/null 2>&1 || echo "pristine-check: update-ca-certificates failed" >&2
    fi
    [ -c /dev/kvm ] && echo "before: $(stat -c '%U:%G %a' /dev/kvm)" >"$out/dev-kvm"
    local cmd rc t
    for cmd in test bench; do
        echo "pristine-check: make $cmd ($(date +%H:%M:%S))" >&2
        t="$(date +%s)"
        if [ "$verbose" = 1 ]; then
            (cd /root/cvbench && make "$cmd") </dev/null 2>&1 | tee "$out/make-$cmd.log"
        else
            (cd /root/cvbench && make "$cmd") </dev/null >"$out/make-$cmd.log" 2>&1
        fi
        rc=$?
        echo "$cmd $rc $(($(date +%s) - t))" >>"$out/status"
        ps_inside >"$out/processes-after-$cmd.txt"
    done
    [ -c /dev/kvm ] && echo "after: $(stat -c '%U:%G %a' /dev/kvm)" >>"$out/dev-kvm"
    local run                                  # the runs' results outlive the root
    for run in /root/cvbench/results/*/; do
        case "$run" in */baseline/) ;; *) mkdir -p "$out/results"; cp -a "$run" "$out/results/" ;; esac
    done
    return 0
}

devnum() { [ -c "$1" ] && printf '%d:%d' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"; return 0; }
KVM_DEV="$(devnum /dev/kvm)"
TUN_DEV="$(devnum /dev/net/tun)"

# The two stages go to files in the logs directory, which the root sees as
# /var/log/cvbench-pristine (so nothing is added to the root).
{ declare -f ns_main; echo 'ns_main "$@"'; } >"$LOGS/cvbench-ns.sh"
{ declare -f ps_inside inner_main; echo 'inner_main "$@"'; } >"$LOGS/cvbench-inner.sh"

say "commit $(git -C "$REPO" rev-parse --short "$COMMIT") ($REF) in $ROOT; prepared in $(($(date +%s) - T0)) s"
lockfd=
if [ -n "$LOCK" ]; then
    exec {lockfd}>>"$LOCK" || die "cannot open the host lock $LOCK"
    if ! flock -n "$lockfd"; then
        say "waiting for the host lock $LOCK"
        t="$(date +%s)"
        flock "$lockfd"
        say "got the host lock after $(($(date +%s) - t)) s"
    fi
fi
T1="$(date +%s)"
# set -m: the namespace's processes get default SIGINT handling (an asynchronous job of a
# script would otherwise ignore it) and their own process group; Ctrl-C reaches this script,
# whose trap kills unshare, and --kill-child then kills the namespace's PID 1, hence all of it.
# The lock's descriptor stays here: nothing started inside may hold the lock after the check.
set -m
if [ -n "$lockfd" ]; then
    unshare --mount --pid --fork --kill-child --propagation private \
        bash "$LOGS/cvbench-ns.sh" "$ROOT" "$LOGS" "$KVM_DEV" "$TUN_DEV" "$VERBOSE" {lockfd}>&- &
else
    unshare --mount --pid --fork --kill-child --propagation private \
        bash "$LOGS/cvbench-ns.sh" "$ROOT" "$LOGS" "$KVM_DEV" "$TUN_DEV" "$VERBOSE" &
fi
NS_PID=$!
set +m
ns_rc=0
wait "$NS_PID" || ns_rc=$?
NS_PID=
if [ -n "$lockfd" ]; then exec {lockfd}>&-; fi
T2="$(date +%s)"

# --- summary ----------------------------------------------------------------------------------
rc=0
for cmd in test bench; do
    line="$(awk -v c="$cmd" '$1 == c' "$LOGS/status" 2>/dev/null || true)"
    if [ -z "$line" ]; then
        say "make $cmd: did not complete (namespace exit $ns_rc)"
        rc=1
        continue
    fi
    read -r _ crc secs <<<"$line"
    left_inside="$(grep -c . "$LOGS/processes-after-$cmd.txt" 2>/dev/null || true)"
    say "make $cmd: exit $crc in $secs s; processes alive inside afterwards: ${left_inside:-?} (processes-after-$cmd.txt)"
    if [ "$crc" != 0 ]; then
        rc=1
        log="$LOGS/make-$cmd.log"
        if grep -q '^FAILED ' "$log"; then
            say "  failed tests ($log):"
            grep '^FAILED ' "$log" | cut -c1-160 | sed 's/^/    /' >&2
        elif grep -q 'regression(s),' "$log"; then
            say "  quick-suite gate ($log):"
            grep -E '│ regression|regression\(s\),' "$log" | tr -s ' ' | sed 's/^/    /' >&2
        else
            say "  last lines of $log:"
            tail -n 15 "$log" | sed 's/^/    /' >&2
        fi
    fi
done
[ ! -s "$LOGS/dev-kvm" ] || say "/dev/kvm in the root: $(paste -sd ';' "$LOGS/dev-kvm" | sed 's/;/, /')"
[ ! -d "$LOGS/results" ] || say "results of the runs inside: $LOGS/results/"
if [ -s "$LOGS/pidns" ]; then
    ns="$(cat "$LOGS/pidns")"
    left=()
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/pid" 2>/dev/null || true)" = "$ns" ] && left+=("${p#/proc/}")
    done
    if [ "${#left[@]}" -gt 0 ]; then
        say "error: processes of the root's pid namespace still alive: ${left[*]}"
        rc=1
    fi
fi
if [ -n "$(mounted_under "$RUN")" ]; then
    say "error: mounts left on the host under $RUN"
    rc=1
fi
say "logs: $LOGS; commands $((T2 - T1)) s, total $(($(date +%s) - T0)) s$([ "$KEEP" = 1 ] || echo '; removing the root')"
exit "$rc"

# Isolation probe, run as a container's process by busybox sh: one line per check,
# "<check> ok|no <what was seen>" (or "<fact> info <value>" for what the test compares),
# written to /tmp/probe.out inside the container; then READY.
# It only reads, or tries operations a contained process must be refused; it never writes a
# host-wide setting.
out=/tmp/probe.out
: > "$out"
check() { # name, condition (a shell command), what was seen
    if sh -c "$2" >/dev/null 2>&1; then echo "$1 ok $3" >> "$out"; else echo "$1 no $3" >> "$out"; fi
}
# a check every runtime fails alike because of the profile they share: "<check> no shared: ..."
shared() { check "$1" "$2" "shared: $3"; }
procs=$(ls -d /proc/[0-9]* | wc -l)
check pid-namespace "[ \$\$ -eq 1 ] || [ $procs -le 4 ]" "pid=$$ processes=$procs"
check host-files "[ ! -e /etc/debian_version ] && [ ! -e /usr/bin/apt ]" "no host root files"
blocks=$(find /dev -type b 2>/dev/null | wc -l)
check devices "[ $blocks -eq 0 ] && [ ! -e /dev/kvm ] && [ ! -e /dev/mem ]" "block=$blocks"
# CAP_MKNOD is held (the OCI default set) and the device rules allow mknod of any node; the
# device cgroup (v1) or eBPF program (v2) refuses to open one outside the allow list (EPERM)
check mknod "mknod /tmp/probe-node b 7 0 && head -c 1 /tmp/probe-node 2>&1 | grep -q 'not permitted'" "a block device node made (b 7:0) but opening it refused"
rm -f /tmp/probe-node
check mount "! mount -t tmpfs probe /mnt" "mount refused"
check proc-sys-ro "grep -E ' /proc/sys ro[, ]' /proc/self/mountinfo" "/proc/sys read-only"
kcore=$(head -c 16 /proc/kcore 2>/dev/null | wc -c)
check kcore-masked "[ $kcore -eq 0 ]" "bytes=$kcore"
check sysrq-ro "grep -E ' /proc/sysrq-trigger ro[, ]' /proc/self/mountinfo || [ ! -w /proc/sysrq-trigger ]" "/proc/sysrq-trigger read-only"
check sys "[ ! -e /sys/kernel ] || grep -E ' /sys ro[, ]' /proc/self/mountinfo" "/sys absent or read-only"
links=$(grep -c ':' /proc/net/dev)
check network "[ $links -eq 1 ] && grep -q 'lo:' /proc/net/dev" "interfaces=$links"
capeff=$(grep CapEff /proc/self/status | cut -f2)
capbnd=$(grep CapBnd /proc/self/status | cut -f2)
echo "cap-effective info $capeff" >> "$out"
echo "cap-bounding info $capbnd" >> "$out"
nnp=$(grep NoNewPrivs /proc/self/status | cut -f2)
check no-new-privs "[ '$nnp' = 1 ]" "NoNewPrivs=$nnp"
seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2)
check seccomp "[ '$seccomp' = 2 ]" "Seccomp=$seccomp"
# setgroups to the spec's groups (none), never the runtime's or the harness's
groups=$(grep '^Groups:' /proc/self/status | cut -f2 | sed 's/ *$//')
check groups "[ -z '$groups' ]" "Groups=$groups"
# the workload (this shell, $$) starts with descriptors 0-2 only
# (listed by another shell into a file: $(...) and this shell's own redirections would show
# their pipe and saved descriptors)
sh -c "ls /proc/$$/fd > /tmp/probe.fds 2>&1"
fds=$(tr '\n' ' ' < /tmp/probe.fds)
check descriptors "[ '$fds' = '0 1 2 ' ]" "fds=$fds"
echo "hostname info $(hostname)" >> "$out"
# the spec's umask (none given: the OCI runtimes' default, 0022), never the runtime's own
mask=$(umask)
check umask "[ '$mask' = 0022 ]" "umask=$mask"
# rlimits: a copy of /proc/self/limits for the test to compare with the spec
cat /proc/self/limits > /tmp/probe.limits
echo "rlimits info /tmp/probe.limits" >> "$out"
# no ambient or inheritable capabilities; at least one seccomp filter installed
capamb=$(grep '^CapAmb:' /proc/self/status | cut -f2)
check cap-ambient "[ '$capamb' = 0000000000000000 ]" "CapAmb=$capamb"
capinh=$(grep '^CapInh:' /proc/self/status | cut -f2)
check cap-inheritable "[ '$capinh' = 0000000000000000 ]" "CapInh=$capinh"
filters=$(grep '^Seccomp_filters:' /proc/self/status | cut -f2)
check seccomp-filters "[ '${filters:-0}' -ge 1 ]" "Seccomp_filters=$filters"
# the kernel log: /dev/kmsg neither readable nor writable. Absent from the container's /dev,
# it is tried through a node made for it (c 1:11, CAP_MKNOD is held): the device rules must
# refuse to open it. A write that wrongly succeeds only adds a line to the kernel log.
kmsg=/dev/kmsg
[ -c $kmsg ] || { kmsg=/tmp/probe-kmsg; mknod $kmsg c 1 11; }
check kmsg-read "! head -c 1 $kmsg" "read of $kmsg refused"
check kmsg-write "! echo cvbench-probe > $kmsg" "write to $kmsg refused"
rm -f /tmp/probe-kmsg
# syslog(2) reads refused (dmesg; never -c, which would clear the host's log)
check syslog-read "! dmesg -s 128" "syslog(SYSLOG_ACTION_READ_ALL) refused"
# syslog(SYSLOG_ACTION_CONSOLE_LEVEL) to the level the host already has (a wrongly allowed
# call changes nothing)
level=$(cut -f1 /proc/sys/kernel/printk)
check syslog-console-level "! dmesg -n $level" "console level $level refused"
# writes to /proc/sys: the value each file already holds, so that a write that wrongly
# succeeds changes nothing (kernel/hostname is the UTS namespace's, printk_ratelimit the host's)
name=$(cat /proc/sys/kernel/hostname)
check proc-sys-write-hostname "! echo '$name' > /proc/sys/kernel/hostname" "same value refused"
rate=$(cat /proc/sys/kernel/printk_ratelimit)
check proc-sys-write-host "! echo '$rate' > /proc/sys/kernel/printk_ratelimit" "same value refused"
# /proc/sysrq-trigger: only opened for writing, nothing written (a key would act on the host)
# (absent on a kernel without CONFIG_MAGIC_SYSRQ; a redirection of cat, not of a special
# builtin, whose failed redirection would end the shell)
if [ -e /proc/sysrq-trigger ]; then sysrq=present; else sysrq=absent; fi
check sysrq-open-write "[ ! -e /proc/sysrq-trigger ] || ! cat /dev/null >> /proc/sysrq-trigger" "open for writing refused ($sysrq)"
# no new cgroup in the host's tree (removed at once if wrongly made)
made=""
for d in /sys/fs/cgroup/ /sys/fs/cgroup/*/; do
    if mkdir "${d}cvbench-probe" 2>/dev/null; then rmdir "${d}cvbench-probe"; made="$made ${d}cvbench-probe"; fi
done
check cgroup-mkdir "[ -z '$made' ]" "mkdir refused; made:${made:- none}"
# a user namespace (the shared profile allows unshare(CLONE_NEWUSER)), then what it gives
shared userns "! unshare -U true" "unshare -U refused"
shared userns-mount "! unshare -U -r -m mount -t tmpfs probe /mnt" "tmpfs mount in a user and mount namespace refused"
check userns-mount-proc "! unshare -U -r -m -p -f mount -t proc probe /mnt" "a fresh procfs (unmasked /proc) refused"
check userns-mount-sysfs "! unshare -U -r -m -n mount -t sysfs probe /mnt" "a fresh sysfs refused"
shared userns-chroot "! unshare -U -r chroot / true" "chroot in a user namespace refused"
check userns-chroot-escape "unshare -U -r chroot /.. sh -c '[ ! -e /etc/debian_version ] && [ ! -e /usr/bin/apt ]' || ! unshare -U -r true" "chroot to /.. in a user namespace finds no host root files"
# the checks busybox cannot make (tests/probe_syscalls.c, a static binary the test hands in on
# the volume): a chroot escape, open_by_handle_at, bpf(2), perf_event_open; run as the
# container's process, they write their own lines
[ -x /data/probe_syscalls ] && /data/probe_syscalls >> "$out"
echo READY
exec sleep 1000000

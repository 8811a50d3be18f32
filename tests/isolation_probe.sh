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
echo READY
exec sleep 1000000

/*
 * cvbench-floor: the kernel's floor for starting a container of the shared container spec.
 *
 * The `floor` backend (harness/backends/floor/) writes a plan file before the clock (its
 * layout: harness/backends/floor/plan.py) and, inside the clock, runs
 *
 *     cvbench-floor PLAN MERGED OVERLAY_OPTIONS NAME WARM NETNS [CGROUP_JOIN_FILE...]
 *
 * with stdout and stderr on the READY pipe, stdin on /dev/null, the pid pipe's write end on
 * fd 3 and, when WARM is "1", the host channel on fd 4. It reads the plan with one read(2),
 * clones the init (CLONE_PARENT: the harness is its parent and reaps it) in the plan's
 * namespaces, writes the init's pid on fd 3 and exits. NETNS is "-", or the path of a network
 * namespace the harness wired to its bridge (network = "bridge", as it wires crun's and
 * runc's): the init joins it (setns) instead of a new one, whose loopback is up already. The
 * init does, in the order runtime/child.py does them: the network namespace it joins, the
 * session keyring, loopback up, the overlay root on MERGED,
 * the cgroup join (writes "0" into each join file), the cgroup namespace, the spec's mounts
 * (/proc, /dev with the device nodes runtime/rootfs.py makes, devpts), pivot_root, masked and
 * read-only paths, hostname, setsid, rlimits, cwd, groups, umask, capabilities (the bounding
 * set dropped as root, then the plan's uid and gid with PR_SET_KEEPCAPS, then capset, as
 * runtime/child.py drop_capabilities), no_new_privs, [warm: "p" on the channel, wait for
 * "s"], close-on-exec from fd 3, the seccomp filter the harness compiled, execve of the
 * plan's executable path (resolved by the harness: no PATH search here). Which of them run
 * is the plan's (the backend's `steps` option). No parsing beyond fixed offsets and
 * NUL-separated strings, no logging: a failure writes one "cvbench-error: STEP: ERROR" line
 * on fd 1 and exits 127.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* The header's fields, each a little-endian u64 after the 8-byte magic (plan.py FIELDS). */
enum {
    F_CLONE, F_CGROUPNS, F_LOOPBACK, F_KEYRING, F_HOSTNAME, F_ROOTFS, F_CAPS, F_LAST_CAP,
    F_BOUNDING, F_EFFECTIVE, F_PERMITTED, F_INHERITABLE, F_NO_NEW_PRIVS, F_READONLY_ROOT,
    F_UMASK, F_RLIMITS, F_MOUNTS, F_MASKED, F_READONLY, F_ARGS, F_ENV, F_GROUPS, F_UID, F_GID,
    F_SECCOMP_BYTES, F_COUNT
};
#define MAGIC "CVFLOOR2"
#define PID_FD 3
#define CHANNEL_FD 4
#define EMPTY "/dev/.cvbench-empty"

static const char *step = "plan";

static void fail(void)
{
    char line[512];
    int n = snprintf(line, sizeof line, "cvbench-error: %s: %s\n", step, strerror(errno));
    if (write(1, line, (size_t)n) < 0) { /* nothing left to tell */ }
    _exit(127);
}

#define CHECK(call, what) do { step = (what); if ((call) < 0) fail(); } while (0)

struct plan {
    const uint64_t *f;
    const uint64_t *rlimits;     /* F_RLIMITS triples: resource, soft, hard */
    const uint64_t *mount_flags; /* F_MOUNTS */
    const uint64_t *groups;      /* F_GROUPS */
    const struct sock_filter *seccomp;
    const char *strings;         /* cwd, mounts (dest, type, source, data), masked, readonly,
                                    executable, args, env: NUL-terminated, in that order */
};

static const char *next(const char **cursor)
{
    const char *s = *cursor;
    *cursor += strlen(s) + 1;
    return s;
}

static void read_plan(const char *path, struct plan *p)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd, "open plan");
    CHECK(fstat(fd, &st), "stat plan");
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) fail();
    ssize_t got = read(fd, buf, (size_t)st.st_size);
    errno = EINVAL;
    if (got != st.st_size || st.st_size < 8 + 8 * F_COUNT) fail();
    step = "plan (not a " MAGIC " plan: rebuild the launcher, scripts/setup.sh)";
    if (memcmp(buf, MAGIC, 8)) fail();
    step = "plan";
    buf[st.st_size] = 0;
    close(fd);
    const uint64_t *f = (const uint64_t *)(buf + 8);
    const uint64_t *cursor = f + F_COUNT;
    p->f = f;
    p->rlimits = cursor;
    cursor += 3 * f[F_RLIMITS];
    p->mount_flags = cursor;
    cursor += f[F_MOUNTS];
    p->groups = cursor;
    cursor += f[F_GROUPS];
    p->seccomp = (const struct sock_filter *)cursor;
    p->strings = (const char *)cursor + f[F_SECCOMP_BYTES];
}

static void loopback_up(void)
{
    struct ifreq ifr;
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(sock, "loopback");
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    CHECK(ioctl(sock, SIOCGIFFLAGS, &ifr), "loopback");
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(sock, SIOCSIFFLAGS, &ifr), "loopback");
    close(sock);
}

static void join_cgroups(int count, char **files)
{
    step = "cgroup join";
    for (int i = 0; i < count; i++) {
        int fd = open(files[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1) fail();
        close(fd);
    }
}

static void mkdirs(char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return;
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = 0;
        if (mkdir(path, 0755) < 0 && errno != EEXIST) fail();
        *slash = '/';
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST) fail();
}

/* /dev as runtime/rootfs.py make_devices makes it. */
static void make_devices(const char *dev)
{
    static const struct { const char *name; int major, minor; } nodes[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8},
        {"urandom", 1, 9}, {"tty", 5, 0},
    };
    static const char *links[][2] = {
        {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
        {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
    };
    char path[4096 + 64]; /* dev is at most 4096 bytes with its NUL */
    step = "devices";
    mode_t old = umask(0);
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, nodes[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0) fail();
    }
    umask(old);
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        snprintf(path, sizeof path, "%s/%s", dev, links[i][0]);
        if (symlink(links[i][1], path) < 0) fail();
    }
    snprintf(path, sizeof path, "%s/shm", dev);
    if (mkdir(path, 0755) < 0 || chmod(path, 01777) < 0) fail();
}

static void mount_one(const char *root, const char *dest, const char *type, const char *source,
                      const char *data, unsigned long flags)
{
    char target[4096];
    snprintf(target, sizeof target, "%s%s", root, dest);
    step = dest;
    mkdirs(target);
    if (!strcmp(type, "bind")) {
        CHECK(mount(source, target, NULL, MS_BIND | (flags & MS_REC), NULL), dest);
        if (flags & ~(unsigned long)(MS_BIND | MS_REC))
            CHECK(mount(NULL, target, NULL, MS_REMOUNT | flags | MS_BIND, NULL), dest);
        return;
    }
    CHECK(mount(source, target, type, flags, *data ? data : NULL), dest);
    if (!strcmp(type, "tmpfs") && !strcmp(dest, "/dev")) make_devices(target);
}

static const char *mask(const char *path, const char *empty)
{
    struct stat st;
    step = path;
    if (stat(path, &st) < 0) return empty;
    if (!S_ISDIR(st.st_mode)) {
        CHECK(mount("/dev/null", path, NULL, MS_BIND, NULL), path);
        return empty;
    }
    if (!empty && mkdir(EMPTY, 0555) == 0) empty = EMPTY;
    if (!empty) { /* no writable /dev: a tmpfs of its own, shared by the next ones */
        CHECK(mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=0"), path);
        return path;
    }
    CHECK(mount(empty, path, NULL, MS_BIND, NULL), path);
    CHECK(mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, NULL), path);
    return empty;
}

static void readonly(const char *path)
{
    if (access(path, F_OK) < 0) return;
    CHECK(mount(path, path, NULL, MS_BIND | MS_REC, NULL), path);
    CHECK(mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL), path);
}

/* The mounts, pivot_root into MERGED (old root detached), masks, read-only paths. */
static void root_switch(const struct plan *p, const char *merged, const char **cursor)
{
    for (uint64_t i = 0; i < p->f[F_MOUNTS]; i++) {
        const char *dest = next(cursor), *type = next(cursor), *source = next(cursor);
        mount_one(merged, dest, type, source, next(cursor), (unsigned long)p->mount_flags[i]);
    }
    CHECK(chdir(merged), "pivot_root");
    CHECK(syscall(SYS_pivot_root, ".", "."), "pivot_root");
    CHECK(umount2(".", MNT_DETACH), "pivot_root");
    CHECK(chdir("/"), "pivot_root");
    const char *empty = NULL;
    for (uint64_t i = 0; i < p->f[F_MASKED]; i++) empty = mask(next(cursor), empty);
    if (empty && !strcmp(empty, EMPTY)) CHECK(rmdir(EMPTY), "masks");
    for (uint64_t i = 0; i < p->f[F_READONLY]; i++) readonly(next(cursor));
    if (p->f[F_READONLY_ROOT])
        CHECK(mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), "readonly root");
}

static void set_user(const uint64_t *f)
{
    CHECK(setresgid((gid_t)f[F_GID], (gid_t)f[F_GID], (gid_t)f[F_GID]), "gid");
    CHECK(setresuid((uid_t)f[F_UID], (uid_t)f[F_UID], (uid_t)f[F_UID]), "uid");
}

/* The bounding set (as root: it needs CAP_SETPCAP), the user (the permitted set kept through
 * PR_SET_KEEPCAPS), then the effective, permitted and inheritable sets. */
static void drop_capabilities(const struct plan *p)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    const uint64_t *f = p->f;
    for (uint64_t cap = 0; cap <= f[F_LAST_CAP]; cap++)
        if (!(f[F_BOUNDING] >> cap & 1)) CHECK(prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "capabilities");
    if (f[F_UID] || f[F_GID]) {
        CHECK(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keepcaps");
        set_user(f);
        CHECK(prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "keepcaps");
    }
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(f[F_EFFECTIVE] >> (32 * i));
        data[i].permitted = (uint32_t)(f[F_PERMITTED] >> (32 * i));
        data[i].inheritable = (uint32_t)(f[F_INHERITABLE] >> (32 * i));
    }
    CHECK(syscall(SYS_capset, &header, data), "capabilities");
}

static void install_seccomp(const struct plan *p)
{
    struct sock_fprog program = {
        (unsigned short)(p->f[F_SECCOMP_BYTES] / sizeof(struct sock_filter)),
        (struct sock_filter *)p->seccomp,
    };
    CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program), "seccomp");
}

static void wait_for_start(void)
{
    char start = 0;
    step = "warm channel";
    if (write(CHANNEL_FD, "p", 1) != 1) fail();
    if (read(CHANNEL_FD, &start, 1) != 1 || start != 's') _exit(0); /* destroyed unstarted */
}

static int joins_netns(char **argv)
{
    return strcmp(argv[6], "-") != 0;
}

static void init(const struct plan *p, char **argv, int argc)
{
    const uint64_t *f = p->f;
    const char *merged = argv[2], *name = argv[4];
    const char *cursor = p->strings;
    const char *cwd = next(&cursor);
    int warm = argv[5][0] == '1';

    if (joins_netns(argv)) {
        int netns = open(argv[6], O_RDONLY | O_CLOEXEC);
        CHECK(netns, "network namespace");
        CHECK(setns(netns, CLONE_NEWNET), "network namespace");
        close(netns);
    }
    if (f[F_KEYRING]) CHECK(syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name), "keyring");
    if (f[F_LOOPBACK] && !joins_netns(argv)) loopback_up();
    if (f[F_ROOTFS]) {
        CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "private mounts");
        CHECK(mount("overlay", merged, "overlay", 0, argv[3]), "overlay");
    }
    join_cgroups(argc - 7, argv + 7);
    if (f[F_CGROUPNS]) CHECK(unshare(CLONE_NEWCGROUP), "cgroup namespace");
    if (f[F_ROOTFS]) root_switch(p, merged, &cursor);
    if (f[F_HOSTNAME]) CHECK(sethostname(name, strlen(name)), "hostname");
    CHECK(setsid(), "setsid");
    for (uint64_t i = 0; i < f[F_RLIMITS]; i++) {
        struct rlimit limit = {p->rlimits[3 * i + 1], p->rlimits[3 * i + 2]};
        CHECK(setrlimit((int)p->rlimits[3 * i], &limit), "rlimits");
    }
    CHECK(chdir(cwd), "cwd");
    gid_t groups[64];
    for (uint64_t i = 0; i < f[F_GROUPS] && i < 64; i++) groups[i] = (gid_t)p->groups[i];
    CHECK(setgroups(f[F_GROUPS] < 64 ? f[F_GROUPS] : 64, groups), "groups");
    umask((mode_t)f[F_UMASK]);
    int filtered = f[F_SECCOMP_BYTES] > 0;
    if (filtered && !f[F_NO_NEW_PRIVS]) install_seccomp(p); /* needs CAP_SYS_ADMIN: first */
    if (f[F_CAPS]) drop_capabilities(p);
    else if (f[F_UID] || f[F_GID]) set_user(f); /* no capability step: the kernel's drop */
    if (f[F_NO_NEW_PRIVS]) CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
    if (warm) wait_for_start();
    CHECK(syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC), "close_range");
    if (filtered && f[F_NO_NEW_PRIVS]) install_seccomp(p);
    char *args[f[F_ARGS] + 1], *env[f[F_ENV] + 1];
    const char *executable = next(&cursor);
    for (uint64_t i = 0; i < f[F_ARGS]; i++) args[i] = (char *)next(&cursor);
    for (uint64_t i = 0; i < f[F_ENV]; i++) env[i] = (char *)next(&cursor);
    args[f[F_ARGS]] = env[f[F_ENV]] = NULL;
    step = executable;
    execve(executable, args, env);
    fail();
}

int main(int argc, char **argv)
{
    struct plan p;
    if (argc < 7) {
        errno = EINVAL;
        fail();
    }
    read_plan(argv[1], &p);
    step = "clone";
    uint64_t namespaces = p.f[F_CLONE] & ~(joins_netns(argv) ? (uint64_t)CLONE_NEWNET : 0);
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | namespaces | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) fail();
    if (pid == 0) init(&p, argv, argc);
    int32_t reported = pid;
    step = "pid";
    if (write(PID_FD, &reported, sizeof reported) != sizeof reported) fail();
    return 0;
}

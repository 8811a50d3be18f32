/* The isolation probe's checks busybox cannot make (tests/isolation_probe.sh runs this as the
 * container's process when the test hands it in at /data): one line per check on stdout,
 * "<check> ok|no <what was seen>", as the script writes its own.
 *
 * Built by the test session: gcc -static -O2 (the image is busybox only, no libc).
 * It only tries operations a contained process must be refused, and reads: it never writes
 * anything outside the container (the chroot escape only looks for the host's files, in a
 * child process that exits at once).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int host_root_files(void)
{
    return exists("/etc/debian_version") || exists("/usr/bin/apt");
}

/* The classic escape, in a child (its root and directory change, the probe's do not):
 * chroot into a new directory without chdir into it, so that the working directory stays
 * outside the new root; walk ".." up from there; chroot("."). A runtime that only chroot(2)ed
 * into the container's root (no pivot_root, or the old root still reachable) lets the walk
 * reach the host's root. */
static void chroot_escape(void)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        printf("chroot-escape no pipe: %s\n", strerror(errno));
        return;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        printf("chroot-escape no fork: %s\n", strerror(errno));
        return;
    }
    if (child == 0) {
        char seen[200];
        const char *dir = "/tmp/probe-chroot";
        close(pipefd[0]);
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            dir = "/dev"; /* a read-only root: any directory of the container's does */
        if (chdir("/") != 0 || chroot(dir) != 0) {
            snprintf(seen, sizeof seen, "ok chroot(%s) refused: %s", dir, strerror(errno));
        } else {
            for (int i = 0; i < 64; i++)
                if (chdir("..") != 0)
                    break;
            if (chroot(".") != 0)
                snprintf(seen, sizeof seen, "ok chroot(\".\") after the walk refused: %s",
                         strerror(errno));
            else if (host_root_files())
                snprintf(seen, sizeof seen, "no the host's root reached (its files seen)");
            else
                snprintf(seen, sizeof seen, "ok the walk ended in the container's own root "
                         "(busybox %s)", exists("/bin/busybox") ? "present" : "absent");
        }
        if (write(pipefd[1], seen, strlen(seen)) < 0)
            _exit(1);
        _exit(0);
    }
    close(pipefd[1]);
    char seen[200] = "";
    ssize_t n = read(pipefd[0], seen, sizeof seen - 1);
    close(pipefd[0]);
    waitpid(child, NULL, 0);
    rmdir("/tmp/probe-chroot");
    if (n <= 0)
        printf("chroot-escape no the child said nothing\n");
    else
        printf("chroot-escape %.*s\n", (int)n, seen);
}

/* refused: EPERM (the profile's errno, or a missing capability) or ENOSYS */
static const char *verdict(long result)
{
    return result < 0 && (errno == EPERM || errno == ENOSYS) ? "ok" : "no";
}

static void open_by_handle(void)
{
    /* a handle of a directory the container sees (the host's volume first: the shocker
     * escape's start); a zeroed one if no file system here gives one */
    const char *paths[] = {"/data", "/", "/dev", "/proc"};
    struct {
        struct file_handle handle;
        unsigned char bytes[MAX_HANDLE_SZ];
    } buffer;
    const char *from = "a zeroed handle";
    int mount_id;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        memset(&buffer, 0, sizeof buffer);
        buffer.handle.handle_bytes = MAX_HANDLE_SZ;
        if (name_to_handle_at(AT_FDCWD, paths[i], &buffer.handle, &mount_id, 0) == 0) {
            from = paths[i];
            break;
        }
    }
    if (strcmp(from, "a zeroed handle") == 0) {
        memset(&buffer, 0, sizeof buffer);
        buffer.handle.handle_bytes = 8;
        buffer.handle.handle_type = 1; /* FILEID_INO32_GEN */
    }
    int mount_fd = open("/", O_RDONLY | O_DIRECTORY);
    errno = 0;
    long fd = syscall(SYS_open_by_handle_at, mount_fd, &buffer.handle, O_RDONLY);
    int saved = errno;
    const char *result = verdict(fd);
    printf("open-by-handle %s open_by_handle_at (handle of %s): %s\n", result, from,
           fd >= 0 ? "opened" : strerror(saved));
    if (fd >= 0)
        close((int)fd);
    if (mount_fd >= 0)
        close(mount_fd);
}

static void bpf_map(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    errno = 0;
    long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    int saved = errno;
    const char *result = verdict(fd);
    printf("bpf %s bpf(BPF_MAP_CREATE) of a 1-entry array map: %s\n", result,
           fd >= 0 ? "made" : strerror(saved));
    if (fd >= 0)
        close((int)fd);
}

static void perf_event(void)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    errno = 0;
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    int saved = errno;
    const char *result = verdict(fd);
    printf("perf-event-open %s perf_event_open(PERF_COUNT_SW_CPU_CLOCK, this process): %s\n",
           result, fd >= 0 ? "opened" : strerror(saved));
    if (fd >= 0)
        close((int)fd);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    chroot_escape();
    open_by_handle();
    bpf_map();
    perf_event();
    return 0;
}

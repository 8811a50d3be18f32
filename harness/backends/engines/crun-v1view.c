/* crun for engines on a hybrid cgroup host: exec /usr/bin/crun with a v1-only cgroup view.
 *
 * crun 1.8 refuses hybrid hosts ("cgroups in hybrid mode not supported"); it runs where
 * /sys/fs/cgroup/unified is not mounted. Docker's shim and Podman's conmon run the runtime as
 * a plain binary, so this wrapper gives each crun command a private mount namespace (mounts
 * slave to the host's) without the unified mount, then execs crun with the same arguments:
 * what cvbench's own crun backend does in its launcher. Elsewhere (pure v1 or v2) it only
 * execs crun. Built by scripts/setup.sh into $CVBENCH_CACHE_DIR/bin/crun-v1view.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef CRUN
#define CRUN "/usr/bin/crun"
#endif
#define TMPFS_MAGIC 0x01021994
#define CGROUP2_SUPER_MAGIC 0x63677270

static int hybrid(void)
{
    struct statfs top, unified;
    return statfs("/sys/fs/cgroup", &top) == 0 && top.f_type == TMPFS_MAGIC &&
           statfs("/sys/fs/cgroup/unified", &unified) == 0 &&
           unified.f_type == CGROUP2_SUPER_MAGIC;
}

int main(int argc, char **argv)
{
    (void)argc;
    if (hybrid()) {
        if (unshare(CLONE_NEWNS) != 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0 ||
            umount2("/sys/fs/cgroup/unified", MNT_DETACH) != 0) {
            perror("crun-v1view");
            return 125;
        }
    }
    argv[0] = "crun";
    execv(CRUN, argv);
    perror("crun-v1view: exec " CRUN);
    return 127;
}

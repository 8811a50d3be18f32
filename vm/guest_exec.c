/* cvbench-guest-exec: the last step of an imported image's guest init (vm/guest.py,
 * GuestLaunch): become the image's user and exec its process with exactly its environment.
 *
 *     cvbench-guest-exec UID GID [NAME=VALUE ...] -- PROG [ARG ...]
 *
 * No supplementary groups (setgroups 0), then setgid, setuid; the environment is the given
 * items only; PROG is found on that environment's PATH (execvp), as a container runtime
 * finds it. Busybox cannot do this: its setpriv has no uid option and its env and setpriv
 * run their own applet for a name like "sh" instead of the image's program. Static, so it
 * runs on an image without a C library; it uses no NSS function (numeric ids only).
 *
 * A failure is one line starting with "cvbench-boot:" on stderr (the console: the host's wait
 * for READY ends there); the helper is PID 1 then, so it does not exit (the kernel would
 * panic) but waits to be stopped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void fail(const char *what, const char *name) {
    fprintf(stderr, "cvbench-boot: %s %s: %s\n", what, name, strerror(errno));
    fflush(stderr);
    for (;;)
        pause();
}

static int parse_id(const char *text, unsigned long *out) {
    char *end;
    if (*text == '\0')
        return -1;
    errno = 0;
    *out = strtoul(text, &end, 10);
    return (*end != '\0' || errno != 0 || *out > 0xfffffffeUL) ? -1 : 0;
}

int main(int argc, char **argv) {
    unsigned long uid, gid;
    int sep = 3;
    if (argc < 4 || parse_id(argv[1], &uid) || parse_id(argv[2], &gid)) {
        fprintf(stderr, "cvbench-boot: usage: %s UID GID [NAME=VALUE ...] -- PROG [ARG ...]\n",
                argv[0]);
        for (;;)
            pause();
    }
    while (sep < argc && strcmp(argv[sep], "--") != 0)
        sep++;
    if (sep + 1 >= argc) {
        errno = EINVAL;
        fail("no program after", "--");
    }
    argv[sep] = NULL; /* argv[3..sep) becomes the environment */
    if (setgroups(0, NULL) != 0)
        fail("setgroups", "0");
    if (setgid((gid_t)gid) != 0)
        fail("setgid", argv[2]);
    if (setuid((uid_t)uid) != 0)
        fail("setuid", argv[1]);
    environ = argv + 3;
    execvp(argv[sep + 1], argv + sep + 1);
    fail("cannot exec", argv[sep + 1]);
    return 127;
}

"""Run a daemon under a child subreaper that reaps every orphan at once.

On hosts whose PID 1 reaps orphans slowly (on a timer, not when they die), a QEMU process
destroyed by libvirt stays a zombie until PID 1 gets to it, and libvirt waits for it:
stopping a VM then takes that long. Started as ``subreaper.py libvirtd -d``, this process
becomes the parent of the daemonised libvirtd and of everything it daemonises (QEMU), and
reaps them immediately.
Exits when it has no children left. Standard library only: runs with the system Python.
Descriptors beyond stdin, stdout and stderr are closed first: a long-lived daemon must not keep
what its starter held open (a lock taken around the set-up would otherwise never be released).
"""

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: subreaper.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"subreaper: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(sys.argv[1], sys.argv[1:])
        finally:
            os._exit(127)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main())

"""Host helpers shared by ``runtime/``, ``vm/`` and ``harness/``; none of them is a container
or VM concept.

- :mod:`hostkit.paths`: the state and cache directories, the ``cvbench-`` prefix.
- :mod:`hostkit.procs`: process identity (pid + start time), pidfd waits.
- :mod:`hostkit.syscalls`: thin ctypes bindings Python lacks (unshare, setns, mount, ...).
- :mod:`hostkit.meminfo`: ``/proc/meminfo`` in bytes.
- :mod:`hostkit.mountinfo`: ``/proc/<pid>/mountinfo`` parsed, escapes decoded.
- :mod:`hostkit.files`: atomic writes.
- :mod:`hostkit.validate`: the one validator of numbers and names that command-line options
  and scenario keys go through, and the bounds of the quantities both take.
- :mod:`hostkit.helper`: the helper-process layer: a helper's ``serve(handlers)``, its
  owner's client, the record ``cvbench clean`` reads (the fork server, the OCI launcher and
  the LXC helper are its helpers).
- :mod:`hostkit.readiness`: a workload's output pipe read for its READY line or to its end
  (containers and the floor; the harness's readiness waits for every backend).
- :mod:`hostkit.seccomp_readback`: the seccomp filters a running process holds (ptrace),
  compared.
"""

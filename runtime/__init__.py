"""cvbench's own container runtime, usable without harness/ (``cvbench ctr``).

It runs the same OCI-subset spec crun and runc are given (namespaces, an overlay root, cgroups,
device rules, capabilities, no_new_privs, seccomp), so the three can be compared like for
like. The launch path, cold: :meth:`runtime.container.Runtime.create` makes the container's
directory and cgroups while a worker thread compiles its seccomp program; ``start`` sends a
:class:`runtime.plan.LaunchPlan` (made by :mod:`runtime.planner`) to the fork server
(:mod:`runtime.forkserver`), whose child (:mod:`runtime.child`) builds the root
(:mod:`runtime.rootfs`), joins its cgroups, drops privileges, installs the filter and execs;
READY comes back on a pipe (:mod:`hostkit.readiness`). Warm: ``create`` also has the fork
server fork a *spare* that does all of that but the exec ahead of time.

Modules, one job each:

- :mod:`runtime.spec`: the container spec (an OCI ``config.json`` subset) and
  :func:`runtime.spec.default_spec`, the one spec every container backend runs.
- :mod:`runtime.container`: :class:`runtime.container.Runtime`, create, start, wait for READY,
  stop, destroy, list.
- :mod:`runtime.planner` and :mod:`runtime.plan`: from a spec to the launch plan the child
  needs, resolved in the parent and sent as JSON.
- :mod:`runtime.forkserver`: the small process every container is forked from.
- :mod:`runtime.child`: what the child does between fork and exec.
- :mod:`runtime.handshake`: the bytes the init and its host exchange between create and
  start.
- :mod:`runtime.rootfs`: the overlay root, mounts, device nodes and the root switch.
- :mod:`runtime.cgroups`: limits through cgroups, one interface with a v1 and a v2 driver;
  :mod:`runtime.scopes`: each state directory's cgroup parent and the containers' shards.
- :mod:`runtime.devices` and :mod:`runtime.device_filter`: device rules, as v1 files or a v2
  eBPF program.
- :mod:`runtime.seccomp`: the default profile, resolved for a container and compiled.
- :mod:`runtime.caps`: capability names and masks.
- :mod:`runtime.network`: ``none``, ``bridge`` (a veth on ``cvbench0``) and ``host``.
- :mod:`runtime.containerdir` and :mod:`runtime.state`: a container's directory, its owner and
  its state file.
- :mod:`runtime.errors`: one-line errors (the READY pipe is :mod:`hostkit.readiness`).
- :mod:`runtime.sweep`: what ``cvbench clean`` removes after a crash.
- :mod:`runtime.cli`: ``cvbench ctr run|ls|stop|rm``.
- :mod:`runtime.oci`: ``cvbench-runtime``, the OCI runtime command line (create, start, state,
  kill, delete) over the modules above, for Docker, Podman and anything that drives crun.
"""

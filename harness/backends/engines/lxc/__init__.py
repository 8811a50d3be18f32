"""The ``lxc`` backend: Debian's LXC 5 through liblxc's Python binding (Debian's python3-lxc,
linked into the virtualenv by ``scripts/setup.sh``).

One job per module:

- ``config``: a container's LXC config written from the reference spec (overlay rootfs,
  namespaces, limits, capabilities, the seccomp profile in LXC's format, masked paths);
- ``helper_process``: the helper process, a small interpreter that forks each container's
  monitor; ``helper``: :class:`~harness.backends.engines.lxc.helper.HelperClient`, the
  harness's client of it;
- ``backend``: :class:`~harness.backends.engines.lxc.backend.LxcBackend`, the Backend
  protocol: config, start through the helper, READY on a pipe; shutdown, destroy;
- ``sweeper``: :func:`~harness.backends.engines.lxc.sweeper.sweep`, what ``cvbench clean``
  runs.

This file imports nothing: the helper process imports only ``helper_process``.
"""

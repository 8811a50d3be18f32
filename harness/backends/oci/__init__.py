"""The OCI peer backends' shared code: crun and runc run our image as an OCI bundle.

One job per module:

- ``bundle``: where a container's bundle and the runtimes' state live; its ``config.json``.
- ``cgroup``: the containers' cgroups (``cvbench-oci/<shard>/<name>``, ours' layout) through
  :mod:`runtime.cgroups`.
- ``launcher_process``: the launcher, a helper process in a private mount namespace that runs
  every runtime command (and mounts a container's overlay there while the command that starts
  it runs), and times each command for the harness's share.
- ``launcher``: :class:`Launcher`, the harness's client of a launcher process.
- ``backend``: :class:`OciBackend`, the Backend protocol on top of those: cold ``run -d``,
  warm ``create`` then ``start``, stop by ``kill`` until the init exited, remove by ``delete``.
- ``profile``: the isolation profile a ``config.json`` asks for (``describe()["security"]``).
- ``probe``: the cgroup hierarchies and device rules a runtime really made for a container.
- ``sweeper``: :func:`sweep`, what ``cvbench clean`` runs after a crash.
- ``runtimes``: OCI runtimes by configuration (a scenario's ``[runtimes]``, ``cvbench run
  --runtime NAME=PATH``): the check of a user's binary, its entry in the backend table, and
  the record of each OCI backend's binary that the sweep reads.

``harness/backends/crun.py`` and ``harness/backends/runc.py`` subclass :class:`OciBackend` to
name the binary; a runtime a user names is :class:`OciBackend` itself, given its name and
path by the registry.
This file imports nothing: the launcher process imports only ``launcher_process`` (and
through it ``runtime.rootfs``, ours' overlay mount).
"""

"""The ``podman`` backend: Debian's podman (daemonless, conmon per container) through its own
REST API, the libpod API of a ``podman system service`` the backend starts on a unix socket
of its state directory and stops when done, with the ``podman`` Python package's client.

One job per module:

- ``service``: :class:`~harness.backends.engines.podman.service.Service`, the backend's own
  podman service (its ``containers.conf``, socket, record file for ``cvbench clean``), and
  the client of its API;
- ``config``: what podman is told for a container (the reference profile and limits as a
  libpod SpecGenerator) and for its service (``containers.conf``);
- ``backend``: :class:`~harness.backends.engines.podman.backend.PodmanBackend`, the Backend
  protocol: create, init, attach, start; kill, remove;
- ``sweeper``: :func:`~harness.backends.engines.podman.sweeper.sweep`, what ``cvbench clean``
  runs.

This file imports nothing, so that ``cvbench clean`` and the doctor load only what they use.
"""

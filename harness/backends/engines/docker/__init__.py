"""The ``docker`` backend: Debian's docker.io (dockerd + containerd), driven with the Docker
SDK for Python (the ``docker`` package) over dockerd's unix socket.

One job per module:

- ``service``: dockerd as the backend finds it (its socket, pid and flags, the SDK's client):
  ``scripts/setup.sh`` starts it, the backend never starts or stops it;
- ``config``: what Docker is told for a container (the reference profile and limits as a
  HostConfig), the network and cgroup names;
- ``backend``: :class:`~harness.backends.engines.docker.backend.DockerBackend`, the Backend
  protocol: create, attach, start; kill, remove;
- ``sweeper``: :func:`~harness.backends.engines.docker.sweeper.sweep`, what ``cvbench clean``
  runs.

This file imports nothing, so that ``cvbench clean`` and the doctor load only what they use.
"""

"""``cvbench-runtime``: cvbench's own runtime behind the OCI runtime command line, so that
Docker, Podman or anything that drives crun or runc can drive it.

- :mod:`runtime.oci.cli`: the command line (``create``, ``start``, ``state``, ``kill``,
  ``delete``, ``run``, ``list``; ``--root``, ``--log``, ``--log-format``).
- :mod:`runtime.oci.config`: a bundle's ``config.json`` as a :class:`runtime.spec.Spec`, or
  one line naming the field that cannot be honoured.
- :mod:`runtime.oci.create`: ``create`` and ``run``, on the planner, the fork server, the
  child and the cgroup drivers of runtime/; :mod:`runtime.oci.lifecycle`: ``start``,
  ``kill`` and ``delete`` (apart, so that they load little).
- :mod:`runtime.oci.hooks`: the OCI hooks that run on the host.
- :mod:`runtime.oci.state`: the containers under ``--root`` and the OCI state JSON.
- :mod:`runtime.oci.sweep`: what ``cvbench clean`` removes (half-made containers).
"""

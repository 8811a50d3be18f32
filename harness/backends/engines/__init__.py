"""The container engines people run, as backends: Docker (``docker/``), Podman (``podman/``)
and LXC (``lxc/``), each driven through its own API; each a package shaped like
:mod:`harness.backends.oci` (``config``, ``service`` or ``helper``, ``backend``, ``sweeper``).

What they share is in ``common.py``: the image as a tarball from cvbench's image store, the
READY line read from an attach stream or a console, the security profile every container
backend runs (:func:`harness.backends.containers.container_spec`), and the engines' memory.
Their cold start is their own create step then their start step
(:class:`harness.backends.chores.SplitStart`).
"""

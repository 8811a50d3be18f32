"""The container engines people run, as backends: Docker (``docker.py``), Podman
(``podman.py``) and LXC (``lxc.py``), each driven through its own API.

What they share is in ``common.py``: the image as a tarball from cvbench's image store, the
READY line read from an attach stream or a console, the security profile every container
backend runs (:func:`harness.backends.containers.container_spec`), and the engines' memory.
"""

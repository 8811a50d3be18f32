"""The bytes a container's init and its host exchange between create and start, in a module
of their own so that a short command (``cvbench-runtime start``) writes START without loading
the init's module, :mod:`runtime.child`."""

START = b"s"  # on the host channel or the exec FIFO: a prepared warm container may exec now
PREPARED = b"p"  # on the host channel: set up, waiting for START

"""The ``floor`` backend: the kernel's floor for a container of the shared spec.

- ``launcher.c``: the C launcher set-up builds (``cvbench-floor`` in the cache's ``bin/``);
- :mod:`.plan`: the plan file it reads (its layout), and the ``steps`` a scenario switches;
- :mod:`.host`: what each step needs from the host (refused in one line in ``prepare()``);
- :mod:`.paths`: where its containers, plans and cgroups live;
- :mod:`.backend`: the backend (cold and warm);
- :mod:`.sweeper`: what ``cvbench clean`` removes after a crash.
"""

"""``cvbench`` subcommands: one module each (the model is asv's ``commands/``).

A subcommand module has two functions:

- ``register(subparsers) -> ArgumentParser``: add its parser (``subparsers.add_parser``) with
  its options, and ``set_defaults(func=handle)``. Every option that takes a value has a
  ``type=`` of :mod:`hostkit.validate` (``Bounds`` for a number, ``Names`` for a name,
  ``Text`` for a path or run id), so bad input is refused while parsing, before ``handle``
  runs (a test walks the parser and holds every option to it);
- ``handle(args) -> int``: do the work, return an exit code from :mod:`harness.commands.base`,
  and raise :class:`~harness.commands.base.UsageError` for bad input (one line, exit 2).

The experiment subcommands (``items``, ``profile``, ``idle``) are runs of a scenario they
build from their options; what they share is :mod:`harness.commands.experiment` (and
:mod:`harness.commands.stripped` holds the backend variants ``items`` compares).

To add a subcommand, add a module here and list it in ``COMMANDS`` in :mod:`harness.cli`.
Import heavy modules inside ``handle``, so that ``cvbench --help`` stays fast. This package's
``__init__`` imports nothing, so a command module importing :mod:`harness.commands.base`
never makes a cycle.
"""

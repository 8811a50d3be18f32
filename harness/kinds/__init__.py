"""Scenario kinds: one module per kind (its keys, its run function, its metrics, its charts:
:mod:`harness.kinds.base`), listed once in :mod:`harness.kinds.registry`; the kinds that
repeat take their turns through :mod:`harness.kinds.rounds`."""

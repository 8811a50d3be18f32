"""Scenario kinds: one module per kind (its keys, its run function, its charts), listed once in
:mod:`harness.kinds.registry`."""

"""The benchmark harness: scenario files in, samples, reports and the regression gate out.

The data flows one way (docs/architecture.md): a scenario file is loaded and checked, the
runner prepares every backend and runs each scenario by its kind, the results are written as
a run directory, and the report, the notebook and the gate read them.

- :mod:`harness.scenario` and :mod:`harness.params`: scenario files, checked before anything
  starts.
- :mod:`harness.runner`: a suite run from start to clean-up; :mod:`harness.context`: what a
  scenario needs while it runs; :mod:`harness.runlock`: the state directory's lock.
- :mod:`harness.kinds`: one module per scenario kind, listed in
  :mod:`harness.kinds.registry`.
- :mod:`harness.backends`: one class per kind of instance, listed in
  :mod:`harness.backends.registry`.
- :mod:`harness.workloads`: what runs inside an instance for the ``workload`` kind.
- :mod:`harness.results`: run directories; :mod:`harness.metrics`: clocks and memory
  readings; :mod:`harness.memory_items`: memory per instance by kernel counter;
  :mod:`harness.hostinfo` and :mod:`harness.hostkind`: facts about the host and whether
  cvbench can run there.
- :mod:`harness.normalize`: ratios to each family's floor; :mod:`harness.report`,
  :mod:`harness.charts` and :mod:`harness.methodology`: the report;
  :mod:`harness.baseline`, :mod:`harness.gate` and :mod:`harness.spread`: the regression gate.
- :mod:`harness.fleet`: one scenario on many hosts through Ansible.
- :mod:`harness.cli`, :mod:`harness.commands` and :mod:`harness.log`: the ``cvbench``
  command; :mod:`harness.doctor` and :mod:`harness.clean`: ``cvbench doctor`` and
  ``cvbench clean``.
"""

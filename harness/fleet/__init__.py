"""Many hosts: one scenario across a fleet through Ansible, and the hosts compared.

- :mod:`~harness.fleet.engine`: Ansible through ansible-runner's Python API (inventories,
  facts, playbooks, events); nothing else here imports Ansible.
- :mod:`~harness.fleet.preflight`: can a host take a run (Debian 12, root)?
- :mod:`~harness.fleet.run`: ``cvbench fleet run``; :mod:`~harness.fleet.clean`: ``cvbench
  fleet clean``.
- :mod:`~harness.fleet.fleetdir`: the fleet directory (hosts' runs, merged samples, facts).
- :mod:`~harness.fleet.report`: the report's hosts-side-by-side section;
  :mod:`~harness.fleet.gate`: ``cvbench compare`` per host.
- ``harness/fleet/playbooks/run.yml`` and ``harness/fleet/playbooks/stop.yml``, and
  ``harness/fleet/playbooks/host.sh``, the steps a host runs.

The command is :mod:`harness.commands.fleet`.
"""

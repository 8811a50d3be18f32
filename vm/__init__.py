"""VMs, libvirt-managed or bare QEMU, booting the containers' image; usable without harness/.

Modules, one job each:

- :mod:`vm.guest`: guest kernel, initramfs per image digest, qcow2 base disk and overlays.
- :mod:`vm.domain`: :class:`~vm.domain.DomainSpec` rendered to domain XML (ElementTree).
- :mod:`vm.hypervisor`: the libvirt connection and its URI, per-VM directories, domains and
  their QEMU pids.
- :mod:`vm.accel`: which accelerator VMs get (``kvm`` only where it really works, else
  ``tcg``), and why.
- :mod:`vm.console`: READY on the serial console (unix socket or libvirt console stream).
- :mod:`vm.monitor`: QEMU's QMP monitor, for a bare QEMU started with its CPUs stopped or
  saved and restored (commands with arguments and descriptors, events).
- :mod:`vm.machine`: :class:`~vm.machine.VirtualMachine`, one VM from start to destroy.
- :mod:`vm.memory`: PSS/USS/RSS of QEMU, guest RAM versus VMM overhead, MemAvailable.
- :mod:`vm.bare_qemu`: the same boot with a bare QEMU command (the VM family's floor).
- :mod:`vm.snapshot`: a booted, idle guest saved to a read-only state file once, and bare
  QEMU guests started from it (the ``restore`` variant), answering a console ping.
- :mod:`vm.probe`: will libvirt re-probe QEMU at every domain start (a ``/dev/kvm`` QEMU's
  user cannot open)?
- :mod:`vm.sweep`: :func:`vm.sweep.sweep`, the VMs and directories whose owner died, for
  ``cvbench clean``.
- :mod:`vm.testhost`: a systemd, cgroup-v2-only Debian host in a bare QEMU VM, for tests and
  checks on the kind of host users have (not a benchmarked backend).
"""

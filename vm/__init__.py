"""libvirt-managed VMs booting the containers' image as an initramfs; usable without harness/.

Modules, one job each:

- :mod:`vm.guest`: guest kernel, initramfs per image digest, qcow2 base disk and overlays.
- :mod:`vm.domain`: :class:`~vm.domain.DomainSpec` rendered to domain XML (ElementTree).
- :mod:`vm.hypervisor`: connection URI, accel detection, domains, QEMU pids, ``sweep()``.
- :mod:`vm.console`: READY on the serial console (unix socket or libvirt console stream).
- :mod:`vm.machine`: :class:`~vm.machine.VirtualMachine`, one VM from start to destroy.
- :mod:`vm.memory`: PSS/USS/RSS of QEMU, guest RAM versus VMM overhead, MemAvailable.
- :mod:`vm.bare_qemu`: the same boot with a bare QEMU command (benchmark reference only).
- :mod:`vm.testhost`: a systemd, cgroup-v2-only Debian host in a bare QEMU VM, for tests and
  checks on the kind of host users have (not a benchmarked backend).
"""

"""The image store: read-only rootfs directories identified by a sha256 digest
(:mod:`imagestore.image`). Containers run them through overlayfs; VMs boot them as an
initramfs.

Images come two ways: built here (:mod:`imagestore.builders`: the default busybox image,
:mod:`imagestore.workloads`), or imported (:mod:`imagestore.oci_import`: an OCI image layout or
a docker-archive, read by :mod:`imagestore.archives`, its layers applied by
:mod:`imagestore.layers`, its start-up fields kept as :mod:`imagestore.imageconfig`)."""

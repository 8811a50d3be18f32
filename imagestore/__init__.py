"""The image store: read-only rootfs directories identified by a sha256 digest
(:mod:`imagestore.image`). Containers run them through overlayfs; VMs boot them as an
initramfs."""

"""What an imported image runs: the entrypoint, cmd, env, workdir and user of its OCI config.

``cvbench image import`` (:mod:`imagestore.oci_import`) keeps these five fields of the image's
config as ``config.json`` beside the rootfs (``images/<digest>/config.json``), and the image's
digest covers that file (:func:`imagestore.image.image_lines`), so a changed command is a
tampered image like a changed byte. Images cvbench builds itself have no config: they run
``/init``. The fields keep the OCI meaning: the process is ``entrypoint + cmd``; an empty
``workdir`` or ``user`` means the runtime's default (``/``, root).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imagestore.image import CONFIG, Image, ImageError


@dataclass(frozen=True)
class ImageConfig:
    """The part of an OCI image config that says how to start the image."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""

    @property
    def argv(self) -> tuple[str, ...]:
        """The process the image runs: its entrypoint followed by its cmd."""
        return self.entrypoint + self.cmd

    @classmethod
    def from_oci(cls, document: object) -> ImageConfig:
        """The fields of an OCI (or Docker) image config document; ImageError if they are
        malformed or if the image names nothing to run (neither Entrypoint nor Cmd)."""
        if not isinstance(document, dict):
            raise ImageError("image config: not a JSON object")
        section = document.get("config") or {}
        if not isinstance(section, dict):
            raise ImageError("image config: 'config' is not a JSON object")
        config = cls(entrypoint=_strings(section, "Entrypoint"), cmd=_strings(section, "Cmd"),
                     env=_strings(section, "Env"), workdir=_string(section, "WorkingDir"),
                     user=_string(section, "User"))
        if not config.argv:
            raise ImageError("image config has neither Entrypoint nor Cmd: it names nothing "
                             "to run")
        return config

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ImageConfig:
        data = json.loads(text)
        return cls(entrypoint=tuple(data["entrypoint"]), cmd=tuple(data["cmd"]),
                   env=tuple(data["env"]), workdir=data["workdir"], user=data["user"])


def load(image: Image) -> ImageConfig | None:
    """The config kept beside ``image``'s rootfs, or None for an image cvbench built."""
    path = config_path(image)
    return ImageConfig.from_json(path.read_text()) if path.exists() else None


def config_path(image: Image) -> Path:
    return image.rootfs.parent / CONFIG


def _strings(section: dict[str, Any], key: str) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ImageError(f"image config: {key} is not a list of strings")
    return tuple(value)


def _string(section: dict[str, Any], key: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImageError(f"image config: {key} is not a string")
    return value

"""An image to run container steps in, made here: nothing can be pulled from a registry
on these machines. busybox-static's applets in a root file system, imported into podman
once (the tests and bench/containers.py share it)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

IMAGE = "localhost/workdeck-test:busybox"


def engine_answers() -> bool:
    return shutil.which("podman") is not None and subprocess.run(
        ["podman", "info"], capture_output=True).returncode == 0


def ensure_image() -> str:
    """The image's name, imported first if podman does not have it yet."""
    if subprocess.run(["podman", "image", "exists", IMAGE]).returncode == 0:
        return IMAGE
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("the test image is built from busybox-static: install it")
    with tempfile.TemporaryDirectory() as root:
        bin_dir = Path(root, "bin")
        bin_dir.mkdir()
        shutil.copy(busybox, bin_dir / "busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (bin_dir / applet).symlink_to("busybox")
        for folder in ("tmp", "etc", "root"):
            Path(root, folder).mkdir()
        archive = subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True,
                                 check=True).stdout
        subprocess.run(["podman", "import", "-", IMAGE], input=archive, check=True,
                       capture_output=True)
    return IMAGE

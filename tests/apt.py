"""Installing the Debian packages a test needs (Ceph, Chromium) when they are missing, as
``.ci/run`` does, so a developer's plain ``python -m pytest`` works too."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

OUTPUT_TAIL_CHARS = 2000  # of apt-get's output in an error message


def apt_install(packages: Sequence[str], *, timeout: float) -> None:
    """``apt-get update`` then ``apt-get install`` ``packages``, as root or with
    passwordless sudo. RuntimeError naming the command and the end of its output when
    that is not possible."""
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"there is no apt-get to install {' '.join(packages)}")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([*sudo, "apt-get", "update", "-qq"],
                [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                 *packages]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                           timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n"
                               f"{(p.stdout + p.stderr)[-OUTPUT_TAIL_CHARS:]}")

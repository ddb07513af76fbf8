"""Builds the container image of deploy/Containerfile with podman: ``make image`` runs it, tests/test_container.py too.

1. The wheels: ``pip wheel '.[s3]'`` into ``build/image/context/wheels`` (the project's wheel and every dependency's),
   the whole build context, so the image installs offline and holds no source tree.
2. The base: ``--base IMAGE`` (e.g. ``docker.io/library/python:3.11-slim-bookworm`` where a registry is reachable),
   or by default a Debian base made here with ``mmdebstrap --variant=minbase --include=python3,python3-venv SUITE``
   and ``podman import`` (the suite whose Python matches this one's, so the wheels fit), kept as
   ``localhost/ovmsctl-base:SUITE`` and reused.
3. ``podman build --isolation chroot``.

Podman runs with ``build/image/containers.conf`` (unless CONTAINERS_CONF is set): ``default_ulimits = []``, the runc
runtime and cgroupfs, what podman needs in sandboxes where crun, the default ulimits or systemd cgroups fail.

Usage::

    .venv/bin/python deploy/image.py build [--tag localhost/ovmsctl:latest] [--base IMAGE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "build" / "image"
CONTEXT = WORK / "context"
CONTAINERFILE = REPO / "deploy" / "Containerfile"
DEFAULT_TAG = "localhost/ovmsctl:latest"
# Debian suites by their Python, so that wheels built here install in the base.
SUITES = {(3, 11): "bookworm", (3, 13): "trixie"}
CONTAINERS_CONF = """\
# Written by deploy/image.py: what podman needs where the default ulimits, crun or systemd cgroups fail.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


class ImageError(RuntimeError):
    """A step failed; the message says which and ends with its output."""


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        WORK.mkdir(parents=True, exist_ok=True)
        conf = WORK / "containers.conf"
        if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
            conf.write_text(CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    return env


def run(
    command: Sequence[str], timeout: float, what: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{what}: no answer after {timeout:g} s ({' '.join(command)})") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise ImageError(f"{what} failed (exit status {done.returncode}): {' '.join(command)}\n{output}")
    return done


def podman(*args: str, timeout: float = 120, what: str = "podman") -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], timeout, what, env=podman_env())


def image_exists(tag: str) -> bool:
    done = subprocess.run(["podman", "image", "exists", tag], env=podman_env(), capture_output=True, timeout=60)
    return done.returncode == 0


def suite() -> str:
    found = SUITES.get(sys.version_info[:2])
    if found is None:
        raise ImageError(
            f"no Debian suite with Python {sys.version_info.major}.{sys.version_info.minor} (the wheels' Python): "
            f"give --base IMAGE with that Python"
        )
    return found


def local_base() -> str:
    """``localhost/ovmsctl-base:SUITE``, made with mmdebstrap and podman import unless it exists."""
    name = suite()
    tag = f"localhost/ovmsctl-base:{name}"
    if image_exists(tag):
        return tag
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is missing (`make deploy-tools` installs it), or give --base IMAGE")
    WORK.mkdir(parents=True, exist_ok=True)
    rootfs = WORK / f"{name}-rootfs.tar"
    try:
        run(
            ["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv", name, str(rootfs)],
            900,
            "mmdebstrap (the base image's root file system)",
        )
        podman("import", str(rootfs), tag, timeout=300, what="podman import")
    finally:
        rootfs.unlink(missing_ok=True)
    return tag


def wheels() -> Path:
    """The build context: ``wheels/`` with the project's wheel and its dependencies' (the s3 extra included)."""
    target = CONTEXT / "wheels"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir", str(target),
         f"{REPO}[s3]"],
        900,
        "pip wheel",
    )  # fmt: skip
    return CONTEXT


def build(tag: str = DEFAULT_TAG, base: str | None = None) -> str:
    """Build the image; returns its tag."""
    base = base or local_base()
    context = wheels()
    podman(
        "build", "--isolation", "chroot", "--build-arg", f"BASE={base}", "--file", str(CONTAINERFILE),
        "--tag", tag, str(context),
        timeout=1200, what="podman build",
    )  # fmt: skip
    # The install stage's image and any image this tag named before: nothing refers to them any more.
    podman("image", "prune", "--force", timeout=300, what="podman image prune")
    return tag


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build the image")
    build_parser.add_argument("--tag", default=DEFAULT_TAG, help=f"the image's name (default {DEFAULT_TAG})")
    build_parser.add_argument("--base", help="the base image (default: a Debian base made with mmdebstrap)")
    args = parser.parse_args(argv)
    if shutil.which("podman") is None:
        print("podman is missing: `make deploy-tools` installs it (as root, on Debian)", file=sys.stderr)
        return 1
    try:
        tag = build(args.tag, args.base)
    except ImageError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"built {tag}")
    print(f"run:   podman run -v $PWD/models:/models -p 9000:9000 {tag} --model_name resnet \\")
    print("         --model_path /models/resnet --batch_size auto --port 9000")
    return 0


if __name__ == "__main__":
    sys.exit(main())

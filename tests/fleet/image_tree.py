"""An image of deploy/Dockerfile, assembled without a container engine: a target's instructions
(its base stages' first) replayed into a fresh directory and a fresh virtualenv.

The image's `/` is a directory here (its /app is `root/app`) and its Python is a new virtualenv
of this machine's Python, of the version the base image names. COPY copies from the build context
as Docker does (a directory's contents, several sources into a directory); RUN runs `pip` as
written, against that virtualenv; ENV and WORKDIR are what the image gives its processes. A stage
built on one already assembled starts from a copy of it, as an engine reuses its layers. An
instruction not replayed here fails the build, so that the image cannot grow a step nobody runs.
pip does not byte-compile what it installs here (a third of the time; no file that runs changes).
"""
from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.fleet.deploy_files import ImageConfig, dockerfile_stages, image_config, stage_bases, target_instructions

# RUN steps that set up the image's operating system, not geoqueue: the user its processes run as.
OS_SETUP = {"useradd"}
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class ImageTree:
    root: Path   # the image's `/`
    venv: Path   # the image's Python, with what its RUN steps installed
    config: ImageConfig

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def program_path(self) -> str:
        """PATH in the image: its Python's programs (pip, celery, python) first."""
        return f"{self.venv / 'bin'}:{SYSTEM_PATH}"


def build(target: str, context: Path, dest: Path, built: dict[str, ImageTree] | None = None) -> ImageTree:
    """`target` assembled in `dest`, on a copy of its base stage's tree when `built` has that."""
    base = (built or {}).get(stage_bases()[target])
    dest.mkdir(parents=True)
    if base:
        tree = _copy_of(base, dest)
        steps = dockerfile_stages()[target]
    else:
        tree = ImageTree(dest / "root", dest / "venv", ImageConfig("/", {}))
        tree.root.mkdir()
        steps = target_instructions(target)
    for line in steps:
        keyword, _, rest = line.partition(" ")
        if keyword == "FROM":
            _base(tree, rest.strip())
        elif keyword == "WORKDIR":
            tree.config.workdir = str(Path(tree.config.workdir, rest.strip()))
            tree.path(tree.config.workdir).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            _copy(tree, shlex.split(rest), context)
        elif keyword == "RUN":
            _run(tree, rest, dest)
        elif keyword == "ENV":
            tree.config.env.update(word.split("=", 1) for word in shlex.split(rest))
        elif keyword != "USER":  # the image's user: the processes run as this test's user here
            raise NotImplementedError(f"Dockerfile instruction not replayed by this test: {line}")
    assert tree.config == image_config(target), "the build and deploy_files read the Dockerfile differently"
    return tree


def _base(tree: ImageTree, image: str) -> None:
    """A `python:X.Y-...` base: a new virtualenv of this machine's Python X.Y, without pip (the
    image's pip is the one `_run` gives, which installs into it)."""
    name, _, tag = image.partition(":")
    version = ".".join(map(str, sys.version_info[:2]))
    if name != "python" or not tag.startswith(version + "-"):
        raise NotImplementedError(f"base image {image}: this test has Python {version} only")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(tree.venv)], check=True, timeout=120)


def _copy_of(base: ImageTree, dest: Path) -> ImageTree:
    tree = ImageTree(dest / "root", dest / "venv", ImageConfig(base.config.workdir, dict(base.config.env)))
    shutil.copytree(base.root, tree.root, symlinks=True)
    shutil.copytree(base.venv, tree.venv, symlinks=True)
    # The installed programs name their interpreter by its path: the copy's own, as in the image.
    old, new = f"#!{base.venv}/bin/", f"#!{tree.venv}/bin/"
    for program in (tree.venv / "bin").iterdir():
        if program.is_file() and not program.is_symlink():
            text = program.read_bytes()
            if text.startswith(old.encode()):
                program.write_bytes(new.encode() + text[len(old):])
    return tree


def _copy(tree: ImageTree, words: list[str], context: Path) -> None:
    if any(word.startswith("--") for word in words):
        raise NotImplementedError(f"COPY {' '.join(words)}: options are not replayed by this test")
    *sources, dest = words
    into = Path(tree.config.workdir, dest)
    target = tree.path(str(into))
    as_directory = len(sources) > 1 or dest.endswith("/")
    for source in sources:
        matches = sorted(glob.glob(str(context / source)))
        assert matches, f"COPY {source}: not in the build context"
        for match in map(Path, matches):
            if match.is_dir():  # its contents, as Docker copies a directory
                shutil.copytree(match, target, dirs_exist_ok=True)
            else:
                (target if as_directory else target.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(match, target / match.name if as_directory else target)


def _run(tree: ImageTree, command: str, dest: Path) -> None:
    program = shlex.split(command)[0]
    if program in OS_SETUP:
        return
    if program != "pip":
        raise NotImplementedError(f"RUN {command}: not replayed by this test")
    # The image's `pip`: this test's pip, installing into the image's virtualenv.
    shim = dest / "build-bin" / "pip"
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pip '
                    f'--python {shlex.quote(str(tree.venv / "bin" / "python"))} "$@"\n')
    shim.chmod(0o755)
    # The build host's network settings (proxy, certificates, package index) reach the build as they
    # would reach `docker build`; nothing of this test's Python does.
    host = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "GEOQUEUE_"))}
    env = {**host, **tree.config.env, "PIP_NO_COMPILE": "1", "PATH": f"{shim.parent}:{tree.program_path()}"}
    done = subprocess.run(["sh", "-c", command], cwd=tree.path(tree.config.workdir), env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"RUN {command} failed:\n{(done.stdout + done.stderr)[-4000:]}"

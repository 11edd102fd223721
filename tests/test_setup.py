"""setup.sh, the README's set-up command, run against stand-in commands: it installs the project, and finds Chromium
or installs Debian's with apt-get (through sudo unless root), or says what to run on other systems."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT

SETUP = PROJECT_ROOT / "setup.sh"
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'


def run_setup(tmp_path: Path, fakes: dict[str, str], uid: int = 0) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run setup.sh with PATH holding only stand-ins: ``python`` and each of ``fakes`` (name -> shell body) record
    their calls; ``id -u`` prints ``uid``. Returns the process and the recorded calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "basename", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    scripts = {"python": RECORDER, "id": f"#!/bin/sh\necho {uid}\n", **fakes}
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {"PATH": str(bin_dir), "CALLS": str(calls), "HOME": str(tmp_path)}
    proc = subprocess.run([shutil.which("bash"), str(SETUP)], env=env, capture_output=True, text=True, timeout=60)
    return proc, calls.read_text().splitlines() if calls.is_file() else []


def test_chromium_on_path_installs_the_project_only(tmp_path):
    proc, calls = run_setup(tmp_path, {"chromium": RECORDER, "apt-get": RECORDER})
    assert proc.returncode == 0, proc.stderr
    assert calls == ["python -m pip install -e ."]
    assert "chromium" in proc.stdout


@pytest.mark.parametrize("uid, prefix", [(0, ""), (1000, "sudo ")])
def test_missing_chromium_is_installed_with_apt_get(tmp_path, uid, prefix):
    sudo = '#!/bin/sh\necho "sudo $*" >> "$CALLS"\nexec "$@"\n'
    proc, calls = run_setup(tmp_path, {"apt-get": RECORDER, "sudo": sudo}, uid=uid)
    assert proc.returncode == 0, proc.stderr
    expected = ["python -m pip install -e ."]
    for args in ("update -qq", "install -y -qq chromium"):
        expected += [f"sudo apt-get {args}", f"apt-get {args}"] if prefix else [f"apt-get {args}"]
    assert calls == expected


def test_without_apt_get_it_says_what_to_run(tmp_path):
    proc, calls = run_setup(tmp_path, {})
    assert proc.returncode == 1
    assert calls == ["python -m pip install -e ."]
    assert "dnf install -y chromium" in proc.stderr and "brew install" in proc.stderr


def test_ci_runs_exactly_the_readme_commands():
    commands = [line for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["bash setup.sh", "python -m pytest -q"]
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert all(f"\n{c} " in readme for c in commands)
    assert os.access(SETUP, os.X_OK)

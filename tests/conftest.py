"""Shared fixtures and helpers: the bundled real-image sample and small copies of it, tiny training configs and
their flags, script runs (a fresh interpreter, or in process with a timeout), the CPU split between pytest-xdist
workers, web apps started on a free port, and photos in odd colour modes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from core.config import BUNDLED_SAMPLE_ROOT, PROJECT_ROOT, DataConfig, ExperimentConfig, LoggingConfig, \
    ModelConfig, TrainingConfig

PHASE1_SCRIPT = PROJECT_ROOT / "experiments" / "phase1_subset_20pct" / "train.py"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``pyproject.toml`` runs ``-n 2``) each worker gets its share of the CPUs as intra-op
    threads, and so do the scripts it starts (``OMP_NUM_THREADS``): two workers on a 2-core CPU with two threads
    each would spin against each other. Tests that compare runs bit for bit run both sides at that count."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers:
        import torch

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cpus // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled sample (train/ and val/ with 10 WNID folders)."""
    dst = tmp_path / "imagenette_sample"
    shutil.copytree(BUNDLED_SAMPLE_ROOT, dst)
    return dst


def tiny_config(tmp_path: Path, root: Path | None = None, **sections: dict[str, Any]) -> ExperimentConfig:
    """A config that trains ResNet-18 at 32 px on a slice of the bundled sample in a few seconds on a CPU.

    ``sections`` override fields, e.g. ``training={"epochs": 2}``.
    """
    data = dict(root=root, fraction=0.25, val_fraction=0.5, image_size=32, val_image_size=32, num_workers=0,
                index_cache_dir=tmp_path / "cache")
    model = dict(name="resnet18")
    training = dict(epochs=2, batch_size=16, lr=0.05, warmup_epochs=0, save_every_epochs=1, keep_best_k=2,
                    resume="none", log_every_steps=1)
    logging_ = dict(output_dir=tmp_path / "run", progress_bar=False)
    data.update(sections.get("data", {}))
    model.update(sections.get("model", {}))
    training.update(sections.get("training", {}))
    logging_.update(sections.get("logging", {}))
    return ExperimentConfig(data=DataConfig(**data), model=ModelConfig(**model),
                            training=TrainingConfig(**training), logging=LoggingConfig(**logging_))


def cli_args(cfg: ExperimentConfig) -> list[str]:
    """Command-line flags setting every field of ``cfg``, so a script's own YAML layers change nothing."""
    args: list[str] = []
    for section, values in cfg.to_dict().items():
        for name, value in values.items():
            args += [f"--{section}.{name}", json.dumps(value) if not isinstance(value, str) else value]
    return args


def run_script(script: Path, args: list[str], timeout: float = 600, **popen: Any) -> subprocess.CompletedProcess:
    """Run an experiment script in a fresh interpreter from an unrelated cwd (scripts must not depend on it)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run([sys.executable, str(script), *args], cwd="/", env=env, capture_output=True, text=True,
                          timeout=timeout, **popen)


class ScriptTimeout(BaseException):
    """An in-process script run outlasted its timeout (:func:`run_script_in_process`). A BaseException, as
    KeyboardInterrupt: the code it interrupts may catch Exception (a corrupt image skipped) but not this."""


def run_script_in_process(script: Path, args: list[str], threads: Optional[int] = None,
                          timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an experiment script as ``__main__`` in this interpreter, as :func:`run_script` runs it in a fresh one:
    the same arguments, its stdout, stderr (the library's log lines) and exit status. It saves the 7 s a fresh
    interpreter spends importing torch, torchvision and albumentations (measured on the 2-core CPU). A script run
    only this way is not checked for what a fresh interpreter adds (its imports from an unrelated cwd); the phase
    scripts, the study and the benchmarks also run with :func:`run_script` or a subprocess of their own.

    The script's folder leads ``sys.path`` while it runs, as in a fresh interpreter. What a run sets for the whole
    process is put back afterwards, so that it cannot leak into later tests: the library's log handlers (removed,
    as the next script's ``setup_logging`` would), ``torch.use_deterministic_algorithms`` and the cuDNN flags
    (``--training.deterministic``), the intra-op thread count and ``os.environ`` (``CUBLAS_WORKSPACE_CONFIG``).
    ``threads`` sets the intra-op thread count for the run (as ``OMP_NUM_THREADS`` does for a fresh interpreter;
    None keeps this one's). ``timeout`` (seconds, as :func:`run_script`'s) arms ``SIGALRM`` when called from the
    main thread (an outer timer is put back with what it had left): a run still going then raises
    :class:`ScriptTimeout` in Python code, with the tail of its stderr, so a hang in Python fails its test instead
    of stalling the suite. A wait inside C code that does not return to the interpreter is not interrupted.

    Raises:
        ScriptTimeout: the run took longer than ``timeout``.
    """
    import contextlib
    import io
    import runpy
    import signal
    import threading
    import time

    import torch

    from core.logger import remove_library_handlers

    out, err, code = io.StringIO(), io.StringIO(), 0
    argv, path, environ = sys.argv, list(sys.path), dict(os.environ)
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    saved_threads = torch.get_num_threads()
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(Path(script).resolve().parent))  # as `python script.py` does (its sibling modules)
    if threads is not None:
        torch.set_num_threads(threads)
    alarm = threading.current_thread() is threading.main_thread()

    def expired(signum, frame):
        raise ScriptTimeout(f"{Path(script).name} {' '.join(args)} ran past its {timeout:g} s timeout; its stderr "
                            f"ended with:\n{err.getvalue()[-3000:]}")

    try:
        if alarm:
            previous_handler = signal.signal(signal.SIGALRM, expired)
            outer_left, started = signal.setitimer(signal.ITIMER_REAL, timeout)[0], time.monotonic()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                runpy.run_path(str(script), run_name="__main__")
        finally:  # disarmed before anything is put back: a late alarm cannot cut the restoring short
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, signal.SIG_DFL if previous_handler is None else previous_handler)
                if outer_left > 0:  # a timer armed outside this call: what it had left, at least a moment
                    signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 1e-3))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv, sys.path[:] = argv, path
        os.environ.clear()
        os.environ.update(environ)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
        torch.set_num_threads(saved_threads)
        remove_library_handlers()
    return subprocess.CompletedProcess([str(script), *args], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS's pick). Another process can take it before a server binds
    it (a second pytest-xdist worker): :func:`start_web_app` copes; an init method that needs no port (``file://``)
    is safer for ``torch.distributed``."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_web_app(cmd: list[str], log: Path, what: str, timeout: float = 180, tries: int = 3,
                  **popen: Any) -> tuple[subprocess.Popen, str]:
    """Start the Gradio app ``cmd + ["--port", PORT]`` on a free port (its output appended to ``log``) and return
    it and its URL once it answers there. It counts as up only after printing its own URL (Gradio's ``Running on
    local URL: ...:PORT``), so a page answered by another worker's server that took the port first is not taken
    for this one; an app that lost its port that way exits (Gradio: ``Cannot find empty port``) and is started
    again on a new one, ``tries`` times in all. Fails the test with the log's tail if it exits otherwise or a try
    takes longer than ``timeout`` seconds."""
    import re
    import time
    import urllib.error
    import urllib.request

    env = {**popen.pop("env", os.environ), "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    for attempt in range(1, tries + 1):
        port, start = free_port(), log.stat().st_size if log.exists() else 0
        with log.open("a") as out:
            proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    **popen)
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + timeout
        while True:
            said = log.read_bytes()[start:].decode(errors="replace")  # start: a byte offset
            if proc.poll() is not None:
                if "Cannot find empty port" in said and attempt < tries:
                    break  # another process took the port: a new one
                pytest.fail(f"{what} did not start (exit code {proc.poll()}):\n{said[-3000:]}")
            if re.search(rf"Running on local URL: .*:{port}(\D|$)", said, re.M):
                try:
                    urllib.request.urlopen(url, timeout=5)
                    return proc, url
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{what} did not answer on {url} within {timeout:g} s:\n{said[-3000:]}")
            time.sleep(0.3)
    raise AssertionError("unreachable")


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a shared CPU extra threads spin."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def convert_modes(path: Path, tmp: Path) -> dict[str, Path]:
    """Copies of a real photo in the odd colour modes a crawl of ImageNet holds: grayscale and CMYK JPEGs, RGBA,
    palette and 16-bit PNGs (mode → file)."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    out = {}
    for mode, fmt in (("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG")):
        p = tmp / f"{mode.replace(';', '')}.{fmt.lower()}"
        (img.convert("L").convert(mode) if mode == "I;16" else img.convert(mode)).save(p, fmt)
        out[mode] = p
    return out

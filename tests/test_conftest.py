"""The suite's own helpers (tests/conftest.py) that other tests trust: an in-process script run."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from conftest import ScriptTimeout, run_script_in_process


def test_an_in_process_run_reports_like_a_process_and_a_hang_fails_at_its_timeout(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import os, sys\nos.environ['LEAKED'] = '1'\nprint('out', sys.argv[1:])\n"
                      "print('err', file=sys.stderr)\nsys.exit(3)\n")
    handler, argv = signal.getsignal(signal.SIGALRM), list(sys.argv)
    proc = run_script_in_process(script, ["--x", "1"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out ['--x', '1']\n", "err\n")
    assert "LEAKED" not in os.environ and sys.argv == argv  # what the run set is put back
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

    script.write_text("import os, sys, time\nos.environ['LEAKED'] = '1'\nprint('working', file=sys.stderr)\n"
                      "try:\n    time.sleep(30)\nexcept Exception:\n    pass\n")  # swallows Exception, not this
    signal.setitimer(signal.ITIMER_REAL, 50)  # an outer timer (as pytest-timeout's): put back with what it had left
    def outer(*_):
        pytest.fail("the outer timer fired")

    previous = signal.signal(signal.SIGALRM, outer)
    try:
        started = time.perf_counter()
        with pytest.raises(ScriptTimeout, match=r"script.py --y ran past its 0.5 s timeout; its stderr ended with:"
                                                r"\nworking"):
            run_script_in_process(script, ["--y"], timeout=0.5)
        assert time.perf_counter() - started < 10
        assert "LEAKED" not in os.environ and sys.argv == argv  # put back after a timeout too
        assert 40 < signal.getitimer(signal.ITIMER_REAL)[0] <= 50 and signal.getsignal(signal.SIGALRM) is outer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert signal.getsignal(signal.SIGALRM) is handler

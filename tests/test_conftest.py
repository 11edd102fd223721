"""The suite's own helpers (tests/conftest.py) that other tests trust: an in-process script run, a web app started
on a port another process may take first."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request

import pytest

import conftest
from conftest import ScriptTimeout, run_script_in_process, start_web_app


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


APP = """import http.server, sys
port = int(sys.argv[sys.argv.index('--port') + 1])
try:
    server = http.server.HTTPServer(('127.0.0.1', port), http.server.SimpleHTTPRequestHandler)
except OSError:
    sys.exit(f'OSError: Cannot find empty port in range: {port}-{port}.')  # as Gradio says it
print(f'* Running on local URL:  http://127.0.0.1:{port}')
(open('served', 'w').write(str(port)), server.serve_forever())
"""


def test_a_web_app_that_loses_its_port_to_another_process_starts_again_on_a_new_one(tmp_path, monkeypatch):
    """The port is taken between the pick and the bind (as a second pytest-xdist worker's server can): a page
    answers there, but not this app's; the helper waits for the app's own URL line, sees it exit, and starts it on
    a new port."""
    (tmp_path / "app.py").write_text(APP)
    with socket.socket() as taken:  # another process's server on the first port picked
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        picks = iter([taken.getsockname()[1], conftest.free_port()])
        monkeypatch.setattr(conftest, "free_port", lambda: next(picks))
        proc, url = start_web_app([sys.executable, "app.py"], tmp_path / "app.log", "the app", timeout=60,
                                  cwd=tmp_path)
        try:
            assert url.endswith(f":{(tmp_path / 'served').read_text()}/") and proc.poll() is None
            assert url != f"http://127.0.0.1:{taken.getsockname()[1]}/"
            urllib.request.urlopen(url, timeout=5)
            assert (tmp_path / "app.log").read_text().count("Cannot find empty port") == 1
        finally:
            proc.kill()
            proc.wait()
    monkeypatch.setattr(conftest, "free_port", lambda: int((tmp_path / "served").read_text()))
    (tmp_path / "app.py").write_text("import sys\nsys.exit('ImportError: no gradio')\n")
    with pytest.raises(pytest.fail.Exception, match="the app did not start .exit code 1.:\n.*no gradio"):
        start_web_app([sys.executable, "app.py"], tmp_path / "app.log", "the app", timeout=60, cwd=tmp_path)

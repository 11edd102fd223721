"""The label review page in a real browser: Debian's Chromium driven by Playwright reviews 10 flagged images with
buttons and keyboard shortcuts, the server is killed mid-way and restarted, the queue resumes at item 11, a bulk
accept asks for confirmation, and the exported manifest is exactly the decisions, as core.label_noise applies it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from conftest import start_web_app
from core.label_noise import apply_manifest_to, load_manifest
from label_review_helpers import fresh_issues, issues_template, sample_data
from services.label_review import load_issues

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Playwright's own browser download does not work offline; Debian's package does (apt-get install -y chromium).


def _start(issues_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`python -m services.label_review --issues DIR` on a free port, run from an unrelated cwd."""
    return start_web_app([sys.executable, "-m", "services.label_review", "--issues", str(issues_dir)], log,
                         "the review app", timeout=120, cwd="/", env={**os.environ, "OMP_NUM_THREADS": "1"})


def _shown(page) -> int:
    """The sample id on the page."""
    return int(re.search(r"sample (\d+)", page.locator("#item").inner_text()).group(1))


def _wait_for(page, sample_id: int, reviewed: int) -> None:
    page.wait_for_function(
        "([id, n]) => { const i = document.querySelector('#item'), p = document.querySelector('#progress');"
        " return i && p && i.innerText.includes('sample ' + id + ' ') && p.innerText.includes(n + ' of '); }",
        arg=[sample_id, reviewed])


def _wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function("([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
                           arg=[selector, text])


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="domcontentloaded")  # not networkidle: the page keeps its event stream open
    page.wait_for_selector("#item :text('sample ')")
    return page


def _pick(page, dropdown: str, text: str, attempts: int = 3) -> None:
    """Type into a searchable Gradio dropdown, choose the option containing ``text``, and wait until the box shows
    that option's whole label (the typed text alone is shorter: pair labels end in ': <count>').

    A click can land while the option list re-renders under the pointer and be lost (the box keeps the typed text
    and no event reaches the server); the pick is then typed and clicked again, up to ``attempts`` times.

    Raises:
        AssertionError: the box never showed the option's label, with what it showed.
    """
    box = page.locator(f"#{dropdown} input")
    shown = ""
    for _ in range(attempts):
        box.click()
        box.fill("")
        page.keyboard.type(text)
        option = page.locator(f"#{dropdown} li[role=option]", has_text=text).first
        label = option.inner_text().strip()
        option.click()
        try:
            page.wait_for_function("([s, t]) => { const e = document.querySelector(s); return e && e.value === t; }",
                                   arg=[f"#{dropdown} input", label], timeout=10_000)
            return
        except PlaywrightTimeout:
            shown = box.input_value()
    raise AssertionError(f"#{dropdown}: picking {label!r} left the box showing {shown!r} after {attempts} tries")


def _decisions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def issues_dir(tmp_path_factory, tmp_path) -> Path:
    return fresh_issues(issues_template(tmp_path_factory.getbasetemp()), tmp_path / "issues")


class _Server:
    """The review app as a subprocess that the test can kill (SIGKILL: no shutdown hook runs) and start again."""

    def __init__(self, issues_dir: Path, log: Path):
        self.issues_dir, self.log = issues_dir, log
        self.proc, self.url = _start(issues_dir, log)

    def kill_and_restart(self) -> str:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc, self.url = _start(self.issues_dir, self.log)
        return self.url

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def _act(page, how: str, what: str, next_id: int, reviewed: int) -> None:
    """Press a shortcut key or click a button, then wait for the next item and the new count."""
    if how == "key":
        page.locator("body").press(what)
    else:
        page.locator(f"#btn-{what}").click()
    _wait_for(page, next_id, reviewed)


def _check_first_screen(page, issues, shot: Path) -> None:
    items, cl = issues.items, issues.classes
    _wait_for(page, items[0].id, 0)
    assert f"0 of {len(items)} reviewed" in page.locator("#progress").inner_text()
    probs = issues.probs(items[0])
    assert page.locator("#top5 dt").all_inner_texts() == [cl.label(c) for c in probs.argsort()[::-1][:5]]
    info = page.locator("#item").inner_text()
    assert cl.label(items[0].given) in info and cl.label(items[0].suggested) in info
    page.wait_for_function("document.querySelector('#cam-suggested img') !== null")
    page.screenshot(path=str(shot), full_page=True)


def _relabel_to_other(page, issues, other: int, next_id: int, reviewed: int, shot: Path) -> None:
    cl = issues.classes
    page.locator("body").press("o")  # O focuses the class search; the letters typed there are not shortcuts
    page.keyboard.type(cl.short(other))
    page.locator("#other-class li[role=option]", has_text=cl.wnids[other]).first.click()
    page.screenshot(path=str(shot), full_page=True)
    page.locator("#btn-other").click()
    _wait_for(page, next_id, reviewed)


def _check_ten_decisions(decisions: list[dict], issues, other: int) -> None:
    items, wn = issues.items, issues.classes.wnids
    expected = [("keep", wn[items[0].given]), ("relabel", wn[items[1].suggested]), ("remove", None),
                ("skip", None), ("relabel", wn[other]), ("remove", None), ("relabel", wn[items[6].suggested]),
                ("keep", wn[items[7].given]), ("skip", None), ("remove", None)]
    assert [(d["id"], d["decision"], d["label"]) for d in decisions] == \
        [(it.id, dec, lab) for it, (dec, lab) in zip(items, expected)]
    for d, it in zip(decisions, items):
        assert list(d) == ["id", "path", "given", "decision", "label", "time"]
        assert d["path"] == it.path and d["given"] == wn[it.given]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", d["time"])


def _bulk_accept_biggest_pair(page, issues, decisions_file: Path, shot: Path) -> tuple[list[int], int]:
    """Filter on the given -> suggested pair with the most undecided items, bulk-accept it after the confirmation;
    returns the ids that should have been relabelled and their suggested class."""
    items, cl = issues.items, issues.classes
    pairs = [(it.given, it.suggested) for it in items]
    given, suggested = max(set(pairs[10:]), key=lambda gs: (pairs[10:].count(gs), gs))
    in_pair = [p for p in range(len(items)) if pairs[p] == (given, suggested)]
    undecided = [items[p].id for p in in_pair if p >= 10]
    assert len(undecided) >= 2
    _pick(page, "filter-pair", f"{cl.short(given)} → {cl.short(suggested)}")
    _wait_text(page, "#progress", f"of {len(in_pair)} in this view")
    page.get_by_text("Bulk accept", exact=True).click()
    # the slider is set and must read 0 in both its inputs before Bulk is clicked, or the preview counts at the
    # default 0.9. Set once, it sometimes fell back to 0.9 (three of seven runs on 2026-12-06/07, whether typed into
    # its number box or filled as a range; likely the slider mounting as the accordion opens and re-reading its
    # default), so it is set until it holds for half a second.
    holds = ("() => ['range', 'number'].every(t => "
             "Number(document.querySelector(`#bulk-threshold input[type=${t}]`).value) === 0)")
    for _ in range(20):
        page.locator("#bulk-threshold input[type=range]").fill("0")  # input and change fire, as in a drag
        page.wait_for_timeout(500)
        if page.evaluate(holds):
            break
    else:
        pytest.fail("the bulk-accept threshold slider never held 0")
    page.locator("#btn-bulk").click()
    _wait_text(page, "#bulk-confirm-text", f"Relabel {len(undecided)} undecided items")
    assert len(_decisions(decisions_file)) == 10  # nothing is written before Confirm
    page.screenshot(path=str(shot), full_page=True)
    page.locator("#btn-bulk-confirm").click()
    _wait_text(page, "#status", f"Relabelled {len(undecided)} items to the suggestion")
    assert page.locator("#bulk-confirm").is_hidden()
    return undecided, suggested


def _check_export(issues_dir: Path, decisions: list[dict], num_items: int, tmp_path: Path) -> None:
    """`export` writes what the last decisions say, and core.label_noise reads and applies it."""
    out = tmp_path / "manifest"
    r = subprocess.run([sys.executable, "-m", "services.label_review", "export", str(issues_dir), "--out", str(out)],
                       cwd="/", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    last = {d["id"]: d for d in decisions}  # the rule, applied here independently of the library
    reviewed = sum(d["decision"] != "skip" for d in last.values())
    assert f"{reviewed} of {num_items} flagged samples reviewed" in r.stdout
    data = sample_data(tmp_path / "cache")
    manifest = load_manifest(out, data)
    assert sorted(manifest.remove.tolist()) == sorted(i for i, d in last.items() if d["decision"] == "remove")
    relabel = dict(zip(manifest.relabel_ids.tolist(), manifest.relabel_to.tolist()))
    assert relabel == {i: data.class_to_idx[d["label"]] for i, d in last.items() if d["decision"] == "relabel"}
    report = apply_manifest_to(data, manifest)
    assert report.num_after == 600 - len(manifest.remove) and report.num_relabelled == len(relabel)
    labels = dict(zip(data.train_ids.tolist(), data.train_labels.tolist()))
    assert all(labels[i] == c for i, c in relabel.items()) and not set(manifest.remove.tolist()) & set(labels)


def test_review_ten_items_kill_restart_resume_bulk_accept_and_export(issues_dir, tmp_path):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: this test drives Debian's Chromium; install it with "
                    "`apt-get install -y chromium`")

    issues = load_issues(issues_dir)
    ids = [it.id for it in issues.items]
    # the 5th item goes to a class that is neither its given nor its suggested one, picked by typing its name
    other = next(c for c in range(len(issues.classes)) if c not in (issues.items[4].given, issues.items[4].suggested))
    decisions_file = issues_dir / "review" / "decisions.jsonl"
    server = _Server(issues_dir, tmp_path / "server.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
            page = _open(browser, server.url)
            _check_first_screen(page, issues, tmp_path / "review_screen.png")
            _act(page, "button", "keep", ids[1], 1)
            _act(page, "key", "a", ids[2], 2)
            _act(page, "button", "remove", ids[3], 3)
            _act(page, "key", "s", ids[4], 3)  # a skip is not a review
            _relabel_to_other(page, issues, other, ids[5], 4, tmp_path / "other_class.png")
            _act(page, "key", "r", ids[6], 5)

            page = _open(browser, server.kill_and_restart())  # mid-way
            _wait_for(page, ids[6], 5)  # the 6 decisions survived; the queue resumes at item 7
            assert "1 skipped" in page.locator("#progress").inner_text()
            _act(page, "button", "accept", ids[7], 6)
            _act(page, "key", "k", ids[8], 7)
            _act(page, "button", "skip", ids[9], 7)
            _act(page, "key", "r", ids[10], 8)

            page = _open(browser, server.kill_and_restart())
            _wait_for(page, ids[10], 8)  # all 10 decisions are there; the queue resumes at item 11
            assert "showing #11 of" in page.locator("#progress").inner_text()
            page.screenshot(path=str(tmp_path / "resumed_at_11.png"), full_page=True)
            _check_ten_decisions(_decisions(decisions_file), issues, other)

            bulk_ids, suggested = _bulk_accept_biggest_pair(page, issues, decisions_file, tmp_path / "bulk.png")
            browser.close()
    except PlaywrightTimeout as e:  # the page never showed what was awaited: say what the server did meanwhile
        log = (tmp_path / "server.log").read_text()[-3000:]
        pytest.fail(f"{e}\nthe review app's log, last 3,000 characters:\n{log}")
    finally:
        server.stop()

    decisions = _decisions(decisions_file)
    assert sorted(d["id"] for d in decisions[10:]) == sorted(bulk_ids)
    assert all(d["decision"] == "relabel" and d["label"] == issues.classes.wnids[suggested] for d in decisions[10:])
    _check_export(issues_dir, decisions, len(ids), tmp_path)
    print(f"screenshots: {sorted(p.name for p in tmp_path.glob('*.png'))} in {tmp_path}")

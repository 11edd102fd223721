"""The demo in a real browser: Debian's Chromium driven by Playwright uploads photos, reads the top-5 back, toggles
Grad-CAM, and survives a bad upload; the server refuses oversized uploads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import start_web_app
from deployment.app import CAM_LEGEND_PX, MAX_UPLOAD_BYTES
from deployment_helpers import exported_space

CHROMIUM = Path(os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
                or "/usr/bin/chromium")  # found as setup.sh finds it
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Playwright's own browser download does not work offline; Debian's package does (apt-get install -y chromium).


@pytest.fixture(scope="session")
def space(tmp_path_factory) -> Path:
    return exported_space(tmp_path_factory.getbasetemp() / "deployment")


@pytest.fixture(scope="module")
def server(space, tmp_path_factory):
    """`python app.py` run from a copy of the Space folder on 127.0.0.1 and a free port, as a Space would run it."""
    log = tmp_path_factory.mktemp("server") / "app.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc, url = start_web_app([sys.executable, "app.py", "--host", "127.0.0.1"], log, "the app", cwd=space, env=env)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(server):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: this test drives a system Chromium; run `bash setup.sh`, which "
                    "installs Debian's (Playwright's own browser download is not used)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(server, wait_until="networkidle")
        yield page
        browser.close()


def _upload(page, path: Path) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(path))


def _top5(page) -> list[str]:
    page.wait_for_function("document.querySelectorAll('#top5 dt').length === 5")
    return page.locator("#top5 dt").all_inner_texts()


def test_upload_read_top5_and_show_grad_cam(page, space, tmp_path):
    from deployment.app import Predictor, load_image

    photo = space / "examples" / "tench.jpg"
    expected = list(Predictor(space / "model").predict(load_image(photo).rgb))
    _upload(page, photo)
    page.wait_for_function("document.querySelector('#status').innerText.includes('Most likely')")
    labels = [t.strip() for t in _top5(page)]
    assert labels == expected
    assert page.locator("#top5 dd").count() == 5 and page.locator("#top5 dd").first.inner_text().endswith("%")
    assert page.locator("#gradcam img").count() == 0  # the overlay panel is hidden while the toggle is off

    page.locator("#show-cam input[type=checkbox]").check()
    overlay = page.locator("#gradcam img")
    overlay.wait_for(state="visible")
    page.wait_for_function("(() => { const i = document.querySelector('#gradcam img');"
                           " return i && i.complete && i.naturalWidth > 0; })()")
    assert overlay.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [224, 224 + CAM_LEGEND_PX]  # + legend
    assert "where the model looked" in page.locator("#status").inner_text()
    assert "only 2 x 2 cells" in page.locator("#status").inner_text()  # 64 px model: a coarse map, said so
    assert "ResNet-18" in page.locator("#model-info").inner_text()
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'demo.png'}")
    assert (tmp_path / "demo.png").stat().st_size > 20_000


def test_bad_upload_shows_a_message_and_the_page_keeps_working(page, space, tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("definitely not a JPEG")
    _upload(page, bad)
    page.wait_for_function("document.querySelector('#status').innerText.includes('not an image')")
    # the unreadable file is taken out of the photo box (no broken-image icon), and the message stays
    page.wait_for_function("document.querySelectorAll('#photo img').length === 0")
    page.wait_for_timeout(1000)
    assert "not an image" in page.locator("#status").inner_text()
    assert page.locator("#top5 dt").count() == 0
    page.screenshot(path=str(tmp_path / "bad_upload.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'bad_upload.png'}")
    _upload(page, space / "examples" / "golf_ball.jpg")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Most likely')")
    assert len(_top5(page)) == 5


def test_api_link_and_the_two_named_endpoints(page, server, space):
    from gradio_client import Client, handle_file

    from deployment.app import Predictor, load_image

    link = page.get_by_text("Use via API")
    assert link.is_visible()
    client = Client(server, verbose=False)
    assert sorted(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == \
        ["/predict", "/predict_with_cam"]
    photo = space / "examples" / "tench.jpg"
    top = client.predict(handle_file(str(photo)), api_name="/predict")
    expected = Predictor(space / "model").predict(load_image(photo).rgb)
    assert [c["label"] for c in top["confidences"]] == list(expected)
    top, overlay, status = client.predict(handle_file(str(photo)), api_name="/predict_with_cam")
    assert top["label"] == next(iter(expected)) and Path(overlay).is_file() and "Most likely" in status


def test_server_refuses_oversized_uploads(server):
    body = b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.jpg\"\r\n" \
           b"Content-Type: image/jpeg\r\n\r\n" + b"\0" * (MAX_UPLOAD_BYTES + 1024) + b"\r\n--b--\r\n"
    request = urllib.request.Request(server + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=b"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code == 413

"""End to end: the real page in headless Chromium against a live uvicorn server.

Uploads a gallery image through the page's file input and checks the ranked list the page draws.
Skipped (with the reason) when Debian's chromium or the Playwright client is missing.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

CHROMIUM = os.environ.get("REIDKIT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def _require_browser():
    if not (os.path.isfile(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"no browser: {CHROMIUM} not found (apt-get install chromium) - web UI end-to-end test skipped")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright python client is not installed - web UI end-to-end test skipped")
    return CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, image_gallery, tiny_model):
    import uvicorn

    from reidkit.retrieval.encoder import encode_gallery
    from reidkit.retrieval.index import GalleryIndex
    from reidkit.retrieval.server import create_app

    root, _ = image_gallery
    tmp_path = tmp_path_factory.mktemp("live")
    feats, pids, camids, paths, roots, info = encode_gallery(root, tiny_model)
    GalleryIndex.build(feats, pids, camids, paths, kind="flat", roots=roots, model=info).save(tmp_path / "ix")
    app = create_app(tmp_path / "ix", model=tiny_model, token="tok3n")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", pids
    server.should_exit = True
    thread.join(timeout=10)


def test_upload_in_the_page_shows_the_ranked_gallery(live_server, image_gallery, tmp_path):
    chromium = _require_browser()
    from playwright.sync_api import sync_playwright

    base, pids = live_server
    _, paths = image_gallery
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/?token=tok3n")
            page.wait_for_selector("#gallery .card")  # the gallery listing loaded through the token
            assert "12 images" in page.inner_text("#info")
            page.fill("#k", "6")
            page.set_input_files("#upload", paths[7])
            page.click("#search-upload")
            page.wait_for_function("document.querySelectorAll('#results .result').length === 6")
            cards = page.query_selector_all("#results .result")
            ranks = [int(c.get_attribute("data-rank")) for c in cards]
            scores = [float(c.get_attribute("data-score")) for c in cards]
            ids = [int(c.get_attribute("data-id")) for c in cards]
            assert ranks == [1, 2, 3, 4, 5, 6]
            assert ids[0] == 7 and scores[0] > 0.9999  # the uploaded gallery image finds itself first
            assert scores == sorted(scores, reverse=True)
            assert page.inner_text("#error") == ""
            # every result image loaded from the server (through the token in its URL)
            loaded = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
            assert loaded and all(loaded)
            # a gallery click searches by that item; the query identity's matches are marked
            page.click("#gallery .card >> nth=2")
            page.wait_for_function("document.querySelector('#results .result').dataset.id === '2'")
            assert page.query_selector("#results .result.match") is not None
            # the re-ranking toggle re-runs the same query, re-ranked on the server
            options = page.eval_on_selector_all("#rerank option", "os => os.map(o => o.value)")
            if "kreciprocal" in options:
                page.select_option("#rerank", "kreciprocal")
                page.wait_for_function("document.querySelector('#status').textContent.includes('re-ranked: kreciprocal')")
                assert len(page.query_selector_all("#results .result")) == 6
                page.select_option("#rerank", "none")
            # a bad upload shows the server's JSON error in the page
            bad = tmp_path / "not_an_image.jpg"
            bad.write_bytes(b"plain text, not a picture")
            page.set_input_files("#upload", str(bad))
            page.click("#search-upload")
            page.wait_for_function("document.querySelector('#error').textContent.includes('not an image')")
        finally:
            browser.close()


def test_page_without_token_shows_the_error(live_server):
    chromium = _require_browser()
    from playwright.sync_api import sync_playwright

    base, _ = live_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            page = browser.new_page()
            resp = page.goto(base + "/")
            assert resp.status == 401 and "token" in page.content()
        finally:
            browser.close()

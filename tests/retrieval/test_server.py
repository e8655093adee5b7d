"""The web UI's API through FastAPI's TestClient: search, gallery listing, tokens, traversal, uploads."""
from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from reidkit.retrieval.index import GalleryIndex
from reidkit.retrieval.server import create_app
from reidkit.retrieval.uploads import UploadLimits


@pytest.fixture
def gallery_index(tmp_path, image_gallery, features):
    """240 feature vectors; the first 12 carry real image files of ``image_gallery``."""
    root, paths = image_gallery
    feats, pids, camids = features
    names = paths + [str(root / f"virtual/{i:04d}.jpg") for i in range(len(paths), len(feats))]
    idx = GalleryIndex.build(feats, pids, camids, names, kind="flat")
    idx.save(tmp_path / "ix")
    return tmp_path / "ix", feats, pids


@pytest.fixture
def client(gallery_index):
    return TestClient(create_app(gallery_index[0]))


def test_info_and_page(client):
    info = client.get("/api/info").json()
    assert info["count"] == 240 and info["dim"] == 32 and info["identities"] == 40 and info["cameras"] == 6
    assert info["upload"] is False and info["rerank"][0] == "none"
    page = client.get("/")
    assert page.status_code == 200 and "reidkit gallery search" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # offline: no CDN


def test_search_by_item_matches_brute_force(client, gallery_index, brute_force):
    _, feats, pids = gallery_index
    body = client.get("/api/search", params={"item": 30, "k": 7}).json()
    ref_ids, ref_scores = brute_force(feats, feats[30:31], 7)
    assert [r["id"] for r in body["results"]] == ref_ids[0].tolist()
    np.testing.assert_allclose([r["score"] for r in body["results"]], ref_scores[0], atol=1e-5)
    assert [r["rank"] for r in body["results"]] == list(range(1, 8))
    first = body["results"][0]
    assert first["pid"] == pids[30] and body["query"]["id"] == 30


def test_gallery_listing_and_filters(client):
    page = client.get("/api/gallery", params={"offset": 6, "limit": 5}).json()
    assert page["total"] == 240 and [it["id"] for it in page["items"]] == [6, 7, 8, 9, 10]
    only = client.get("/api/gallery", params={"pid": 3}).json()
    assert only["total"] == 6 and {it["pid"] for it in only["items"]} == {3}
    assert page["items"][0]["url"].startswith("/images/0/")


def test_gallery_image_served_and_traversal_refused(client, tmp_path):
    url = client.get("/api/gallery", params={"limit": 1}).json()["items"][0]["url"]
    img = client.get(url)
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    for bad in ("/images/0/..%2F..%2Fetc%2Fpasswd", "/images/0/%2Fetc%2Fpasswd", "/images/0/..%2Fix%2Fmeta.json",
                "/images/0/x%00.jpg", "/images/7/a.jpg", "/images/0/virtual/0100.jpg"):
        r = client.get(bad)
        assert r.status_code in (400, 403, 404), bad
        assert "error" in r.json(), bad


def test_errors_are_json(client):
    for url, status, text in (("/api/search?item=99999", 404, "gallery id"),
                              ("/api/search?item=1&k=0", 400, "k must be between"),
                              ("/api/search?item=abc", 400, "invalid request"),
                              ("/api/search?item=1&rerank=magic", 400, "re-ranking"),
                              ("/nothing/here", 404, "no such route")):
        r = client.get(url)
        assert r.status_code == status, url
        assert text in r.json()["error"], url
    r = client.post("/api/search", content=b"abc")
    assert r.status_code == 400 and "--model" in r.json()["error"]


def test_token_protects_every_route(gallery_index):
    c = TestClient(create_app(gallery_index[0], token="s3cret"))
    auth = {"Authorization": "Bearer s3cret"}
    url = c.get("/api/gallery", params={"limit": 1}, headers=auth).json()["items"][0]["url"]
    for path in ("/", "/api/info", "/api/gallery", "/api/search?item=0", url, "/nothing"):
        r = c.get(path)
        assert r.status_code == 401 and "token" in r.json()["error"], path
        assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get(path, cookies={"reidkit_token": "wrong"}).status_code == 401
        ok = c.get(path, headers=auth)
        assert ok.status_code == (404 if path == "/nothing" else 200), path
    assert c.post("/api/search", content=b"x").status_code == 401


def test_token_goes_into_a_cookie_not_into_urls(gallery_index):
    """The fault suite: '?token=' was on every <img> URL (and so in every access-log line)."""
    c = TestClient(create_app(gallery_index[0], token="s3cret"))
    assert c.get("/?token=wrong", follow_redirects=False).status_code == 401
    assert c.get("/api/info?token=s3cret").status_code == 401  # only the page accepts it in a URL
    r = c.get("/?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "reidkit_token=s3cret" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    c.cookies.set("reidkit_token", "s3cret")
    items = c.get("/api/gallery").json()["items"]
    assert items and all("token" not in (it["url"] or "") for it in items)
    assert c.get(items[0]["url"]).status_code == 200 and c.get("/").status_code == 200
    page = c.get("/").text
    assert "withToken" not in page and "Bearer" not in page


def test_access_log_redacts_the_token():
    import logging

    from reidkit.retrieval.server import RedactTokenFilter, log_config

    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:5000", "GET", "/?token=s3cret&k=5", "1.1", 303), None)
    assert RedactTokenFilter().filter(rec)
    line = rec.getMessage()
    assert "s3cret" not in line and "token=<redacted>&k=5" in line
    cfg = log_config()
    assert all("redact_token" in h["filters"] for h in cfg["handlers"].values())


def test_serve_start_up_line_does_not_print_the_token(monkeypatch, gallery_index):
    from typer.testing import CliRunner

    import reidkit.retrieval.server as server
    from reidkit.cli.main import app

    monkeypatch.setattr(server, "serve", lambda *a, **k: None)
    r = CliRunner().invoke(app, ["serve", str(gallery_index[0]), "--token", "s3cret"])
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.output and "?token=<your token>" in r.output


@pytest.fixture(scope="module")
def model_client(tmp_path_factory, image_gallery, tiny_model):
    """A server over the image gallery embedded by the tiny model, with uploads enabled."""
    from reidkit.retrieval.encoder import encode_gallery

    root, _ = image_gallery
    feats, pids, camids, paths, roots, info = encode_gallery(root, tiny_model)
    idx = GalleryIndex.build(feats, pids, camids, paths, kind="flat", roots=roots, model=info)
    folder = tmp_path_factory.mktemp("mix") / "ix"
    idx.save(folder)
    app = create_app(folder, model=tiny_model, limits=UploadLimits(max_bytes=200_000, max_pixels=1_000_000))
    return TestClient(app), idx


def test_upload_of_a_gallery_image_finds_itself(model_client, image_gallery):
    client, idx = model_client
    _, paths = image_gallery
    assert client.get("/api/info").json()["upload"] is True
    data = open(paths[4], "rb").read()
    raw = client.post("/api/search?k=5", content=data, headers={"content-type": "image/jpeg"})
    multi = client.post("/api/search?k=5", files={"image": ("q.jpg", data, "image/jpeg")})
    for r in (raw, multi):
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert len(res) == 5 and res[0]["id"] == 4 and res[0]["score"] > 0.9999
        assert [x["rank"] for x in res] == [1, 2, 3, 4, 5]
        assert all(a["score"] >= b["score"] for a, b in zip(res, res[1:]))
    assert multi.json()["query"]["name"] == "q.jpg"
    # the same ranking as searching by the stored gallery vector
    by_item = client.get("/api/search?item=4&k=5").json()["results"]
    assert [x["id"] for x in by_item] == [x["id"] for x in raw.json()["results"]]


def test_upload_validation_over_http(model_client):
    client, _ = model_client
    big = client.post("/api/search", content=b"\xff" * 300_000, headers={"content-type": "image/jpeg"})
    assert big.status_code == 413 and "exceeds the limit" in big.json()["error"]
    text = client.post("/api/search", files={"image": ("x.jpg", b"not an image at all", "image/jpeg")})
    assert text.status_code == 415 and "x.jpg: not an image" in text.json()["error"]
    buf = io.BytesIO()
    Image.new("RGB", (2000, 2000)).save(buf, "PNG")  # 4 Mpx > this server's 1 Mpx limit
    bomb = client.post("/api/search", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert bomb.status_code == 413 and "decompression bomb" in bomb.json()["error"]
    nofile = client.post("/api/search", files={"other": ("x.jpg", b"abc", "image/jpeg")})
    assert nofile.status_code == 400 and "'image'" in nofile.json()["error"]


def test_upload_is_decoded_off_the_event_loop(model_client, image_gallery, monkeypatch):
    """Decoding 16 uploads on the event loop stalled /api/info for 2 s: it runs in a worker thread."""
    import asyncio

    import reidkit.retrieval.server as server

    client, _ = model_client
    _, paths = image_gallery
    seen = []
    real = server.decode_upload

    def spy(*args):
        try:
            asyncio.get_running_loop()
            seen.append("event loop")
        except RuntimeError:
            seen.append("worker thread")
        return real(*args)

    monkeypatch.setattr(server, "decode_upload", spy)
    r = client.post("/api/search?k=3", content=open(paths[1], "rb").read(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and seen == ["worker thread"]

"""``reidkit serve``: a small web UI over a gallery index (FastAPI; one static page, no build step).

Routes (all behind the optional token). The token travels in a header or a cookie, never in the
URLs the page makes: ``Authorization: Bearer T`` (programs), or the ``reidkit_token`` cookie that
``GET /?token=T`` sets (HttpOnly, SameSite=Strict) before redirecting to ``/``, so a person opens
the page once with the token and ``<img>`` URLs carry nothing. The access log redacts ``token=``.

* ``GET  /``                          the page (``static/index.html``)
* ``GET  /api/info``                  index size, kind, identities, whether uploads / re-ranking work
* ``GET  /api/gallery``               a page of gallery items (``offset``, ``limit``, ``pid``, ``camid``)
* ``GET  /api/search?item=ID``        rank the gallery for gallery image ``ID``
* ``POST /api/search``                rank the gallery for an uploaded image (raw body or multipart
                                      field ``image``); needs a model
* ``GET  /images/{root}/{path}``      a gallery image, only from inside the index's roots

Both searches take ``k`` and ``rerank`` (``none`` or a method of :mod:`reidkit.retrieval.rerank_topk`).
Every error is a JSON body ``{"error": "..."}`` with a fitting status, which the page shows.
"""
from __future__ import annotations

import copy
import hmac
import logging
import re
import threading
from urllib.parse import quote
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from reidkit.retrieval.gallery_files import GalleryPathError, resolve_gallery_file
from reidkit.retrieval.index import GalleryIndex, IndexFileError
from reidkit.retrieval.uploads import UploadError, UploadLimits, check_declared_length, decode_upload

STATIC = Path(__file__).with_name("static")
MAX_K = 200
TOKEN_COOKIE = "reidkit_token"
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']*", re.IGNORECASE)


def redact_token(text: str) -> str:
    """``...?token=s3cret&k=5`` -> ``...?token=<redacted>&k=5`` (for logs and printed URLs)."""
    return _TOKEN_IN_TEXT.sub(r"\1<redacted>", text)


class RedactTokenFilter(logging.Filter):
    """A logging filter that redacts ``token=`` in a record's message and arguments (uvicorn's
    access log line carries the request's full path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_token(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_token(a) if isinstance(a, str) else a for a in record.args)
        return True


def log_config() -> dict:
    """uvicorn's default logging config with :class:`RedactTokenFilter` on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["redact_token"] = {"()": f"{__name__}.RedactTokenFilter"}
    for handler in cfg["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "redact_token"]
    return cfg


def create_app(index: GalleryIndex | str | Path, model: str | Path | None = None, token: str | None = None,
               limits: UploadLimits = UploadLimits()):
    """The FastAPI app for ``index``; ``model`` (a reidkit model file) enables image uploads."""
    from reidkit.retrieval import rerank_topk

    if not isinstance(index, GalleryIndex):
        index = GalleryIndex.load(index)
    encoder = None
    if model is not None:
        from reidkit.retrieval.encoder import ImageEncoder

        encoder = ImageEncoder.for_index(model, index)
    methods = ["none", *rerank_topk.available()]  # imports the re-rankers (torch) now, not on a request
    lock = threading.Lock()  # faiss search and torch forward are run one at a time (2-core servers)
    app = FastAPI(title="reidkit gallery search", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def token_ok(given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if not token:
            return await call_next(request)
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE, "")
        in_url = request.query_params.get("token")
        if in_url is not None and request.url.path == "/":
            # The one place a token may come in a URL: a person opening the page. Keep it in a
            # cookie and send the browser to the clean URL, so it leaves the address bar and history.
            if not token_ok(in_url):
                return error(401, "wrong token in /?token=...")
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
            return resp
        if not token_ok(given):
            return error(401, "missing or wrong token: open the page once as /?token=YOUR_TOKEN (it is then "
                              "kept in a cookie), or send the header 'Authorization: Bearer YOUR_TOKEN'")
        return await call_next(request)

    async def known_error(request, exc):
        return error(getattr(exc, "status", 400), str(exc))

    for cls in (UploadError, GalleryPathError, IndexFileError, ValueError):
        app.add_exception_handler(cls, known_error)

    def describe(i: int) -> dict:
        r = int(index.items.root[i])
        url = f"/images/{r}/{quote(index.items.relpaths[i])}" if r >= 0 else None
        return {"id": i, "pid": int(index.items.pids[i]), "camid": int(index.items.camids[i]), "url": url,
                "name": index.items.relpaths[i] or f"#{i}"}

    def ranked(query: np.ndarray, k: int, method: str, exclude: int | None = None) -> list[dict]:
        k = _parse_k(k)
        if method not in methods:
            raise UploadError(f"unknown or unavailable re-ranking {method!r}; choose from {methods}")
        with lock:
            ids, scores = rerank_topk.ranked_ids(index, query, k, method)
        out = []
        for gid, score in zip(ids, scores):
            entry = describe(int(gid))
            entry.update(rank=len(out) + 1, score=round(float(score), 6))
            out.append(entry)
        return out

    @app.get("/")
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @app.get("/api/info")
    def info():
        i = index.info()
        return {"count": i["count"], "dim": i["dim"], "kind": i["kind"], "identities": i["identities"],
                "cameras": i["cameras"], "upload": encoder is not None, "rerank": methods,
                "limits": limits.as_dict(), "max_k": MAX_K}

    @app.get("/api/gallery")
    def gallery(offset: int = 0, limit: int = 60, pid: int | None = None, camid: int | None = None):
        mask = np.ones(len(index), bool)
        if pid is not None:
            mask &= index.items.pids == pid
        if camid is not None:
            mask &= index.items.camids == camid
        ids = np.flatnonzero(mask)
        limit = max(1, min(int(limit), 500))
        offset = max(0, int(offset))
        return {"total": int(len(ids)), "offset": offset, "items": [describe(int(i)) for i in ids[offset:offset + limit]]}

    @app.get("/api/search")
    def search_item(item: int, k: int = 20, rerank: str = "none"):
        gid = item
        if not 0 <= gid < len(index):
            raise UploadError(f"item must be a gallery id in 0..{len(index) - 1}", 404)
        query = index.vectors([gid])[0]
        return {"query": describe(gid), "results": ranked(query, k, rerank)}

    @app.post("/api/search")
    async def search_upload(request: Request, k: int = 20, rerank: str = "none"):
        if encoder is None:
            raise UploadError("this server has no model, so it cannot search by uploaded image; "
                              "start it with --model MODEL, or pick a gallery image", 400)
        check_declared_length(request.headers.get("content-length"), limits)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            if request.headers.get("content-length") is None:
                raise UploadError("multipart uploads need a Content-Length header", 411)
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("image") or form.get("file")
            if upload is None or isinstance(upload, str):
                raise UploadError("multipart upload must carry the image in a file field named 'image'")
            data, name = await upload.read(limits.max_bytes + 1), upload.filename or "upload"
        else:
            data, name = await _read_limited(request, limits.max_bytes), "upload"
        # Decoding a large photo takes a while: off the event loop, so other requests keep flowing.
        img = await run_in_threadpool(decode_upload, data, limits, name)

        def run():
            with lock:
                feat = encoder.encode_images([img])[0]
            return ranked(feat, k, rerank)
        return {"query": {"name": name, "width": img.width, "height": img.height},
                "results": await run_in_threadpool(run)}

    @app.get("/images/{root}/{relpath:path}")
    def image(root: int, relpath: str):
        path = resolve_gallery_file(index.roots, root, relpath)
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600",
                                           "X-Content-Type-Options": "nosniff"})

    @app.exception_handler(404)
    async def not_found(request, exc):
        return error(404, f"no such route {request.url.path}")

    @app.exception_handler(422)
    async def bad_params(request, exc):
        details = getattr(exc, "errors", lambda: [])()
        msg = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in details)
        return error(400, f"invalid request parameters: {msg or exc}")

    app.add_exception_handler(RequestValidationError, bad_params)
    return app


def _parse_k(k) -> int:
    k = int(k)
    if not 1 <= k <= MAX_K:
        raise UploadError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


async def _read_limited(request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``max_bytes`` (never fully buffered)."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise UploadError(f"upload exceeds the limit of {max_bytes} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def serve(index: str | Path, model: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, limits: UploadLimits = UploadLimits()) -> None:
    """Run the web UI with uvicorn until interrupted."""
    import uvicorn

    app = create_app(index, model, token, limits)
    uvicorn.run(app, host=host, port=port, log_level="info", log_config=log_config())

"""Serving the web UI: the page and scripts bundled from ``ui/`` (npm + esbuild) into ``ui_static/``.

The files are read once at start and served from memory, from a fixed list of names (nothing on disk
is looked up by a requested path).  They carry no data, so they are served without a token: the page
asks for the read token, keeps it in the tab's ``sessionStorage`` and sends it as a bearer header with
every ``/v1/...`` request; a token never appears in a URL.  Every answer forbids framing and any script
or connection not from this origin (Content-Security-Policy).  Without a build (``bash hack/build-ui.sh``,
which ``hack/setup.sh`` runs) ``/ui/`` answers 404 ``ui_not_built``.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web

__all__ = ["STATIC_DIR", "UI_PATH", "WebUi"]

UI_PATH: Final = "/ui/"
STATIC_DIR: Final = Path(__file__).with_name("ui_static")
MAX_FILE: Final = 16 * 1024 * 1024
"""A built file larger than this is not served (the bundle is about 1 MB)."""
HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _not_built(_: web.Request) -> web.Response:
    return web.json_response({"error": {"code": "ui_not_built", "message":
                                        "the web UI was not built into this installation: run "
                                        "`bash hack/build-ui.sh` (hack/setup.sh does) and reinstall"}},
                             status=404)


@dataclass(frozen=True)
class WebUi:
    """The built files by name (``index.html`` is the page); empty when the UI was not built."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> WebUi:
        files: dict[str, tuple[bytes, str]] = {}
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                if path.is_file() and not path.name.startswith(".") and path.stat().st_size <= MAX_FILE:
                    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    files[path.name] = (path.read_bytes(), kind)
        return cls(files)

    @classmethod
    def packaged(cls) -> WebUi:
        return cls.load(STATIC_DIR)

    @staticmethod
    def serves(handler: object) -> bool:
        """Whether ``handler`` is one of a web UI's (open) handlers."""
        return isinstance(getattr(handler, "__self__", None), WebUi)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/ui", self._redirect)
        router.add_get(UI_PATH, self._page)
        router.add_get(UI_PATH + "{file}", self._page)

    async def _redirect(self, _: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(UI_PATH)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("file") or "index.html"
        if not self.files:
            return _not_built(request)
        if name not in self.files:
            raise web.HTTPNotFound(text=f"no file {name[:64]!r} in the web UI")
        body, kind = self.files[name]
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={**HEADERS, "ETag": etag})
        charset = "utf-8" if kind.startswith("text/") or kind.endswith("javascript") else None
        return web.Response(body=body, content_type=kind, charset=charset, headers={**HEADERS, "ETag": etag})

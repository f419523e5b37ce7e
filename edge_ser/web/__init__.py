"""The live page's files (HTML, JS, CSS and the vendored uPlot), shipped as package data."""

from __future__ import annotations

from importlib.resources import files

UPLOT_JS = "vendor/uplot/uPlot.iife.min.js"
UPLOT_CSS = "vendor/uplot/uPlot.min.css"

PAGE_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/live.js": ("live.js", "text/javascript; charset=utf-8"),
    "/live.css": ("live.css", "text/css; charset=utf-8"),
    "/uPlot.iife.min.js": (UPLOT_JS, "text/javascript; charset=utf-8"),
    "/uPlot.min.css": (UPLOT_CSS, "text/css; charset=utf-8"),
}
"""URL path -> (file under edge_ser/web, Content-Type): everything the server answers besides /events."""


def read(name: str) -> bytes:
    """One file of the page, e.g. read("live.js")."""
    return files(__name__).joinpath(name).read_bytes()


def page_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (body, Content-Type), read once so serving never touches the disk."""
    return {path: (read(name), ctype) for path, (name, ctype) in PAGE_FILES.items()}

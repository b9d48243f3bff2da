"""The web console: static files shipped in this package, served with headers that keep the page self-contained.

The console is a client of the REST routes like any other: its scripts call them with the key the user pasted, so
the gateway adds no session, no cookie and no route of its own beyond the files. Every file comes from the package
(`pacer_gateway/console/`), never from a CDN, so the page works in an air-gapped cluster; the Content-Security-Policy
lets the page load nothing else, run no inline script and be framed by nobody.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from types import MappingProxyType

from aiohttp import hdrs, web

CONTENT_TYPES = MappingProxyType(
    {
        ".html": "text/html",
        ".js": "text/javascript",
        ".css": "text/css",
        ".svg": "image/svg+xml",
    }
)
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
# Sent on every answer of the gateway, JSON included: none of them is meant to be framed or sniffed as another type.
SECURITY_HEADERS = MappingProxyType(
    {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
)


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every console file by name, with its content type, read once when the app is built."""
    folder = resources.files("pacer_gateway") / "console"
    assets = {}
    for entry in folder.iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in CONTENT_TYPES:
            assets[entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    return assets


def add_console(app: web.Application) -> None:
    """Serve the console at `/` and its files at `/console/<name>`; unknown names are 404s like any other route."""
    assets = load_assets()

    def asset_response(name: str) -> web.Response:
        body, content_type = assets[name]
        # Revalidate every time: a new release must not mix with a cached older script.
        return web.Response(body=body, content_type=content_type, headers={hdrs.CACHE_CONTROL: "no-cache"})

    async def index(_: web.Request) -> web.Response:
        return asset_response("index.html")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound()
        return asset_response(name)

    app.router.add_get("/", index)
    app.router.add_get("/console/{name}", asset)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Add SECURITY_HEADERS to every answer, errors included."""
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response

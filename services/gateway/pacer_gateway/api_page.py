"""The interactive API page at `/docs`: Swagger UI on the gateway's own `/openapi.json`, served from installed files.

Swagger UI's built files come from the `swagger-ui-bundle-v2` package (pinned in the gateway's dependencies), the page
and its starter script from this package (`pacer_gateway/api_page/`): nothing is fetched from a CDN or built with
Node, so the page works in an air-gapped cluster. Like the console, the page is a client of the REST routes: "Try it
out" calls them with the key given to "Authorize", which Swagger UI keeps in the page's memory only.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from aiohttp import hdrs, web
from swagger_ui_bundle import swagger_ui_path

from pacer_gateway.console import CONTENT_TYPES

# The console's policy plus one source: `img-src data:`, for the icons Swagger UI's stylesheet embeds as data: URLs.
# Swagger UI needs no inline script, eval or inline style (it sets styles through the DOM, which the policy allows),
# so scripts and styles stay 'self' only and api-page.js starts it.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_OWN = resources.files("pacer_gateway") / "api_page"
_SWAGGER_UI = ("swagger-ui-bundle.js", "swagger-ui.css")


def asset_paths() -> Mapping[str, Path]:
    """Every file the page loads, by the name it has under `/docs/`."""
    paths = {name: Path(str(swagger_ui_path / name)) for name in _SWAGGER_UI}
    paths["api-page.js"] = Path(str(_OWN / "api-page.js"))
    return MappingProxyType(paths)


def add_api_page(app: web.Application) -> None:
    """Serve the page at `/docs` and its files at `/docs/<name>`; other names are 404s like any unknown route."""
    page = Path(str(_OWN / "index.html"))
    assets = asset_paths()
    missing = [str(path) for path in (page, *assets.values()) if not path.is_file()]
    if missing:
        raise RuntimeError(f"the API page's files are missing: {', '.join(missing)}")

    def file_response(path: Path) -> web.FileResponse:
        # Revalidated every time (ETag), so an upgraded Swagger UI never mixes with a cached older file.
        headers = {
            hdrs.CONTENT_TYPE: CONTENT_TYPES[path.suffix],
            hdrs.CACHE_CONTROL: "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        }
        return web.FileResponse(path, headers=headers)

    async def index(_: web.Request) -> web.FileResponse:
        return file_response(page)

    async def asset(request: web.Request) -> web.FileResponse:
        path = assets.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return file_response(path)

    app.router.add_get("/docs", index)
    app.router.add_get("/docs/{name}", asset)

"""The password inside an endpoint URL (`https://user:secret@host/`): kept apart from the URL people are shown.

The control plane stores and shows the URL with the password replaced by `***` and seals the password with the
endpoint's other secrets; the executor gets the URL whole. The rest of the URL is kept exactly as written.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MASK = "***"


def _netloc_span(url: str) -> tuple[int, int] | None:
    """Where the authority (`user:password@host:port`) sits in `url`, or None when it has none."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    start = url.find("//")
    if not netloc or start < 0 or url[start + 2 : start + 2 + len(netloc)] != netloc:
        return None
    return start + 2, start + 2 + len(netloc)


def split_password(url: str) -> tuple[str, str | None]:
    """(`url` with its password masked, the password) — or (`url`, None) when it holds no password."""
    span = _netloc_span(url)
    if span is None:
        return url, None
    netloc = url[span[0] : span[1]]
    userinfo, at, host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon:
        return url, None
    return f"{url[: span[0]]}{user}:{MASK}@{host}{url[span[1] :]}", password


def with_password(shown: str, password: str | None) -> str:
    """The whole URL again from what `split_password` returned."""
    if password is None:
        return shown
    span = _netloc_span(shown)
    if span is None:
        return shown
    netloc = shown[span[0] : span[1]]
    userinfo, _, host = netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return f"{shown[: span[0]]}{user}:{password}@{host}{shown[span[1] :]}"

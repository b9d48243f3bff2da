"""Which request headers a tenant may set on an endpoint: the one home of that rule.

A header that frames or routes the message (RFC 9110 7.6.1 and 7.2, RFC 9112 6 and 9.6) decides where a request
ends and which connection carries it. A tenant who could set one could make the shared executor send bytes that a
target reads as a second request on a pooled connection (request smuggling), so the control plane refuses them at
creation and the executor drops them at run time (rows written before the rule existed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Framing: how long the message is and how its body is encoded on the wire.
_FRAMING: Final = frozenset({"content-length", "transfer-encoding", "te", "trailer"})
# Hop-by-hop and connection management, including the name RFC 9110 7.6.1 reserves ("close").
_CONNECTION: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "upgrade", "close", "http2-settings", "expect"}
)
# Routing: which host and which proxy the message is for.
_ROUTING: Final = frozenset({"host"})
_PROXY_PREFIX: Final = "proxy-"
# Pacer's own: a tenant who set the signature header could forge what Pacer vouches for (pacer_common.signing).
_RESERVED: Final = frozenset({"x-pacer-signature"})


# Every name a tenant may never set (lower case), and the prefix of more: what `is_forbidden` refuses.
FORBIDDEN_NAMES: Final = _RESERVED | _FRAMING | _CONNECTION | _ROUTING
FORBIDDEN_PREFIX: Final = _PROXY_PREFIX


def is_forbidden(name: str) -> bool:
    """True for a header name (any case) that frames or routes the message: a tenant may never set it."""
    lowered = name.strip().lower()
    return lowered in FORBIDDEN_NAMES or lowered.startswith(FORBIDDEN_PREFIX)


def is_reserved(name: str) -> bool:
    """True for a header name (any case) that Pacer alone sets on a request, such as its signature."""
    return name.strip().lower() in _RESERVED


def forbidden_names(headers: Mapping[str, str]) -> list[str]:
    """The names in `headers` a tenant may not set, in the order given."""
    return [name for name in headers if is_forbidden(name)]


def without_forbidden(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` minus every name a tenant may not set."""
    return {name: value for name, value in headers.items() if not is_forbidden(name)}

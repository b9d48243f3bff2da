"""The one error-mapping layer of every Pacer gRPC server: each RPC ends with a status a caller can act on.

Handlers raise; `StatusGuard` answers. Domain errors become their status with rich details (`status.py`), errors
of a dependency that may come back (the database) become UNAVAILABLE with RetryInfo, and anything else INTERNAL
with an opaque error id that is also in the log beside the traceback. No status message ever carries a class name,
a traceback or SQL.

Request bytes that are not a valid message never reach a handler: for a unary request the caller is authenticated
first (the service's `Authenticate`), so a caller without a credential learns only that it has none; for a
streaming request the read fails with INVALID_ARGUMENT, which the stream's handler lets propagate.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc

from pacer_common.errors import InvalidArgument, PacerError, Unavailable
from pacer_common.ids import new_id
from pacer_common.logs import first_line
from pacer_common.status import to_grpc_status

log = logging.getLogger("pacer.rpc")

Authenticate: TypeAlias = Callable[[grpc.aio.ServicerContext], Awaitable[None]]
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
UNAVAILABLE_MESSAGE = "database unavailable, retry later"
# How a Pacer server answers a failure of its own: front doors pass on a message of exactly this shape (its id is
# what an operator searches the server's log for) and replace any other text of an INTERNAL status.
OPAQUE_INTERNAL = re.compile(r"internal error (err_[0-9a-z]{1,40})(?: \([A-Za-z ]{1,40}\))?")


def internal_message(error_id: str, who: str = "the server") -> str:
    """The message of an INTERNAL status for `error_id`; matches OPAQUE_INTERNAL."""
    return f"internal error {error_id} (logged by {who})"


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a unary request whose bytes are not a valid message; the guard answers it."""

    method: str

    def error(self) -> InvalidArgument:
        return InvalidArgument.single("request", f"is not a valid {_rpc_name(self.method)} request message")


class StatusGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps whatever a handler raises to a status, and refuses undecodable requests (see the module docstring).

    `unavailable` lists the exception types that mean "a dependency is down, retry"; `authenticators` maps a full
    service name to how that service checks its caller, applied before an undecodable request is refused.
    """

    def __init__(
        self,
        *,
        unavailable: tuple[type[BaseException], ...] = (),
        authenticators: Mapping[str, Authenticate] | None = None,
    ) -> None:
        self._unavailable = unavailable
        self._authenticators = dict(authenticators or {})

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        return self._guarded(handler, method)

    def _guarded(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        authenticate = self._authenticators.get(method.strip("/").split("/", 1)[0])
        unary_in = handler.unary_unary is not None or handler.unary_stream is not None
        deserializer = handler.request_deserializer
        if deserializer is not None:
            deserializer = _lenient(deserializer, method) if unary_in else _strict(deserializer, method)
        codec = {"request_deserializer": deserializer, "response_serializer": handler.response_serializer}
        wrap = _Wrapper(self, authenticate)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **codec)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **codec)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **codec)
        return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **codec)

    async def answer(self, error: Exception, context: grpc.aio.ServicerContext) -> None:
        """Abort the call with the status `error` deserves (an abort already under way passes through)."""
        if isinstance(error, grpc.aio.AbortError):
            raise error
        if isinstance(error, PacerError):
            await context.abort_with_status(to_grpc_status(error))
        if isinstance(error, self._unavailable):
            log.error("dependency unavailable", extra={"event": "rpc.unavailable", "error": first_line(error)})
            await context.abort_with_status(to_grpc_status(Unavailable(UNAVAILABLE_MESSAGE)))
        error_id = new_id("err")
        log.error("internal error", exc_info=error, extra={"event": "rpc.internal_error", "error_id": error_id})
        await context.abort(grpc.StatusCode.INTERNAL, internal_message(error_id))


class _Wrapper:
    """Wraps one behaviour so that what it raises is answered by the guard, keeping its kind (grpc.aio tells a
    response stream from a single response by whether the function is an async generator)."""

    def __init__(self, guard: StatusGuard, authenticate: Authenticate | None) -> None:
        self._guard = guard
        self._authenticate = authenticate

    def __call__(self, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behaviour):
            return self._generator(behaviour)
        return self._coroutine(behaviour)

    async def _refuse(self, request: Undecodable, context: grpc.aio.ServicerContext) -> None:
        if self._authenticate is not None:
            await self._authenticate(context)
        raise request.error()

    def _coroutine(self, behaviour: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if isinstance(request, Undecodable):
                    await self._refuse(request, context)
                result = behaviour(request, context)
                return await result if inspect.isawaitable(result) else result
            except Exception as error:  # noqa: BLE001 - this is the one place that answers every error
                await self._guard.answer(error, context)

        return guarded

    def _generator(self, behaviour: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                if isinstance(request, Undecodable):
                    await self._refuse(request, context)
                async for response in behaviour(request, context):
                    yield response
            except Exception as error:  # noqa: BLE001 - this is the one place that answers every error
                await self._guard.answer(error, context)

        return guarded


def _rpc_name(method: str) -> str:
    return method.rsplit("/", 1)[-1] or method


def _lenient(deserializer: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    """A deserializer that returns `Undecodable` instead of raising, so the guard can authenticate first."""

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:  # noqa: BLE001 - any decoding failure means the same thing: not a valid message
            return Undecodable(method)

    return decode


def _strict(deserializer: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    """A deserializer for streamed requests: a bad message fails the read with INVALID_ARGUMENT."""

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:  # noqa: BLE001 - any decoding failure means the same thing: not a valid message
            raise Undecodable(method).error() from None

    return decode

"""StatusGuard on a real grpc.aio server: whatever a handler raises, the caller gets a status it can act on and
never Python's own text; an unexpected error is logged with the opaque id the caller was given."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pacer_common.errors import InvalidArgument, NotFound, Unauthenticated
from pacer_common.guard import StatusGuard
from pacer_common.ports import grpc_server

SERVICE = "pacer.test.Probe"


class DatabaseDown(Exception):
    """Stands for a driver's error: its text holds SQL that must never reach a caller."""


async def _authenticate(context: grpc.aio.ServicerContext) -> None:
    if ("authorization", "Bearer good") not in context.invocation_metadata():
        raise Unauthenticated("unknown key")


def _raising(error: Exception) -> Callable[[Any, Any], Any]:
    async def handler(request: Any, context: Any) -> Any:
        raise error

    return handler


async def _stream(request: Any, context: Any) -> AsyncIterator[empty_pb2.Empty]:
    yield empty_pb2.Empty()
    raise RuntimeError("half way through, in secret_module.py line 12")


HANDLERS = {
    "Internal": _raising(KeyError("SELECT password FROM users")),
    "Unavailable": _raising(DatabaseDown("connection refused; SELECT * FROM endpoints WHERE ...")),
    "Invalid": _raising(InvalidArgument.single("name", "x" * 5000)),
    "Missing": _raising(NotFound("job", "j" * 1_000_000)),
}


async def _serve() -> tuple[grpc.aio.Server, int]:
    guard = StatusGuard(unavailable=(DatabaseDown,), authenticators={SERVICE: _authenticate})
    server = grpc_server(guard=guard)
    unary = {
        name: grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        )
        for name, handler in HANDLERS.items()
    }
    unary["Stream"] = grpc.unary_stream_rpc_method_handler(
        _stream, request_deserializer=empty_pb2.Empty.FromString, response_serializer=empty_pb2.Empty.SerializeToString
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, unary)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _call(port: int, method: str, payload: bytes = b"", key: str = "good") -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        if method == "Stream":
            call = channel.unary_stream(f"/{SERVICE}/{method}")(payload, metadata=[("authorization", f"Bearer {key}")])
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in call:
                    pass
            return raised.value
        unary = channel.unary_unary(f"/{SERVICE}/{method}")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unary(payload, metadata=[("authorization", f"Bearer {key}")])
        return raised.value


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def _in_every_case(checks: Callable[[int], Any]) -> None:
    async def body() -> None:
        server, port = await _serve()
        try:
            await checks(port)
        finally:
            await server.stop(None)

    run(body())


def test_an_unexpected_error_is_internal_with_an_id_that_is_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    async def checks(port: int) -> None:
        for method in ("Internal", "Stream"):
            error = await _call(port, method)
            assert error.code() == grpc.StatusCode.INTERNAL
            text = error.details() or ""
            assert "SELECT" not in text
            assert "KeyError" not in text
            assert "secret_module" not in text
            error_id = text.split()[2]
            assert error_id.startswith("err_")
            logged = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
            assert len(logged) == 1
            assert logged[0].exc_info is not None

    with caplog.at_level(logging.ERROR, logger="pacer.rpc"):
        _in_every_case(checks)


def test_a_dependency_error_is_unavailable_with_retry_info() -> None:
    async def checks(port: int) -> None:
        error = await _call(port, "Unavailable")
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "SELECT" not in (error.details() or "")
        status = rpc_status.from_call(error)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(retry) for detail in status.details)
        assert retry.retry_delay.ToMilliseconds() > 0

    _in_every_case(checks)


def test_domain_errors_keep_their_code_and_are_cut_to_fit_the_trailers() -> None:
    async def checks(port: int) -> None:
        invalid = await _call(port, "Invalid")
        assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(invalid.details() or "") <= 1000
        missing = await _call(port, "Missing")
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        assert len(missing.details() or "") < 200

    _in_every_case(checks)


def test_undecodable_bytes_are_refused_after_the_caller_is_known() -> None:
    async def checks(port: int) -> None:
        stranger = await _call(port, "Invalid", b"\xff\xff", key="bad")
        assert stranger.code() == grpc.StatusCode.UNAUTHENTICATED
        known = await _call(port, "Invalid", b"\xff\xff")
        assert known.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid Invalid request message" in (known.details() or "")

    _in_every_case(checks)

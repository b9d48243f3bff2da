"""Fuzzing every gRPC method Pacer serves, public and internal, against real processes: random messages, mutated
valid ones, raw garbage and oversized fields. Every reply is a status a caller can act on (never UNKNOWN or
INTERNAL, never Python's own words), and the services keep serving. Seeded, so a failure replays exactly."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from pacer.control.v1 import control_service_pb2 as pb
from pacer.internal.v1 import dispatch_service_pb2 as dispatch_pb
from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_common.credentials import service_token
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SEED = 20261130
CASES_PER_METHOD = 40
ANSWERS_NOBODY_CAN_ACT_ON = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
PYTHON_WORDS = ("Traceback", "<class", "Unexpected", "Exception", "Error:", "sqlalchemy", "psycopg", "SELECT ")
STRINGS = ["", "x", "job_", "ep_" + "0" * 26, "\x00", "\r\n", "é" * 40, "%s%n", "{}", "[" * 500, "-1", "🙂", "a" * 300]
INTS = [0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 10**12]


def _services() -> list[ServiceDescriptor]:
    return [
        pb.DESCRIPTOR.services_by_name["ControlService"],
        lease_pb.DESCRIPTOR.services_by_name["LeaseService"],
    ]


def _scalar(field: FieldDescriptor, rng: random.Random) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return rng.choice(STRINGS)
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 64))
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice([0.0, -1.0, 1e300, float("inf"), float("nan")])
    if kind == FieldDescriptor.TYPE_ENUM:
        return rng.choice([0, 1, 2, 3, 99, -5])
    bits = (
        32 if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32) else 64
    )
    unsigned = kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED32)
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return min(high, max(low, rng.choice(INTS)))


def random_message(descriptor: Descriptor, rng: random.Random, depth: int = 0) -> Any:
    """A message of `descriptor`'s type with a random subset of fields set to edge values."""
    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if rng.random() < 0.4:
            continue
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            for _ in range(rng.randint(1, 3)):
                target[_scalar(key_field, rng)] = _scalar(value_field, rng)
        elif field.message_type is not None:
            if depth > 3:
                continue
            count = rng.randint(1, 3) if field.is_repeated else 1
            for _ in range(count):
                sub = random_message(field.message_type, rng, depth + 1)
                (target.add() if field.is_repeated else target).CopyFrom(sub)
        elif field.is_repeated:
            target.extend(_scalar(field, rng) for _ in range(rng.randint(1, 4)))
        else:
            setattr(message, field.name, _scalar(field, rng))
    return message


def _oversized(descriptor: Descriptor, rng: random.Random) -> bytes:
    message = random_message(descriptor, rng)
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated and field.containing_oneof is None:
            setattr(message, field.name, "z" * 1_000_000)
            break
    return bytes(message.SerializeToString())


def _mutated(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw or b"\x00")
    match rng.randrange(4):
        case 0:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        case 1:
            del data[rng.randrange(len(data)) :]
        case 2:
            data[rng.randrange(len(data)) : 0] = rng.randbytes(rng.randint(1, 16))
        case _:
            data += bytes([rng.randrange(256)]) + b"\xff\xff\xff\xff\x0f"
    return bytes(data)


def payloads(method: MethodDescriptor, rng: random.Random) -> Iterator[bytes]:
    for case in range(CASES_PER_METHOD):
        valid = bytes(random_message(method.input_type, rng).SerializeToString())
        match case % 4:
            case 0:
                yield valid
            case 1:
                yield _mutated(valid, rng)
            case 2:
                yield rng.randbytes(rng.choice([1, 2, 7, 100, 4096]))
            case _:
                yield _oversized(method.input_type, rng) if case % 8 == 3 else _mutated(valid, rng)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    stack = Stack(tmp, f"sqlite:///{tmp / 'pacer.db'}")
    stack.add_scheduler()
    yield stack
    stack.close()


def _check(error: grpc.RpcError | None, what: str) -> None:
    if error is None:
        return
    code, text = error.code(), error.details() or ""  # type: ignore[attr-defined]
    assert code not in ANSWERS_NOBODY_CAN_ACT_ON, f"{what}: {code} {text}"
    assert not any(word in text for word in PYTHON_WORDS), f"{what}: {text}"


def test_no_method_answers_anything_a_caller_cannot_act_on(fuzzed: Stack) -> None:
    rng = random.Random(SEED)
    token = service_token("", str(fuzzed.var), create=False)
    channel = grpc.insecure_channel(fuzzed.control_addr, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)])
    answered: dict[grpc.StatusCode, int] = {}
    for service in _services():
        credential = fuzzed.client.key if service.name == "ControlService" else token
        for method in service.methods:
            call = channel.unary_unary(f"/{service.full_name}/{method.name}")
            for number, payload in enumerate(payloads(method, rng)):
                for key in (credential, None):
                    metadata = [("authorization", f"Bearer {key}")] if key else []
                    error = None
                    try:
                        call(payload, metadata=metadata, timeout=30)
                    except grpc.RpcError as raised:
                        error = raised
                    code = grpc.StatusCode.OK if error is None else error.code()  # type: ignore[attr-defined]
                    answered[code] = answered.get(code, 0) + 1
                    _check(error, f"{method.full_name} case {number} key={key is not None}")
                    if key is None:
                        assert code == grpc.StatusCode.UNAUTHENTICATED, f"{method.full_name} case {number}: {code}"
    channel.close()
    print("fuzz answers:", {code.name: count for code, count in sorted(answered.items(), key=lambda kv: -kv[1])})
    assert answered.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > 100  # the corpus did reach the validation
    assert fuzzed.client.ListJobs(pb.ListJobsRequest()) is not None  # still serving
    assert "Traceback" not in fuzzed.control.logs()


def test_a_garbled_executor_stream_ends_with_invalid_argument(fuzzed: Stack) -> None:
    rng = random.Random(SEED + 1)
    token = service_token("", str(fuzzed.var), create=False)
    _, scheduler_addr = fuzzed.schedulers["scheduler"]
    method = dispatch_pb.DESCRIPTOR.services_by_name["DispatchService"].methods_by_name["Connect"]
    with grpc.insecure_channel(scheduler_addr) as channel:
        connect = channel.stream_stream(f"/{method.containing_service.full_name}/{method.name}")
        hello = dispatch_pb.ConnectRequest(hello=dispatch_pb.Hello(executor_id="fuzz", capacity=1)).SerializeToString()
        for number, payload in enumerate(payloads(method, rng)):
            frames = [hello, payload] if number % 2 else [payload]
            stream = connect(iter(frames), metadata=[("authorization", f"Bearer {token}")], timeout=5)
            error = None
            try:
                for _ in stream:
                    pass
            except grpc.RpcError as raised:
                error = raised
            if error is not None and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                continue  # a well-formed stream the scheduler keeps open: nothing wrong with the answer
            _check(error, f"Connect case {number}")
    process, _ = fuzzed.schedulers["scheduler"]
    assert process.process.poll() is None
    assert "Traceback" not in process.logs()

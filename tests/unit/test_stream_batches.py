"""How the two ends of the dispatch stream batch: several events per message, never a message too big to read."""

from __future__ import annotations

import pytest

from pacer.internal.v1 import lease_service_pb2 as lease_pb
from pacer_executor import stream as executor_stream
from pacer_scheduler import stream as scheduler_stream

GRPC_DEFAULT_LIMIT_BYTES = 4 * 1024 * 1024


def big_item(n: int) -> lease_pb.WorkItem:
    return lease_pb.WorkItem(run_id=f"run_{n}", endpoint_id=f"ep_{n}", url="https://a.example/", body="x" * 200_000)


@pytest.mark.asyncio
async def test_items_due_together_share_work_batches_that_stay_under_the_message_limit() -> None:
    outbox = scheduler_stream._Outbox(batches=True)
    for n in range(12):
        outbox.work(big_item(n))

    outbox.finish()
    batches = []
    while (message := await outbox.next()) is not None:
        batches.append(message.work_batch)

    assert 1 < len(batches) < 12
    assert [item.run_id for batch in batches for item in batch.items] == [f"run_{n}" for n in range(12)]
    assert all(batch.ByteSize() < GRPC_DEFAULT_LIMIT_BYTES for batch in batches)
    assert outbox.unwritten == set()  # every item was taken for writing


@pytest.mark.asyncio
async def test_a_work_item_queued_after_its_batch_was_taken_goes_in_the_next_message() -> None:
    outbox = scheduler_stream._Outbox(batches=True)
    outbox.work(lease_pb.WorkItem(run_id="run_1"))
    taken = await outbox.next()
    outbox.work(lease_pb.WorkItem(run_id="run_2"))

    assert taken is not None
    assert [item.run_id for item in taken.work_batch.items] == ["run_1"]
    assert outbox.unwritten == {"run_2"}  # not yet written: it cannot have reached the executor


@pytest.mark.asyncio
async def test_results_share_progress_messages_that_stay_under_the_message_limit() -> None:
    outbox = executor_stream._Outbox()
    outbox.batches = True
    for n in range(12):
        result = outbox.progress().results.add(run_id=f"run_{n}", response_body="x" * 200_000)
        outbox.added(result.ByteSize())
        outbox.progress().credit += 1
    outbox.put(None)
    messages = []
    while (message := await outbox.take()) is not None:
        messages.append(message.progress)

    assert 1 < len(messages) < 12
    assert [result.run_id for progress in messages for result in progress.results] == [f"run_{n}" for n in range(12)]
    assert sum(progress.credit for progress in messages) == 12
    assert all(progress.ByteSize() < GRPC_DEFAULT_LIMIT_BYTES for progress in messages)

"""A revoked API key stops working within a second on a running control plane, although it remembers live keys:
when another process revoked it (as `pacer-admin revoke-key` does, through a catalog of its own) and, at once, when
the control plane's own catalog did."""

from __future__ import annotations

import time

import grpc

from pacer.control.v1 import control_service_pb2 as pb
from pacer_control.auth import issue_key
from pacer_control.catalog import Catalog
from tests.support.harness import Client, Harness, status_of
from tests.support.polling import wait_for

PROMISE_S = 1.0


def refused(client: Client, job_id: str) -> bool:
    """True when the call is refused as unauthenticated, False when it is answered (any other error propagates)."""
    try:
        client.GetJob(pb.GetJobRequest(job_id=job_id))
    except grpc.RpcError as error:
        if status_of(error) != grpc.StatusCode.UNAUTHENTICATED:
            raise
        return True
    return False


def remembered_key(harness: Harness) -> tuple[str, Client, str]:
    """A new key of tenant a that the control plane has just checked (so it remembers it): prefix, client, a job."""
    issued = issue_key(harness.catalog, harness.tenants["acme"], "temporary", harness.clock.now())
    client = harness.client(issued.secret)
    job_id = client.CreateJob(pb.CreateJobRequest(name="Keyed")).job_id
    assert not refused(client, job_id)
    return issued.prefix, client, job_id


def test_a_key_revoked_by_another_process_is_refused_within_a_second(harness: Harness) -> None:
    prefix, client, job_id = remembered_key(harness)
    elsewhere = Catalog(harness.engine, harness.catalog.keyring)  # what pacer-admin holds: not the server's catalog

    assert elsewhere.revoke_api_key(prefix, harness.clock.now())
    revoked = time.monotonic()

    wait_for(lambda: refused(client, job_id), PROMISE_S, "the revoked key to be refused", poll_s=0.02)
    assert time.monotonic() - revoked < PROMISE_S
    assert not refused(harness.a, job_id)  # the tenant's other key still works


def test_a_key_revoked_through_the_servers_catalog_is_refused_at_once(harness: Harness) -> None:
    prefix, client, job_id = remembered_key(harness)

    assert harness.catalog.revoke_api_key(prefix, harness.clock.now())

    assert refused(client, job_id)

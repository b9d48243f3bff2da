"""Create a job with one endpoint that Pacer calls every few seconds, and print when it runs next.

.venv/bin/python -m examples.first_endpoint https://example.com/health --every-s 30
"""

from __future__ import annotations

import argparse

from examples.pacer_client import Pacer
from pacer.control.v1 import control_service_pb2 as pb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the URL to call")
    parser.add_argument("--every-s", type=float, default=30.0, help="baseline interval in seconds (default 30)")
    parser.add_argument("--job", default="My first job", help="job name")
    args = parser.parse_args()
    pacer = Pacer()
    job = pacer.CreateJob(pb.CreateJobRequest(name=args.job, description="created by examples.first_endpoint"))
    endpoint = pacer.AddEndpointToJob(
        pb.AddEndpointToJobRequest(
            job_id=job.job_id,
            name="first endpoint",
            url=args.url,
            baseline=pb.Baseline(interval_ms=int(args.every_s * 1000)),
        )
    )
    print(f"job      {job.job_id}")
    print(f"endpoint {endpoint.endpoint_id}")
    print(f"next run {endpoint.next_run_at.ToDatetime().isoformat()}Z")
    pacer.close()


if __name__ == "__main__":
    main()

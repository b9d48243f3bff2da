"""`python -m examples.demo [--compression 30] [--keep] [--agent]`: the flash-sale scenario, live and compressed,
steered by the traffic monitor's policies inside Pacer (or, with --agent, by the example agent from outside)."""

from __future__ import annotations

import argparse
import signal
import sys

from examples.demo.replay import Options, run


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def compression(text: str) -> float:
    """A compression factor the demo's Pacer settings can serve: 1 (real time) to 120."""
    value = float(text)
    if not 1 <= value <= 120:
        raise argparse.ArgumentTypeError("compression must be between 1 and 120")
    return value


def main() -> int:
    """Parse the arguments and run the demo; the exit status is the demo's."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument(
        "--compression", type=compression, default=30.0, help="simulated seconds per real second (default 30)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the folder with the services' logs and database")
    parser.add_argument(
        "--agent", action="store_true", help="steer with the external example agent instead of the policies"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`cmd &`)
    return run(Options(compression=args.compression, keep=args.keep, agent=args.agent))


if __name__ == "__main__":
    sys.exit(main())

"""Generate the Python stubs of every proto under protos/ into one package.

The stubs (messages, gRPC services and their .pyi type stubs) land in
libs/common/pacer/, mirroring the proto packages, so `import pacer.control.v1`
works wherever libs/common is installed. With --check the stubs are generated
into a scratch folder and compared with the checked-in ones instead.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
TARGET = ROOT / "libs" / "common"
PACKAGE = "pacer"
BIN = Path(sys.executable).parent


def generate(out: Path) -> None:
    """Run protoc over every .proto file, writing stubs below `out`."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for folder in [p for p in (out / PACKAGE).rglob("*") if p.is_dir()] + [out / PACKAGE]:
        (folder / "__init__.py").touch()


def stale_files(fresh: Path, current: Path) -> list[str]:
    """Names of files that differ between two generated trees."""
    fresh_files = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    current_files = {p.relative_to(current) for p in current.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    differing = fresh_files ^ current_files
    differing |= {p for p in fresh_files & current_files if not filecmp.cmp(fresh / p, current / p, shallow=False)}
    return sorted(str(p) for p in differing)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the checked-in stubs are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch)
        generate(fresh)
        if args.check:
            stale = stale_files(fresh / PACKAGE, TARGET / PACKAGE)
            if stale:
                print("generated stubs are stale; run `make proto`:", *stale, sep="\n  ")
                return 1
            return 0
        shutil.rmtree(TARGET / PACKAGE, ignore_errors=True)
        shutil.copytree(fresh / PACKAGE, TARGET / PACKAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make lint` holds the protos to the published API: an incompatible change fails buf breaking, an addition not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".venv" / "bin" / "buf"
CONTROL = Path("pacer/control/v1/control_service.proto")


def breaking(protos: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "breaking", "--against", "api-baseline.binpb"],
        cwd=protos,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def copy_of_protos(tmp_path: Path) -> Path:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    return protos


def test_the_protos_as_they_are_keep_the_published_api() -> None:
    assert breaking(ROOT / "protos").returncode == 0


def test_a_renumbered_field_or_a_changed_go_package_breaks_it(tmp_path: Path) -> None:
    protos = copy_of_protos(tmp_path)
    source = protos / CONTROL
    text = source.read_text()
    source.write_text(text.replace("string reason = 10;\n  // Rules", "string reason = 19;\n  // Rules", 1))

    renumbered = breaking(protos)

    source.write_text(text.replace('go_package = "pacer.dev/api/', 'go_package = "example.com/other/', 1))
    moved = breaking(protos)
    assert renumbered.returncode != 0
    assert "reason" in renumbered.stdout + renumbered.stderr
    assert moved.returncode != 0


def test_a_new_field_is_not_a_break(tmp_path: Path) -> None:
    protos = copy_of_protos(tmp_path)
    source = protos / CONTROL
    text = source.read_text()
    source.write_text(text.replace("message GetJobRequest {\n", "message GetJobRequest {\n  string extra = 99;\n", 1))

    assert breaking(protos).returncode == 0

"""pacerctl as kubectl users expect it: named contexts in a config file, --version, and shell completion."""

from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from pacer.control.v1 import control_service_pb2 as pb
from pacer_cli.main import run
from tests.support.harness import Harness


def pacerctl(*argv: str, config: Path, **env: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out, err, environ={"PACER_CONFIG": str(config), **env})
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".config" / "pacer" / "config.yaml"


def key_file(tmp_path: Path, name: str, key: str) -> str:
    path = tmp_path / f"{name}.key"
    path.write_text(key + "\n")
    return str(path)


def test_a_context_names_the_control_plane_and_the_key_file(harness: Harness, tmp_path: Path, config: Path) -> None:
    harness.a.CreateJob(pb.CreateJobRequest(name="acme's job"))
    harness.b.CreateJob(pb.CreateJobRequest(name="globex's job"))
    acme = key_file(tmp_path, "acme", harness.a.key or "")
    globex = key_file(tmp_path, "globex", harness.b.key or "")

    assert (
        pacerctl("config", "set-context", "acme", "--addr", harness.address, "--key-file", acme, config=config)[0] == 0
    )
    assert (
        pacerctl("config", "set-context", "globex", "--addr", harness.address, "--key-file", globex, config=config)[0]
        == 0
    )

    code, out, _ = pacerctl("jobs", "list", config=config)  # the first context became the current one
    assert code == 0
    assert "acme's job" in out
    assert "globex's job" not in out
    assert "globex's job" in pacerctl("--context", "globex", "jobs", "list", config=config)[1]
    assert pacerctl("config", "use-context", "globex", config=config)[0] == 0
    assert pacerctl("config", "current-context", config=config)[1] == "globex\n"
    assert "globex's job" in pacerctl("jobs", "list", config=config)[1]
    listing = pacerctl("config", "get-contexts", config=config)[1].splitlines()
    assert listing[0].split() == ["CURRENT", "NAME", "ADDR", "KEY", "FILE"]
    assert listing[2].split()[:2] == ["*", "globex"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert harness.a.key not in config.read_text()  # the file names key files, never keys


def test_flags_and_variables_win_over_the_context(harness: Harness, tmp_path: Path, config: Path) -> None:
    wrong = key_file(tmp_path, "wrong", "pk_abcdefgh_wrong")
    pacerctl("config", "set-context", "here", "--addr", "127.0.0.1:1", "--key-file", wrong, config=config)

    assert pacerctl("jobs", "list", config=config)[0] == 7  # nothing listens at the context's address
    assert pacerctl("--addr", harness.address, "jobs", "list", config=config)[0] == 5  # the context's key is wrong
    code, _, err = pacerctl("--addr", harness.address, "jobs", "list", config=config, PACER_API_KEY=harness.a.key or "")
    assert code == 0, err
    code, _, err = pacerctl(
        "jobs", "list", config=config, PACER_API_KEY=harness.a.key or "", PACER_CONTROL_ADDR=harness.address
    )
    assert code == 0, err


def test_a_missing_context_or_a_broken_file_is_a_usage_error_naming_it(tmp_path: Path, config: Path) -> None:
    code, _, err = pacerctl("--context", "nowhere", "jobs", "list", config=config)
    assert (code, err) == (2, "error: no context named 'nowhere' (known: none); see `pacerctl config get-contexts`\n")
    assert pacerctl("config", "use-context", "nowhere", config=config)[0] == 2
    config.parent.mkdir(parents=True)
    config.write_text("contexts:\n  - name: a\n    adress: x:1\n")
    code, _, err = pacerctl("jobs", "list", config=config)
    assert code == 2
    assert "unknown key 'adress'" in err
    assert str(config) in err


def test_version() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run(["--version"], out, err, environ={}) == 0
    assert out.getvalue().startswith("pacerctl ")


def completions(script: str, *words: str) -> list[str]:
    """What bash offers after `pacerctl <words>` (the last word is the one being completed)."""
    argv = " ".join(f"'{w}'" for w in ("pacerctl", *words))
    probe = f'{script}\nCOMP_WORDS=({argv}); COMP_CWORD={len(words)}; _pacerctl; printf "%s\\n" "${{COMPREPLY[@]}}"'
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.split()


def test_bash_completion_offers_groups_commands_and_options(config: Path) -> None:
    code, script, _ = pacerctl("completion", "bash", config=config)

    assert code == 0
    assert completions(script, "end") == ["endpoints"]
    assert "hint" in completions(script, "endpoints", "")
    # An option's value and an endpoint id do not move the place: endpoints hint's own options are offered.
    assert "--ttl" in completions(script, "--addr", "x:1", "endpoints", "hint", "ep_1", "--")
    # Nor does an endpoint named by its job: --job's value is skipped like any option's.
    assert "--every" in completions(script, "endpoints", "hint", "--job", "Production Health Monitor", "errors", "--")
    assert "--job" in completions(script, "endpoints", "pause", "Production Health Monitor/errors", "--j")
    assert completions(script, "completion", "f") == ["fish"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_group(shell: str, config: Path) -> None:
    code, script, _ = pacerctl("completion", shell, config=config)

    assert code == 0
    for group in ("jobs", "endpoints", "runs", "apply", "config"):
        assert group in script
    if shutil.which(shell):  # the shell's own syntax check, where the shell is installed
        subprocess.run([shell, "-n"], input=script, text=True, check=True, timeout=30)


# --- output modes, names for ids, durations ---------------------------------------------------------------------------


def cli(harness: Harness, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"PACER_CONFIG": "/nonexistent/pacer/config.yaml"}
    code = run(["--addr", harness.address, "--api-key", harness.a.key or "", *argv], out, err, environ=env)
    return code, out.getvalue(), err.getvalue()


def test_every_read_prints_yaml_or_a_wide_table_and_errors_as_json_under_o_json(harness: Harness) -> None:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="Production Health Monitor")).job_id
    harness.a.AddEndpointToJob(
        pb.AddEndpointToJobRequest(
            job_id=job, name="errors", url="https://api.example.com/errors", baseline=pb.Baseline(interval_ms=30_000)
        )
    )

    code, out, _ = cli(harness, "jobs", "get", job, "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["job"]["name"] == "Production Health Monitor"
    code, out, _ = cli(harness, "endpoints", "list", job, "-o", "wide")
    assert code == 0
    assert "https://api.example.com/errors" in out
    assert "every 30s" in out
    code, out, err = cli(harness, "-o", "json", "jobs", "get", "job_00000000000000000000000000")
    assert code == 3
    assert out == ""
    assert json.loads(err)["error"]["code"] == "NOT_FOUND"


def test_a_job_is_named_by_its_name_wherever_an_id_is_and_an_ambiguous_name_is_refused(harness: Harness) -> None:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="Production Health Monitor")).job_id
    endpoint = harness.a.AddEndpointToJob(
        pb.AddEndpointToJobRequest(
            job_id=job, name="errors", url="https://api.example.com/errors", baseline=pb.Baseline(interval_ms=30_000)
        )
    ).endpoint_id

    code, out, _ = cli(harness, "jobs", "get", "Production Health Monitor", "--json")
    assert code == 0
    assert json.loads(out)["job"]["job_id"] == job
    code, out, _ = cli(harness, "endpoints", "get", "Production Health Monitor", "errors", "--json")
    assert code == 0
    assert json.loads(out)["endpoint_id"] == endpoint
    assert cli(harness, "jobs", "get", "No Such Job")[0] == 3
    harness.a.CreateJob(pb.CreateJobRequest(name="Production Health Monitor"))
    code, _, err = cli(harness, "endpoints", "list", "Production Health Monitor")
    assert code == 2
    assert "2 jobs are named 'Production Health Monitor'" in err


def test_the_health_window_is_a_duration(harness: Harness) -> None:
    job = harness.a.CreateJob(pb.CreateJobRequest(name="windowed")).job_id
    endpoint = harness.a.AddEndpointToJob(
        pb.AddEndpointToJobRequest(
            job_id=job, name="e", url="https://api.example.com/", baseline=pb.Baseline(interval_ms=30_000)
        )
    ).endpoint_id

    assert cli(harness, "endpoints", "health", endpoint, "--window", "7d")[0] == 0
    code, _, err = cli(harness, "endpoints", "health", endpoint, "--window", "90m")
    assert code == 2
    assert "not a whole number of hours" in err


# --- endpoints by name: JOB/NAME or --job JOB NAME -----------------------------------------------------------------


def add_endpoint(harness: Harness, job_id: str, name: str) -> str:
    request = pb.AddEndpointToJobRequest(
        job_id=job_id, name=name, url="https://api.example.com/" + name, baseline=pb.Baseline(interval_ms=60_000)
    )
    return str(harness.a.AddEndpointToJob(request).endpoint_id)


def endpoint_state(harness: Harness, job_id: str, endpoint_id: str) -> pb.EndpointSummary:
    listing = harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=job_id))
    (endpoint,) = [e for e in listing.endpoints if e.endpoint_id == endpoint_id]
    return endpoint


def test_an_endpoint_is_named_as_job_slash_name_or_with_job_wherever_an_id_is(harness: Harness) -> None:
    monitor = harness.a.CreateJob(pb.CreateJobRequest(name="Production Health Monitor")).job_id
    billing = harness.a.CreateJob(pb.CreateJobRequest(name="Billing")).job_id
    errors = add_endpoint(harness, monitor, "errors")
    billing_errors = add_endpoint(harness, billing, "errors")  # the same name in another job

    code, _, err = cli(harness, "endpoints", "hint", "Production Health Monitor/errors", "--every", "10s")
    assert code == 0, err
    assert endpoint_state(harness, monitor, errors).hint_interval_ms == 10_000
    assert endpoint_state(harness, billing, billing_errors).hint_interval_ms == 0
    assert cli(harness, "endpoints", "pause", "--job", "Billing", "errors", "--reason", "muted")[0] == 0
    assert endpoint_state(harness, billing, billing_errors).paused
    assert not endpoint_state(harness, monitor, errors).paused
    code, out, _ = cli(harness, "audit", "list", "--endpoint", "Billing/errors", "--json")
    assert code == 0
    records = json.loads(out)["records"]
    assert {r["target_id"] for r in records} == {billing_errors}
    assert "muted" in [r["reason"] for r in records]
    assert cli(harness, "endpoints", "resume", "--job", billing, "errors")[0] == 0  # the job by id
    assert not endpoint_state(harness, billing, billing_errors).paused
    code, out, _ = cli(harness, "endpoints", "get", "Billing/errors", "--json")
    assert (code, json.loads(out)["endpoint_id"]) == (0, billing_errors)
    code, out, _ = cli(harness, "endpoints", "health", f"{monitor}/errors", "--window", "1h", "--json")
    assert (code, json.loads(out)["failure_streak"]) == (0, 0)
    assert cli(harness, "endpoints", "update", "Production Health Monitor/errors", "--timeout", "10s")[0] == 0
    assert endpoint_state(harness, monitor, errors).timeout_ms == 10_000
    assert cli(harness, "endpoints", "clear-hints", errors)[0] == 0  # an id works as before
    assert endpoint_state(harness, monitor, errors).hint_interval_ms == 0
    assert cli(harness, "endpoints", "delete", "Billing/errors")[0] == 0
    assert not harness.a.ListJobEndpoints(pb.ListJobEndpointsRequest(job_id=billing)).endpoints


def test_runs_are_filtered_by_an_endpoint_or_job_named_by_name(harness: Harness) -> None:
    monitor = harness.a.CreateJob(pb.CreateJobRequest(name="Production Health Monitor")).job_id
    errors = add_endpoint(harness, monitor, "errors")
    latency = add_endpoint(harness, monitor, "latency")
    run = harness.fire(errors)
    harness.fire(latency)

    def listed(*argv: str) -> set[tuple[str, str]]:
        code, out, err = cli(harness, "runs", "list", *argv, "--json")
        assert code == 0, err
        return {(r["endpoint_id"], r["run_id"]) for r in json.loads(out)["runs"]}

    by_name = listed("--endpoint", "Production Health Monitor/errors")
    assert (errors, run) in by_name
    assert {endpoint for endpoint, _ in by_name} == {errors}
    assert listed("--job", "Production Health Monitor", "--endpoint", "errors") == by_name
    assert listed("--endpoint", errors) == by_name
    # runs watch looks the names up before it starts watching: an unknown one ends it at once.
    code, _, err = cli(harness, "runs", "watch", "--endpoint", "Production Health Monitor/nope")
    assert (code, err) == (3, "error: NOT_FOUND: job 'Production Health Monitor' has no endpoint named 'nope'\n")
    assert cli(harness, "runs", "watch", "--job", "No Such Job")[0] == 3


def test_an_unknown_or_ambiguous_endpoint_name_is_refused_clearly_and_changes_nothing(harness: Harness) -> None:
    first = harness.a.CreateJob(pb.CreateJobRequest(name="Production Health Monitor")).job_id
    errors = add_endpoint(harness, first, "errors")

    code, _, err = cli(harness, "endpoints", "pause", "Production Health Monitor/nope")
    assert (code, err) == (3, "error: NOT_FOUND: job 'Production Health Monitor' has no endpoint named 'nope'\n")
    code, _, err = cli(harness, "endpoints", "pause", "No Such Job/errors")
    assert (code, err) == (3, "error: NOT_FOUND: no job named 'No Such Job'\n")
    code, _, err = cli(harness, "-o", "json", "endpoints", "pause", "--job", "No Such Job", "errors")
    assert code == 3
    assert json.loads(err) == {"error": {"code": "NOT_FOUND", "message": "no job named 'No Such Job'"}}
    code, _, err = cli(harness, "endpoints", "pause", "errors")  # a name needs its job
    assert code == 2
    assert "'errors' is not an endpoint id: give JOB/errors or --job JOB errors" in err

    second = harness.a.CreateJob(pb.CreateJobRequest(name="Production Health Monitor")).job_id
    other = add_endpoint(harness, second, "errors")
    code, _, err = cli(harness, "endpoints", "pause", "Production Health Monitor/errors")
    assert code == 2
    assert (
        f"2 endpoints match 'Production Health Monitor/errors': {errors} (job {first}), {other} (job {second}); "
        "give the endpoint id"
    ) in err
    code, _, err = cli(harness, "endpoints", "pause", "--job", "Production Health Monitor", "errors", "-o", "json")
    assert code == 2
    refused = json.loads(err)["error"]
    assert refused["code"] == "INVALID_ARGUMENT"
    assert refused["message"].startswith("2 endpoints match 'errors': ")
    assert not endpoint_state(harness, first, errors).paused
    assert not endpoint_state(harness, second, other).paused
    # Where only one of the jobs of that name has the endpoint, the name says which one.
    only = add_endpoint(harness, second, "latency")
    assert cli(harness, "endpoints", "pause", "Production Health Monitor/latency")[0] == 0
    assert endpoint_state(harness, second, only).paused


def test_a_slash_may_sit_in_a_job_or_an_endpoint_name(harness: Harness) -> None:
    team = harness.a.CreateJob(pb.CreateJobRequest(name="team/api")).job_id
    errors = add_endpoint(harness, team, "health/errors")

    code, out, err = cli(harness, "endpoints", "get", "team/api/health/errors", "--json")
    assert code == 0, err
    assert json.loads(out)["endpoint_id"] == errors
    assert cli(harness, "endpoints", "pause", "--job", "team/api", "health/errors")[0] == 0
    assert endpoint_state(harness, team, errors).paused
    # A job "team" with an endpoint "api/health/errors" makes the same words name two endpoints.
    add_endpoint(harness, harness.a.CreateJob(pb.CreateJobRequest(name="team")).job_id, "api/health/errors")
    code, _, err = cli(harness, "endpoints", "resume", "team/api/health/errors")
    assert code == 2
    assert "2 endpoints match 'team/api/health/errors'" in err

"""deploy/docker: one multi-stage Dockerfile per service, checked statically (no Docker engine needed): the base
image, a numeric non-root user, copies that exist and survive the ignore file, the console script as entrypoint,
the ports the Kubernetes manifests use, and no credentials baked in."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import DOCKER, K8S, PACER_UID, REPO, SERVICES

BASE_IMAGE = re.compile(r"^python:3\.11-slim(@sha256:[0-9a-f]{64})?$")
SECRET_NAMES = re.compile(r"TOKEN|PASSWORD|SECRET|DATABASE_URL|API_KEY|CREDENTIAL", re.IGNORECASE)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for instruction, arguments in self.instructions if instruction == keyword]


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile: continuation lines joined, comments dropped, instructions upper-cased."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: the last instruction ends with a line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            words = arguments.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{path.name}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, arguments))
    return stages


def copy_sources(arguments: str) -> tuple[list[str], dict[str, str]]:
    """(sources, flags) of a COPY: exec (JSON) or shell form, the destination dropped."""
    flags = dict(re.findall(r"--([a-z-]+)=(\S+)", arguments))
    rest = re.sub(r"--[a-z-]+=\S+\s*", "", arguments).strip()
    words = json.loads(rest) if rest.startswith("[") else rest.split()
    return words[:-1], flags


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """A .dockerignore's text as (negated, regex) pairs, in order; the last pattern that matches decides."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        patterns.append((negated, re.compile(regex)))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves out `relative`: a pattern matches a path or any of its parent folders."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def dockerfile(service: str) -> Path:
    return DOCKER / f"{service}.Dockerfile"


def console_scripts(service: str) -> dict[str, str]:
    project = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    scripts: dict[str, str] = project["project"]["scripts"]
    return scripts


def container_ports(service: str) -> set[int]:
    documents = yaml.safe_load_all((K8S / "base" / f"{service}.yaml").read_text())
    deployment = next(d for d in documents if d and d["kind"] == "Deployment")
    return {p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_on_python_311_slim(service: str) -> None:
    stages = parse(dockerfile(service))

    assert len(stages) >= 2
    assert all(BASE_IMAGE.match(stage.base) for stage in stages), [stage.base for stage in stages]
    assert stages[0].name == "builder"
    final = stages[-1]
    # The final stage takes only the built virtualenv, never the source tree.
    for arguments in final.all("COPY"):
        assert copy_sources(arguments)[1].get("from") == "builder", arguments
    assert not final.all("ADD")


@pytest.mark.parametrize("service", SERVICES)
def test_the_builder_installs_the_wheels_with_the_repository_constraints(service: str) -> None:
    builder = parse(dockerfile(service))[0]
    commands = " ".join(builder.all("RUN"))

    assert re.search(r"pip wheel .*libs/common services/" + service + r"\b", commands)
    assert re.search(r"pip install (--constraint|-c) constraints\.txt /wheels/\*\.whl", commands)
    copied = [source for arguments in builder.all("COPY") for source in copy_sources(arguments)[0]]
    assert {"constraints.txt", "libs/common/", f"services/{service}/"} <= set(copied)


@pytest.mark.parametrize("service", SERVICES)
def test_the_final_stage_runs_as_a_numeric_non_root_user(service: str) -> None:
    final = parse(dockerfile(service))[-1]
    users = final.all("USER")

    assert users, "no USER in the final stage: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid == str(PACER_UID)
    assert gid in ("", str(PACER_UID))
    run = " ".join(final.all("RUN"))
    assert f"--uid {PACER_UID}" in run


@pytest.mark.parametrize("service", SERVICES)
def test_every_copied_path_exists_and_is_sent_in_the_build_context(service: str) -> None:
    path = dockerfile(service)
    ignore = path.with_name(path.name + ".dockerignore")
    patterns = ignore_patterns(ignore.read_text())
    sources = [
        source
        for stage in parse(path)
        for arguments in stage.all("COPY")
        if "from" not in copy_sources(arguments)[1]
        for source in copy_sources(arguments)[0]
    ]

    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
        assert not ignored(source, patterns), f"COPY {source}: left out of the build context by {ignore.name}"
        if (REPO / source).is_dir():
            assert not ignored(f"{source.rstrip('/')}/pyproject.toml", patterns), source
    for private in (".git/config", ".venv/bin/python", "var/dev-api-key", "var/pacer.db", "services/x/a.egg-info/b"):
        assert ignored(private, patterns), f"{private} would be sent to the builder"


def test_the_ignore_matcher_follows_dockerignore_rules() -> None:
    patterns = ignore_patterns("*\n!libs/common/\n**/__pycache__\n")

    assert ignored("README.md", patterns)
    assert not ignored("libs/common/pyproject.toml", patterns)
    assert ignored("libs/common/pacer_common/__pycache__/x.pyc", patterns)
    assert ignored("libs/other/x.py", patterns)


@pytest.mark.parametrize("service", SERVICES)
def test_the_entrypoint_is_the_services_console_script(service: str) -> None:
    final = parse(dockerfile(service))[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    command = json.loads(entrypoint)  # exec form: the script gets SIGTERM itself, no shell in between

    assert Path(command[0]).parent == Path("/opt/pacer/bin")
    assert Path(command[0]).name == f"pacer-{service}"
    assert f"pacer-{service}" in console_scripts(service)


def test_the_control_image_carries_the_admin_cli_the_migration_job_runs() -> None:
    documents = yaml.safe_load_all((K8S / "base" / "migrate-job.yaml").read_text())
    job = next(d for d in documents if d)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]

    assert Path(command[0]).name in console_scripts("control")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/pacer-control")


@pytest.mark.parametrize("service", SERVICES)
def test_exposed_ports_are_the_ports_the_pods_declare(service: str) -> None:
    final = parse(dockerfile(service))[-1]
    exposed = {int(port.split("/")[0]) for arguments in final.all("EXPOSE") for port in arguments.split()}

    assert exposed == container_ports(service)


@pytest.mark.parametrize("service", SERVICES)
def test_no_credential_is_baked_into_the_image(service: str) -> None:
    for stage in parse(dockerfile(service)):
        for keyword in ("ENV", "ARG"):
            for arguments in stage.all(keyword):
                names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arguments) or [arguments.split()[0]]
                assert not [n for n in names if SECRET_NAMES.search(n)], f"{keyword} {arguments}"

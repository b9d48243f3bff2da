"""Helpers for the deployment tests: rendering the kustomize targets, walking pod templates, reading the code's
settings and metric declarations (parsed, not imported, so the tests do not depend on what is installed)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests.support.environment import require, variable

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
DOCKER = REPO / "deploy" / "docker"
DASHBOARD = REPO / "deploy" / "grafana" / "pacer-dashboard.json"
MONITORING = REPO / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
CHART = REPO / "deploy" / "helm" / "pacer"
# The Prometheus jobs: each named after its service's app.kubernetes.io/name label.
JOBS = ("pacer-control", "pacer-scheduler", "pacer-executor", "pacer-gateway", "pacer-mcp")
# Each service's default metrics port (PACER_METRICS_ADDR), the port its job scrapes.
METRICS_PORTS = {"control": 9464, "scheduler": 9465, "executor": 9466, "gateway": 9467, "mcp": 9468}
# Series Prometheus makes itself for every target rather than scraping them.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# The kustomize targets, and "helm": deploy/helm/pacer rendered with its default values (release pacer).
TARGETS = ("base", "overlays/dev", "overlays/prod", "helm")
SERVICES = ("control", "scheduler", "executor", "gateway", "mcp")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")
PACER_UID = 10001

Manifest = dict[str, Any]


def required(problem: str) -> NoReturn:
    """Skip for a missing tool locally; under CI=true the deployment checks must run, so fail."""
    require(problem, "the deployment tests")


def kustomize_command() -> list[str]:
    """`kubectl kustomize` (PACER_KUBECTL, else kubectl on PATH), else a standalone `kustomize build`."""
    kubectl = variable("PACER_KUBECTL") or shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build"]
    required("neither kubectl nor kustomize is on PATH: install kubectl (kustomize is built in) to render deploy/k8s")


def tool(name: str, setting: str, script: str) -> str:
    """The path of a command-line tool the checks run: `setting` (PACER_HELM, PACER_PROMTOOL), else `name` on PATH."""
    found = variable(setting) or shutil.which(name)
    if not found:
        required(f"{name} is not installed: run scripts/{script} (make test does), or set {setting}")
    return found


def run(command: list[str]) -> str:
    """Run a tool and return its output; a failure fails the test with what the tool said."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}", pytrace=False)
    return done.stdout


def helm() -> str:
    return tool("helm", "PACER_HELM", "ensure-helm.sh")


def render_chart(*settings: str, namespace: str = "pacer") -> list[Manifest]:
    """The resources `helm template pacer deploy/helm/pacer` produces with `--set` `settings`."""
    command = [helm(), "template", "pacer", str(CHART), "--namespace", namespace]
    for setting in settings:
        command += ["--set", setting]
    return [doc for doc in yaml.safe_load_all(run(command)) if doc]


class Renderings(dict[str, list[Manifest]]):
    """Each target rendered once, when a test first asks for it (a missing helm skips only the chart's checks)."""

    def __missing__(self, target: str) -> list[Manifest]:
        self[target] = render(target)
        return self[target]


def render(target: str) -> list[Manifest]:
    """The resources `kustomize build deploy/k8s/<target>` produces (`helm template` of the chart for "helm")."""
    if target == "helm":
        return render_chart()
    return [doc for doc in yaml.safe_load_all(run([*kustomize_command(), str(K8S / target)])) if doc]


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The one resource of `kind` named `name` (generated ConfigMaps match by the name before their hash)."""
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (m["metadata"]["name"] == name or _generated_from(m["metadata"]["name"], name))
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _generated_from(actual: str, name: str) -> bool:
    return re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", actual) is not None


@dataclass(frozen=True)
class PodTemplate:
    """A workload's pod template, with what the checks need to name it."""

    kind: str
    name: str
    component: str
    spec: Manifest
    metadata: Manifest

    def containers(self, *, init: bool = True) -> Iterator[Manifest]:
        yield from self.spec.get("containers", [])
        if init:
            yield from self.spec.get("initContainers", [])


def pod_templates(manifests: list[Manifest]) -> Iterator[PodTemplate]:
    """Every pod template in the rendered resources (CronJobs through their job template)."""
    for m in manifests:
        if m["kind"] not in WORKLOADS:
            continue
        spec = m["spec"]
        if m["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        template = spec["template"]
        labels = template["metadata"].get("labels", {})
        yield PodTemplate(
            m["kind"],
            m["metadata"]["name"],
            labels.get("app.kubernetes.io/component", ""),
            template["spec"],
            template["metadata"],
        )


def is_pacer_image(image: str) -> bool:
    return image.split(":")[0].split("@")[0].startswith("ghcr.io/pacer/pacer-")


def environment(container: Manifest, manifests: list[Manifest]) -> dict[str, str]:
    """The container's environment from its ConfigMaps and plain values (Secret references as `<secret>`)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config = find(manifests, "ConfigMap", source["configMapRef"]["name"])
            env.update(config.get("data", {}))
        elif "secretRef" in source:
            secret = find(manifests, "Secret", source["secretRef"]["name"])
            env.update(dict.fromkeys({**secret.get("data", {}), **secret.get("stringData", {})}, "<secret>"))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "<secret>" if "valueFrom" in item else "")
    return env


# Which settings class each component reads (the migration Job runs pacer-admin, which reads ControlSettings).
SETTINGS_FILES = {
    "control": ("services/control/pacer_control/settings.py", "ControlSettings"),
    "migration": ("services/control/pacer_control/settings.py", "ControlSettings"),
    "scheduler": ("services/scheduler/pacer_scheduler/settings.py", "SchedulerSettings"),
    "executor": ("services/executor/pacer_executor/settings.py", "ExecutorSettings"),
    "gateway": ("services/gateway/pacer_gateway/settings.py", "GatewaySettings"),
    "mcp": ("services/mcp/pacer_mcp/settings.py", "McpSettings"),
}
# Groups of fields several services share (`pacer_common.settings.load` reads them with the group's ENV_PREFIX).
SHARED_SETTINGS = "libs/common/pacer_common/settings.py"


def _settings_class(path: str, class_name: str) -> ast.ClassDef:
    for node in ast.walk(ast.parse((REPO / path).read_text())):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return node
    raise AssertionError(f"{class_name} not found in {path}")


def _class_variables(node: ast.ClassDef, prefix: str) -> set[str]:
    found: set[str] = set()
    for statement in node.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        annotation = ast.unparse(statement.annotation)
        if annotation.startswith("ClassVar"):
            continue
        if annotation in ("ServerTls", "ClientTls", "Operations"):
            group = _settings_class(SHARED_SETTINGS, annotation)
            found |= _class_variables(group, _env_prefix(group))
        else:
            found.add(f"PACER_{prefix}{statement.target.id}".upper())
    return found


def _env_prefix(group: ast.ClassDef) -> str:
    for statement in group.body:
        if isinstance(statement, ast.AnnAssign) and ast.unparse(statement.target) == "ENV_PREFIX":
            assert isinstance(statement.value, ast.Constant)
            return str(statement.value.value)
    raise AssertionError(f"{group.name} has no ENV_PREFIX")


def settings_variables(component: str) -> set[str]:
    """The PACER_* variables a component reads: `PACER_<FIELD>` for each field of its settings dataclass, and the
    fields of the shared groups it holds (TLS, operations) under their group's prefix."""
    return _class_variables(_settings_class(*SETTINGS_FILES[component]), "")


_DECLARATION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|Info|Enum|(?:Counter|Gauge|Histogram|Summary)MetricFamily)\(\s*"
    r"[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']"
)


_SIDED_DECLARATION = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*f[\"'](grpc_\{side\}_[a-z_]+)[\"']")


def declared_metrics() -> dict[str, str]:
    """Metric families the code declares with literal names (prometheus_client), name -> type, from every service's
    metrics.py and the shared library. Counters are keyed without `_total`, as Prometheus families are."""
    sources = [*REPO.glob("services/*/pacer_*/metrics.py"), *REPO.glob("libs/common/pacer_common/*.py")]
    found: dict[str, str] = {}
    for source in sources:
        for kind, name in _DECLARATION.findall(source.read_text()):
            family = name.removesuffix("_total") if kind.startswith("Counter") else name
            found[family] = kind.removesuffix("MetricFamily").lower()
        # The gRPC families are declared once per side: f"grpc_{side}_handled_total" (pacer_common.telemetry).
        for kind, name in _SIDED_DECLARATION.findall(source.read_text()):
            for side in ("server", "client"):
                family = name.replace("{side}", side)
                found[family.removesuffix("_total") if kind == "Counter" else family] = kind.lower()
    return found


_PROMQL_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def rules(document: Manifest) -> list[Manifest]:
    """The rules of a Prometheus rule file's (or a PrometheusRule's spec's) groups."""
    return [rule for group in document["groups"] for rule in group["rules"]]


def charts(dashboard: Manifest) -> list[Manifest]:
    """The dashboard's panels that query, without the rows that only head a group of them."""
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard query, and the series selector of each query variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = [(panel["title"], target["expr"]) for panel in charts(dashboard) for target in panel["targets"]]
    for item in dashboard["templating"]["list"]:
        if item["type"] == "query":  # label_values(<series selector>, <label>)
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", item["definition"])
            assert selector, item["definition"]
            found.append((f"variable {item['name']}", selector.group(1)))
    return found


def jobs_named(expression: str) -> set[str]:
    """The jobs a PromQL expression selects by name (`job="x"`, `job=~"x|y"`)."""
    found: set[str] = set()
    for operator, value in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', expression):
        found |= set(value.split("|")) if operator == "=~" else {value}
    return found


def promql_metrics(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _PROMQL_GROUPING.sub("", text)
    names = re.findall(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)
    return {name for name in names if name.lower() not in _PROMQL_KEYWORDS}


def metric_family(series: str, declared: dict[str, str]) -> str:
    """The declared family a series name belongs to (`x_bucket` -> `x` for a histogram, `x_total` -> `x`)."""
    for suffix, kinds in (
        ("_bucket", {"histogram"}),
        ("_sum", {"histogram", "summary"}),
        ("_count", {"histogram", "summary"}),
        ("_total", {"counter"}),
    ):
        base = series.removesuffix(suffix)
        if base != series and declared.get(base) in kinds:
            return base
    return series

"""deploy/monitoring and the kustomize monitoring component: the alert rules pass promtool and fire when they should,
the PrometheusRule carries the same rules, the ServiceMonitors and PodMonitor find the services' metrics ports, and
rules, dashboard and scrape configuration agree on the job names and only name metrics the code declares (the live
scrape is tests/e2e/test_monitoring_live.py)."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    ALERTS,
    JOBS,
    K8S,
    METRICS_PORTS,
    MONITORING,
    SYNTHETIC,
    Manifest,
    dashboard_expressions,
    declared_metrics,
    jobs_named,
    metric_family,
    pod_templates,
    promql_metrics,
    render,
    rules,
    run,
    tool,
)

PROMTOOL_TESTS = Path(__file__).parent / "promtool" / "alerts_test.yaml"
COMPONENT = K8S / "components" / "monitoring"


@pytest.fixture(scope="module")
def promtool() -> str:
    return tool("promtool", "PACER_PROMTOOL", "ensure-promtool.sh")


@pytest.fixture(scope="module")
def alerts() -> Manifest:
    loaded: Manifest = yaml.safe_load(ALERTS.read_text())
    return loaded


@pytest.fixture(scope="module")
def with_component(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """The base with the monitoring component, as an overlay that opts in would render it."""
    overlay = tmp_path_factory.mktemp("monitored")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "base", overlay)],
                "components": [os.path.relpath(COMPONENT, overlay)],
            }
        )
    )
    return render(str(overlay))


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    output = run([promtool, "check", "rules", str(ALERTS)])

    assert re.search(r"SUCCESS: \d+ rules found", output), output


def test_the_alerts_fire_on_the_series_that_should_raise_them_and_not_before(promtool: str) -> None:
    assert "SUCCESS" in run([promtool, "test", "rules", str(PROMTOOL_TESTS)])


def test_promtool_rejects_a_broken_rule(promtool: str, alerts: Manifest, tmp_path: Path) -> None:
    document = copy.deepcopy(alerts)
    rules(document)[0]["expr"] = "sum by (namespace (up)"
    broken = tmp_path / "alerts.yaml"
    broken.write_text(yaml.safe_dump(document))

    with pytest.raises(pytest.fail.Exception, match="parse error"):
        run([promtool, "check", "rules", str(broken)])


def test_every_alert_has_a_severity_and_says_what_happened(alerts: Manifest) -> None:
    names = [rule["alert"] for rule in rules(alerts)]
    assert len(names) == len(set(names)) >= 8
    for rule in rules(alerts):
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["alert"].startswith("Pacer"), rule["alert"]


def test_the_prometheus_rule_carries_exactly_the_rules_of_the_file(
    alerts: Manifest, with_component: list[Manifest]
) -> None:
    (resource,) = [m for m in with_component if m["kind"] == "PrometheusRule"]

    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["spec"] == {"groups": alerts["groups"]}
    assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "pacer"


def test_the_monitors_select_each_service_and_name_its_job_after_it(with_component: list[Manifest]) -> None:
    monitors = [m for m in with_component if m["kind"] in ("ServiceMonitor", "PodMonitor")]
    services = [m for m in with_component if m["kind"] == "Service"]
    pods = list(pod_templates(with_component))
    jobs = set()
    for monitor in monitors:
        where = f"{monitor['kind']}/{monitor['metadata']['name']}"
        spec = monitor["spec"]
        selector = spec["selector"]["matchLabels"]
        assert spec["jobLabel"] == "app.kubernetes.io/name", where
        if monitor["kind"] == "ServiceMonitor":
            (target,) = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
            labels = target["metadata"]["labels"]
            ports = {p["name"] for p in target["spec"]["ports"]}
            wanted = {e["port"] for e in spec["endpoints"]}
        else:
            (pod,) = [p for p in pods if selector.items() <= p.metadata["labels"].items()]
            labels = pod.metadata["labels"]
            ports = {p["name"] for c in pod.containers(init=False) for p in c.get("ports", [])}
            wanted = {e["port"] for e in spec["podMetricsEndpoints"]}
        assert wanted == {"metrics"} <= ports, where
        jobs.add(labels[spec["jobLabel"]])

    assert sorted(jobs) == sorted(JOBS)


def test_the_plain_prometheus_configuration_names_jobs_the_same_way() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yaml").read_text())
    (pods,) = config["scrape_configs"]
    relabels = {tuple(r.get("source_labels", [])): r for r in pods["relabel_configs"]}

    assert config["rule_files"] == ["alerts.yaml"]
    assert relabels[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]["target_label"] == "job"
    assert relabels[("__meta_kubernetes_namespace",)]["target_label"] == "namespace"


def test_the_one_host_jobs_uncommented_scrape_every_service_on_its_metrics_port() -> None:
    text = (MONITORING / "prometheus.yaml").read_text()
    uncommented = re.sub(r"(?m)^  # (  |- job_name)", r"  \1", text)
    config = yaml.safe_load(uncommented)
    static = {c["job_name"]: c["static_configs"] for c in config["scrape_configs"] if "static_configs" in c}

    assert sorted(static) == sorted(JOBS)
    for job, targets in static.items():
        port = METRICS_PORTS[job.removeprefix("pacer-")]
        assert targets == [{"targets": [f"127.0.0.1:{port}"]}], job


def test_rules_and_dashboard_select_only_the_jobs_the_monitors_create(alerts: Manifest) -> None:
    expressions = [rule["expr"] for rule in rules(alerts)] + [expr for _, expr in dashboard_expressions()]
    named = set().union(*(jobs_named(expr) for expr in expressions))

    assert named == set(JOBS)


def test_every_metric_a_rule_names_is_declared_by_the_code(alerts: Manifest) -> None:
    declared = declared_metrics()
    for rule in rules(alerts):
        names = promql_metrics(rule["expr"]) - SYNTHETIC
        unknown = {name for name in names if metric_family(name, declared) not in declared}
        assert unknown == set(), f"{rule['alert']}: {sorted(unknown)}"

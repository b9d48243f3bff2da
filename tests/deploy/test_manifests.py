"""deploy/k8s and deploy/grafana: every kustomize target renders and validates against the Kubernetes schemas, and
keeps what docs/operations.md promises: probes, restricted pods, resources, network fences, headless schedulers,
settings the services actually read, and a dashboard that only charts metrics the code declares."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pacer_common.ports import parse_addr
from tests.deploy.manifests import (
    DASHBOARD,
    K8S,
    LONG_RUNNING,
    METRICS_PORTS,
    PACER_UID,
    TARGETS,
    Manifest,
    PodTemplate,
    Renderings,
    charts,
    declared_metrics,
    environment,
    find,
    is_pacer_image,
    jobs_named,
    metric_family,
    pod_templates,
    promql_metrics,
    render,
    required,
    settings_variables,
)

# A current release and the newest kubernetes-validate ships schemas for.
OLDEST_KUBERNETES = "1.33"
GRPC_HEALTH_PORTS = {"control": 50051, "scheduler": 50052, "executor": 50053}
LISTEN_VARIABLES = (
    "PACER_LISTEN_ADDR",
    "PACER_SCHEDULER_ADDR",
    "PACER_HEALTH_ADDR",
    "PACER_METRICS_ADDR",
    "PACER_GATEWAY_ADDR",
    "PACER_MCP_ADDR",
)
METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254")
PACER_PODS = {"app.kubernetes.io/part-of": "pacer"}
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
EXPECTED_REPLICAS = {
    "base": {"pacer-control": 2, "pacer-scheduler": 2, "pacer-gateway": 2, "pacer-mcp": 2},
    "overlays/dev": {"pacer-control": 1, "pacer-scheduler": 1, "pacer-gateway": 1, "pacer-mcp": 1},
    "overlays/prod": {"pacer-control": 2, "pacer-scheduler": 2, "pacer-gateway": 2, "pacer-mcp": 2},
    "helm": {"pacer-control": 2, "pacer-scheduler": 2, "pacer-gateway": 2, "pacer-mcp": 2},
}
EXPECTED_EXECUTOR_SCALING = {"base": (3, 20), "overlays/dev": (1, 3), "overlays/prod": (3, 20), "helm": (3, 20)}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return Renderings()


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    try:
        from kubernetes_validate import utils
    except ImportError:
        required("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return utils


def _validate_all(utils: Any, manifests: list[Manifest], version: str) -> list[str]:
    problems = []
    for manifest in manifests:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            utils.validate(manifest, version, strict=True)
        except utils.ValidationError as error:
            problems.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
        except utils.SchemaNotFoundError as error:  # strict: an unknown kind or apiVersion is a failure too
            problems.append(f"{where}: {error.message}")
    return problems


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "newest"])
def test_every_target_validates_strictly_against_the_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], kubernetes_validate: Any, target: str, version: str
) -> None:
    kubernetes_version = kubernetes_validate.latest_version() if version == "newest" else version
    manifests = rendered[target]

    assert len(manifests) > 20
    assert _validate_all(kubernetes_validate, manifests, kubernetes_version) == []


def test_strict_validation_rejects_a_field_kubernetes_does_not_know(
    rendered: dict[str, list[Manifest]], kubernetes_validate: Any
) -> None:
    deployment = copy.deepcopy(find(rendered["base"], "Deployment", "pacer-control"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"grpc": {"port": 50051}}

    assert len(_validate_all(kubernetes_validate, [deployment], OLDEST_KUBERNETES)) == 1


@pytest.mark.parametrize("target", TARGETS)
def test_every_long_running_container_has_liveness_and_readiness_probes(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    for pod in pod_templates(rendered[target]):
        if pod.kind not in LONG_RUNNING:
            continue
        for container in pod.containers(init=False):
            where = f"{pod.name}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where
            port = GRPC_HEALTH_PORTS.get(pod.component)
            if port is None:
                continue
            # gRPC health: `liveness` stays SERVING while the process drains; "" follows the service's dependency.
            assert container["livenessProbe"]["grpc"] == {"port": port, "service": "liveness"}, where
            assert container["readinessProbe"]["grpc"] == {"port": port, "service": ""}, where
            assert container["startupProbe"]["grpc"] == {"port": port, "service": "liveness"}, where
            assert port in {p["containerPort"] for p in container["ports"]}, where


def _effective(pod: PodTemplate, container: Manifest, field: str) -> Any:
    own = container.get("securityContext", {})
    return own[field] if field in own else pod.spec.get("securityContext", {}).get(field)


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_meets_the_restricted_pod_security_standard(rendered: dict[str, list[Manifest]], target: str) -> None:
    pods = list(pod_templates(rendered[target]))
    assert {pod.component for pod in pods} >= {"control", "scheduler", "executor", "gateway", "mcp", "migration"}
    for pod in pods:
        assert not any(pod.spec.get(host) for host in ("hostNetwork", "hostPID", "hostIPC")), pod.name
        assert pod.spec.get("automountServiceAccountToken") is False, pod.name
        # Service links would add PACER_<SERVICE>_PORT=tcp://... variables beside the real PACER_* settings.
        assert pod.spec.get("enableServiceLinks") is False, pod.name
        for container in pod.containers():
            where = f"{pod.name}/{container['name']}"
            context = container.get("securityContext", {})
            assert _effective(pod, container, "runAsNonRoot") is True, where
            uid = _effective(pod, container, "runAsUser")
            assert isinstance(uid, int), where
            assert uid > 0, where
            if is_pacer_image(container["image"]):
                assert uid == PACER_UID, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("privileged", False) is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert _effective(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, where


@pytest.mark.parametrize("target", TARGETS)
def test_read_only_pacer_containers_get_writable_tmp_and_var_dir(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    manifests = rendered[target]
    for pod in pod_templates(manifests):
        volumes = {volume["name"]: volume for volume in pod.spec.get("volumes", [])}
        for container in pod.containers():
            if not is_pacer_image(container["image"]):
                continue
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
            where = f"{pod.name}/{container['name']}"
            assert "emptyDir" in mounts["/tmp"], where
            var_dir = environment(container, manifests).get("PACER_VAR_DIR")
            if var_dir is not None:
                assert "emptyDir" in mounts[var_dir], where


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEMORY_UNITS = {None: 1, "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_MEMORY_UNITS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


def _quantity(resource: str, value: str | int) -> float:
    text = str(value)
    if resource == "cpu":
        cpu = _CPU.match(text)
        assert cpu, f"cpu quantity {text!r}"
        return float(cpu.group(1)) / (1000 if cpu.group(2) else 1)
    memory = _MEMORY.match(text)
    assert memory, f"memory quantity {text!r}"
    return int(memory.group(1)) * _MEMORY_UNITS[memory.group(2)]


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_requests_and_limits_cpu_and_memory(rendered: dict[str, list[Manifest]], target: str) -> None:
    for pod in pod_templates(rendered[target]):
        for container in pod.containers():
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                where = f"{pod.name}/{container['name']} {resource}"
                request = _quantity(resource, resources["requests"][resource])
                limit = _quantity(resource, resources["limits"][resource])
                assert 0 < request <= limit, where


def test_prod_gives_the_core_services_more_than_the_base(rendered: dict[str, list[Manifest]]) -> None:
    for name in ("pacer-control", "pacer-scheduler", "pacer-executor"):
        base = find(rendered["base"], "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["resources"]
        prod = find(rendered["overlays/prod"], "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        for resource in ("cpu", "memory"):
            for kind in ("requests", "limits"):
                assert _quantity(resource, prod["resources"][kind][resource]) > _quantity(
                    resource, base[kind][resource]
                ), f"{name} {kind}.{resource}"


def _policy(manifests: list[Manifest], name: str) -> Manifest:
    return find(manifests, "NetworkPolicy", name)["spec"]


def _allowed(block: Manifest, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    network = ipaddress.ip_network(block["cidr"])
    if ip.version != network.version or ip not in network:
        return False
    return not any(ip in ipaddress.ip_network(cidr) for cidr in block.get("except", []))


@pytest.mark.parametrize("target", TARGETS)
def test_executors_reach_the_internet_but_never_the_cloud_metadata_addresses(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    policy = _policy(rendered[target], "pacer-executor")
    assert "Egress" in policy["policyTypes"]
    peers = []
    for rule in policy["egress"]:
        assert rule.get("to"), "an egress rule without `to` allows every destination"
        peers.extend(rule["to"])
    blocks = [peer["ipBlock"] for peer in peers if "ipBlock" in peer]

    for address in METADATA_ADDRESSES:
        assert not any(_allowed(block, address) for block in blocks), address
    for public in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"):
        assert any(_allowed(block, public) for block in blocks), public
    # DNS and the schedulers stay reachable by selector (kube-dns and scheduler pods are in no ipBlock here).
    selected = [peer.get("podSelector", {}).get("matchLabels", {}) for peer in peers]
    assert {"k8s-app": "kube-dns"} in selected
    assert {"app.kubernetes.io/name": "pacer-scheduler"} in selected


def _ingress_sources(policy: Manifest, port: int) -> list[Manifest]:
    sources = []
    for rule in policy.get("ingress", []):
        if any(p.get("port") == port for p in rule.get("ports", [])):
            assert rule.get("from"), f"port {port} is open to every source"
            sources.extend(rule["from"])
    return sources


@pytest.mark.parametrize("target", TARGETS)
def test_internal_ports_admit_only_pacer_pods_and_metrics_only_monitoring(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    manifests = rendered[target]
    for component, port in (("control", 50051), ("scheduler", 50052)):
        policy = _policy(manifests, f"pacer-{component}")
        assert _ingress_sources(policy, port) == [{"podSelector": {"matchLabels": PACER_PODS}}], component
    for component, port in METRICS_PORTS.items():
        policy = _policy(manifests, f"pacer-{component}")
        assert _ingress_sources(policy, port) == [{"namespaceSelector": {"matchLabels": MONITORING}}], component
    deny = _policy(manifests, "pacer-default-deny-ingress")
    assert deny == {"podSelector": {"matchLabels": PACER_PODS}, "policyTypes": ["Ingress"]}
    for pod in pod_templates(manifests):
        assert pod.metadata["labels"]["app.kubernetes.io/part-of"] == "pacer", pod.name


@pytest.mark.parametrize("target", TARGETS)
def test_the_scheduler_service_is_headless_and_executors_are_pointed_at_it(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    manifests = rendered[target]
    service = find(manifests, "Service", "pacer-scheduler")["spec"]
    assert service["clusterIP"] == "None"
    assert service.get("publishNotReadyAddresses", False) is False
    executor = find(manifests, "Deployment", "pacer-executor")["spec"]["template"]["spec"]["containers"][0]
    for address in environment(executor, manifests)["PACER_SCHEDULER_ADDRS"].split(","):
        host, port = parse_addr(address)
        assert host == "pacer-scheduler"
        assert port in {p["port"] for p in service["ports"]}


@pytest.mark.parametrize("target", TARGETS)
def test_addresses_ports_probes_and_scrape_annotations_agree(rendered: dict[str, list[Manifest]], target: str) -> None:
    manifests = rendered[target]
    control = find(manifests, "Service", "pacer-control")["spec"]
    for pod in pod_templates(manifests):
        for container in pod.containers():
            env = environment(container, manifests)
            ports = {p["containerPort"] for p in container.get("ports", [])}
            for variable in LISTEN_VARIABLES:
                if variable in env:
                    host, port = parse_addr(env[variable])
                    assert host == "0.0.0.0", f"{pod.name}: {variable} must listen on the pod's addresses"
                    assert port in ports, f"{pod.name}: {variable} port {port} is not a containerPort"
            if "PACER_CONTROL_ADDR" in env:
                host, port = parse_addr(env["PACER_CONTROL_ADDR"])
                assert host == "pacer-control"
                assert port in {p["port"] for p in control["ports"]}
        if pod.component in METRICS_PORTS:
            annotations = pod.metadata["annotations"]
            container = pod.spec["containers"][0]
            metrics_port = METRICS_PORTS[pod.component]
            assert parse_addr(environment(container, manifests)["PACER_METRICS_ADDR"])[1] == metrics_port
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(metrics_port)
            assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("target", TARGETS)
def test_every_setting_given_to_a_service_is_one_it_reads(rendered: dict[str, list[Manifest]], target: str) -> None:
    manifests = rendered[target]
    shared = find(manifests, "ConfigMap", "pacer-config")["data"]
    readers: dict[str, set[str]] = {name: set() for name in shared}
    for pod in pod_templates(manifests):
        for container in pod.containers():
            if not is_pacer_image(container["image"]):
                continue
            known = settings_variables(pod.component)
            env = {name for name in environment(container, manifests) if name.startswith("PACER_")}
            for name in env & known & set(shared):
                readers[name].add(pod.component)
            own = env - set(shared)
            assert own <= known, f"{pod.name} is given settings it does not read: {sorted(own - known)}"
    assert {name for name, components in readers.items() if not components} == set()


@pytest.mark.parametrize("component", ["scheduler", "executor"])
def test_draining_services_get_more_grace_than_their_drain_timeout(
    rendered: dict[str, list[Manifest]], component: str
) -> None:
    manifests = rendered["base"]
    pod = find(manifests, "Deployment", f"pacer-{component}")["spec"]["template"]["spec"]
    drain_s = int(environment(pod["containers"][0], manifests)["PACER_DRAIN_TIMEOUT_MS"]) / 1000
    assert pod["terminationGracePeriodSeconds"] >= drain_s + 10


@pytest.mark.parametrize("target", TARGETS)
def test_replicas_autoscaling_and_disruption_budgets(rendered: dict[str, list[Manifest]], target: str) -> None:
    manifests = rendered[target]
    for name, replicas in EXPECTED_REPLICAS[target].items():
        assert find(manifests, "Deployment", name)["spec"]["replicas"] == replicas, name
    executor = find(manifests, "Deployment", "pacer-executor")
    assert "replicas" not in executor["spec"], "the autoscaler owns the executor count"
    hpa = find(manifests, "HorizontalPodAutoscaler", "pacer-executor")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pacer-executor"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == EXPECTED_EXECUTOR_SCALING[target]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    for component in ("control", "scheduler", "executor"):
        deployment = find(manifests, "Deployment", f"pacer-{component}")
        budget = find(manifests, "PodDisruptionBudget", f"pacer-{component}")["spec"]
        assert budget["selector"] == deployment["spec"]["selector"], component
        assert budget["maxUnavailable"] not in (0, "0%"), f"{component}: a budget of 0 blocks every node drain"


@pytest.mark.parametrize("target", TARGETS)
def test_every_resource_carries_the_standard_labels_and_selectors_match(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    manifests = rendered[target]
    for manifest in manifests:
        labels = manifest["metadata"].get("labels", {})
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        assert labels.get("app.kubernetes.io/part-of") == "pacer", where
        assert labels.get("app.kubernetes.io/name"), where
        assert labels.get("app.kubernetes.io/component"), where
        selector = manifest.get("spec", {}).get("selector", {})
        template = manifest.get("spec", {}).get("template")
        if template is not None and "matchLabels" in selector:
            assert selector["matchLabels"].items() <= template["metadata"]["labels"].items(), where
        if manifest["kind"] == "Service" and selector:
            backends = [p for p in pod_templates(manifests) if selector.items() <= p.metadata["labels"].items()]
            assert backends, f"{where} selects no pods"


def _images(manifests: list[Manifest]) -> dict[str, str]:
    return {f"{pod.name}/{c['name']}": c["image"] for pod in pod_templates(manifests) for c in pod.containers()}


@pytest.mark.parametrize("target", ["overlays/dev", "overlays/prod"])
def test_overlays_pin_every_image_and_migrate_with_the_control_image(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    images = _images(rendered[target])
    for where, image in images.items():
        pinned = "@sha256:" in image or re.search(r":[\w][\w.-]*$", image.rsplit("/", 1)[-1])
        assert pinned, f"{where}: {image} has no tag"
        assert not image.endswith(":latest"), where
    migrate = next(where for where in images if where.startswith("pacer-migrate"))
    assert images[migrate] == images["pacer-control/control"]
    if target == "overlays/prod":
        for where, image in images.items():
            assert image.startswith("ghcr.io/pacer/pacer-"), where
            assert not image.endswith(":dev"), where


def test_prod_never_writes_the_secret_and_base_marks_its_placeholders(rendered: dict[str, list[Manifest]]) -> None:
    assert [m for m in rendered["overlays/prod"] if m["kind"] == "Secret"] == []
    base = find(rendered["base"], "Secret", "pacer-secrets")
    assert "REPLACE" in base["metadata"]["annotations"]["pacer.dev/placeholder"]
    assert all("REPLACE" in value for value in base["stringData"].values())


def test_dev_runs_its_own_postgresql_that_the_secret_points_at(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["overlays/dev"]
    database = find(manifests, "StatefulSet", "pacer-postgres")
    service = find(manifests, "Service", "pacer-postgres")
    url = find(manifests, "Secret", "pacer-secrets")["stringData"]["PACER_DATABASE_URL"]
    credentials = find(manifests, "Secret", "pacer-postgres")["stringData"]

    assert database["spec"]["replicas"] == 1
    assert url == (
        f"postgresql://{credentials['POSTGRES_USER']}:{credentials['POSTGRES_PASSWORD']}"
        f"@{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/{credentials['POSTGRES_DB']}"
    )
    namespace = find(manifests, "Namespace", "pacer-dev")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("target", TARGETS)
def test_the_migration_job_runs_pacer_admin_migrate_with_only_the_database_url_and_secrets_key(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    (job,) = [m for m in rendered[target] if m["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["/opt/pacer/bin/pacer-admin", "migrate"]
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    # The key seals endpoint secrets that a migration moves (0003 sealed the plaintext of older releases).
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]} == {
        name: {"name": "pacer-secrets", "key": name} for name in ("PACER_DATABASE_URL", "PACER_SECRETS_KEYS")
    }


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_services_that_need_them_get_the_credentials(rendered: dict[str, list[Manifest]], target: str) -> None:
    expected = {
        "control": {"PACER_DATABASE_URL", "PACER_SERVICE_TOKEN", "PACER_SECRETS_KEYS"},
        "migration": {"PACER_DATABASE_URL", "PACER_SECRETS_KEYS"},
        "scheduler": {"PACER_SERVICE_TOKEN"},
        "executor": {"PACER_SERVICE_TOKEN"},  # it calls tenants' URLs: never the database
        "gateway": set(),
        "mcp": set(),
    }
    for pod in pod_templates(rendered[target]):
        if pod.component not in expected:
            continue
        (container,) = pod.spec["containers"]
        secrets = {e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        assert not [s for s in container.get("envFrom", []) if "secretRef" in s], pod.name
        assert secrets == expected[pod.component], pod.name


# The dashboard ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> Manifest:
    loaded: Manifest = json.loads(DASHBOARD.read_text())
    return loaded


def _expressions(dashboard: Manifest) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in charts(dashboard) for target in panel["targets"]]


def test_the_dashboard_asks_for_a_prometheus_data_source(dashboard: Manifest) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert dashboard["uid"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in charts(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"]), panel["title"]


def test_every_dashboard_expression_charts_metrics_the_code_declares(dashboard: Manifest) -> None:
    declared = declared_metrics()
    assert {"pacer_runs", "pacer_dispatch_lateness_seconds", "pacer_claim_duration_seconds"} <= set(declared)
    queries = _expressions(dashboard)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(<series selector>, <label>)
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert selector, variable["definition"]
            queries.append((f"variable {variable['name']}", selector.group(1)))
    for title, expression in queries:
        names = promql_metrics(expression)
        assert names, f"{title}: {expression}"
        unknown = {name for name in names if metric_family(name, declared) not in declared}
        assert unknown == set(), f"{title}: {sorted(unknown)} are not declared in services/*/pacer_*/metrics.py"


def test_promql_metric_extraction_ignores_functions_labels_and_keywords() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b", c=~"d|e"}[$__rate_interval]))) '
        "/ sum(y and on (instance) z)"
    )

    assert promql_metrics(expression) == {"x_bucket", "y", "z"}
    assert metric_family("x_bucket", {"x": "histogram"}) == "x"
    assert metric_family("x_bucket", {"x": "gauge"}) == "x_bucket"


def test_the_dashboard_has_the_panels_operators_look_for(dashboard: Manifest) -> None:
    expressions = " ".join(expression for _, expression in _expressions(dashboard))

    assert "sum by (status) (rate(pacer_runs_total" in expressions
    assert 'status!="SUCCESS"' in expressions
    for quantile in ("0.5", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(pacer_dispatch_lateness_seconds_bucket" in expressions
        assert f"histogram_quantile({quantile}, sum by (le) (rate(pacer_claim_duration_seconds_bucket" in expressions
    assert "pacer_executors_connected" in expressions
    assert "pacer_runs_in_flight" in expressions
    for wanted in (
        'sum by (status) (rate(pacer_gateway_requests_total{namespace=~"$namespace", job="pacer-gateway"}',
        'sum by (outcome) (rate(pacer_mcp_tool_calls_total{namespace=~"$namespace", job="pacer-mcp"}',
        "histogram_quantile(0.99, sum by (le, route) (rate(pacer_gateway_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, tool) (rate(pacer_mcp_tool_call_duration_seconds_bucket",
    ):
        assert wanted in expressions


def test_the_rest_and_mcp_panels_sit_under_their_own_row_below_the_runs(dashboard: Manifest) -> None:
    panels = dashboard["panels"]
    (row,) = [panel for panel in panels if panel["type"] == "row"]
    below = [panel for panel in panels if panel["gridPos"]["y"] > row["gridPos"]["y"]]
    above = [panel for panel in charts(dashboard) if panel not in below]

    assert row["title"] == "REST gateway and MCP server"
    assert row["collapsed"] is False
    assert all(panel["gridPos"]["y"] + panel["gridPos"]["h"] <= row["gridPos"]["y"] for panel in above)
    assert {job for panel in below for t in panel["targets"] for job in jobs_named(t["expr"])} == {
        "pacer-gateway",
        "pacer-mcp",
    }


@pytest.mark.parametrize("target", ["overlays/dev", "overlays/prod"])
def test_an_upgrade_creates_a_new_migration_job_named_after_the_release(
    rendered: dict[str, list[Manifest]], target: str
) -> None:
    (job,) = [m for m in rendered[target] if m["kind"] == "Job"]
    tag = job["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
    name = job["metadata"]["name"]

    assert name == f"pacer-migrate-{tag}"
    # A Job's name becomes its pods' job-name label: a DNS label of at most 63 characters.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
    assert len(name) <= 63, name
    assert job["spec"]["ttlSecondsAfterFinished"] > 0, "finished Jobs of earlier releases must go away by themselves"


def test_a_new_image_tag_renames_the_migration_job(tmp_path: Path) -> None:
    overlay = tmp_path / "upgrade"
    overlay.mkdir()
    prod = (K8S / "overlays" / "prod" / "kustomization.yaml").read_text()
    (overlay / "kustomization.yaml").write_text(
        prod.replace("../../base", os.path.relpath(K8S / "base", overlay)).replace('newTag: "0.1.0"', 'newTag: "0.2.0"')
    )
    for name in ("resources.yaml",):
        (overlay / name).write_text((K8S / "overlays" / "prod" / name).read_text())

    jobs = [m["metadata"]["name"] for m in render(str(overlay)) if m["kind"] == "Job"]

    assert jobs == ["pacer-migrate-0.2.0"]

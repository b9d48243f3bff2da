"""deploy/helm/pacer: `helm lint` passes, `helm template` renders the objects of the kustomize base (the chart's
configuration files are the base's), and the values operators set (image, replicas, the credentials Secret, TLS,
resources, monitoring) land where the services read them. The shared checks of test_manifests.py (schemas, probes,
restricted pods, network fences, settings) run on the chart's default rendering as the target "helm"."""

from __future__ import annotations

import copy
import filecmp
import re

import pytest
import yaml

from tests.deploy.manifests import (
    ALERTS,
    CHART,
    K8S,
    Manifest,
    environment,
    find,
    helm,
    pod_templates,
    render,
    render_chart,
    required,
    run,
    settings_variables,
)

HELM_LABELS = ("app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "helm.sh/chart")
TLS_DIR = "/etc/pacer/tls"


def _unhashed(name: str) -> str:
    """A name without the content hash kustomize appends to generated ConfigMaps."""
    return re.sub(r"-config-[a-z0-9]{10}$", "-config", name)


def _comparable(manifest: Manifest) -> Manifest:
    """A resource without what only one of the two tools adds: Helm's labels and hooks, the config checksum, the
    kustomize hash of ConfigMap names, image tags (the chart defaults to its appVersion; the base has none)."""
    found = copy.deepcopy(manifest)
    metadata = found["metadata"]
    metadata["name"] = _unhashed(metadata["name"])
    for label in HELM_LABELS:
        metadata.get("labels", {}).pop(label, None)
    metadata.pop("annotations", None)
    template = found.get("spec", {}).get("template")
    if template is not None:
        annotations = template["metadata"].pop("annotations", {})
        annotations.pop("checksum/config", None)
        if annotations:
            template["metadata"]["annotations"] = annotations
        for container in template["spec"].get("containers", []):
            container["image"] = container["image"].split(":")[0]
        for container in template["spec"].get("containers", []):
            for source in container.get("envFrom", []):
                name = source.get("configMapRef", {}).get("name")
                if name:
                    source["configMapRef"]["name"] = _unhashed(name)
    return found


def _by_identity(manifests: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    comparable = [_comparable(m) for m in manifests]
    return {(m["kind"], m["metadata"]["name"]): m for m in comparable}


@pytest.fixture(scope="module")
def chart() -> list[Manifest]:
    return render_chart()


def test_helm_lint_passes_strictly_with_the_default_values_and_every_option() -> None:
    assert "1 chart(s) linted, 0 chart(s) failed" in run([helm(), "lint", "--strict", str(CHART)])
    options = [
        "--set", "tls.secretName=pacer-tls", "--set", "monitoring.enabled=true", "--set", "secrets.create=true",
        "--set", "secrets.databaseUrl=postgresql://pacer:pw@db:5432/pacer", "--set", "secrets.serviceToken=t",
        "--set", "secrets.secretsKeys=k1:a2V5",
    ]  # fmt: skip
    assert "0 chart(s) failed" in run([helm(), "lint", "--strict", str(CHART), *options])


def test_the_chart_renders_the_objects_of_the_kustomize_base(chart: list[Manifest]) -> None:
    base = _by_identity(render("base"))
    rendered = _by_identity(chart)
    # The base's Secret holds placeholders; the chart reads a Secret created out of band (or writes it on request).
    del base[("Secret", "pacer-secrets")]

    assert sorted(rendered) == sorted(base)
    different = [identity for identity in base if rendered[identity] != base[identity]]
    assert different == []


def test_the_chart_carries_the_bases_settings_and_the_alert_rules() -> None:
    for env_file in (K8S / "base" / "config").glob("*.env"):
        assert filecmp.cmp(env_file, CHART / "config" / env_file.name, shallow=False), env_file.name
    assert filecmp.cmp(ALERTS, CHART / "files" / "alerts.yaml", shallow=False)


def test_the_migration_job_is_a_hook_that_replaces_the_one_before(chart: list[Manifest]) -> None:
    job = find(chart, "Job", "pacer-migrate")
    annotations = job["metadata"]["annotations"]

    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "pre-upgrade"}
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"


def test_values_set_the_images_replicas_credentials_secret_and_resources() -> None:
    manifests = render_chart(
        "image.tag=0.2.0",
        "image.repository=registry.example.com/pacer",
        "image.digests.executor=sha256:" + "ab" * 32,
        "control.replicas=3",
        "executor.autoscaling.maxReplicas=40",
        "secrets.name=pacer-credentials",
        "scheduler.resources.limits.memory=2Gi",
        "env.PACER_LOG_LEVEL=DEBUG",
    )
    images = {p.name: p.spec["containers"][0]["image"] for p in pod_templates(manifests)}

    assert images["pacer-control"] == images["pacer-migrate"] == "registry.example.com/pacer/pacer-control:0.2.0"
    assert images["pacer-executor"] == "registry.example.com/pacer/pacer-executor@sha256:" + "ab" * 32
    assert find(manifests, "Deployment", "pacer-control")["spec"]["replicas"] == 3
    assert find(manifests, "HorizontalPodAutoscaler", "pacer-executor")["spec"]["maxReplicas"] == 40
    for pod in pod_templates(manifests):
        for item in pod.spec["containers"][0].get("env", []):
            assert item["valueFrom"]["secretKeyRef"]["name"] == "pacer-credentials", pod.name
    scheduler = find(manifests, "Deployment", "pacer-scheduler")["spec"]["template"]["spec"]["containers"][0]
    assert scheduler["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert find(manifests, "ConfigMap", "pacer-config")["data"]["PACER_LOG_LEVEL"] == "DEBUG"


def test_a_changed_setting_rolls_only_the_pods_that_read_it(chart: list[Manifest]) -> None:
    changed = render_chart("gateway.env.PACER_LOG_LEVEL=DEBUG")

    def checksums(manifests: list[Manifest]) -> dict[str, str]:
        return {
            p.name: p.metadata["annotations"]["checksum/config"] for p in pod_templates(manifests) if p.kind != "Job"
        }

    before, after = checksums(chart), checksums(changed)
    assert [name for name in before if before[name] != after[name]] == ["pacer-gateway"]


def test_tls_gives_every_hop_mutual_tls_and_moves_the_probes_to_plaintext_health_ports() -> None:
    manifests = render_chart("tls.secretName=pacer-tls")
    try:
        from kubernetes_validate import utils
    except ImportError:
        required("kubernetes-validate is not installed (pip install kubernetes-validate)")
    for manifest in manifests:
        utils.validate(manifest, utils.latest_version(), strict=True)
    for pod in pod_templates(manifests):
        if pod.component == "migration":
            continue
        (container,) = pod.spec["containers"]
        env = environment(container, manifests)
        tls_settings = {name for name in env if name.startswith("PACER_TLS_") or name == "PACER_HEALTH_ADDR"}
        assert tls_settings <= settings_variables(pod.component), pod.name
        assert {"name": "tls", "mountPath": TLS_DIR, "readOnly": True} in container["volumeMounts"], pod.name
        assert {"name": "tls", "secret": {"secretName": "pacer-tls", "defaultMode": 0o440}} in pod.spec["volumes"]
        if pod.component in ("control", "scheduler"):
            assert env["PACER_TLS_CLIENT_CA_FILE"] == f"{TLS_DIR}/ca.crt", pod.name
            health_port = int(env["PACER_HEALTH_ADDR"].rsplit(":", 1)[1])
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["grpc"]["port"] == health_port, pod.name
            assert health_port in {p["containerPort"] for p in container["ports"]}, pod.name
        if pod.component != "control":
            assert env["PACER_TLS_CA_FILE"] == f"{TLS_DIR}/ca.crt", pod.name
            assert env["PACER_TLS_CLIENT_CERT_FILE"] == f"{TLS_DIR}/tls.crt", pod.name


def test_the_chart_writes_the_credentials_secret_only_when_asked_and_then_needs_every_value() -> None:
    values = (
        "secrets.databaseUrl=postgresql://pacer:pw@db:5432/pacer",
        "secrets.serviceToken=token",
        "secrets.secretsKeys=k1:a2V5",
    )
    secret = find(render_chart("secrets.create=true", *values), "Secret", "pacer-secrets")

    assert secret["stringData"]["PACER_DATABASE_URL"] == "postgresql://pacer:pw@db:5432/pacer"
    with pytest.raises(pytest.fail.Exception, match=r"secrets\.databaseUrl"):
        render_chart("secrets.create=true")


def test_monitoring_renders_the_monitors_and_rules_of_the_kustomize_component() -> None:
    manifests = render_chart("monitoring.enabled=true", "monitoring.labels.release=prometheus")
    files = [K8S / "components" / "monitoring" / name for name in ("monitors.yaml", "prometheusrule.yaml")]
    component = {
        (m["kind"], m["metadata"]["name"]): m["spec"] for path in files for m in yaml.safe_load_all(path.read_text())
    }
    rendered = {
        (m["kind"], m["metadata"]["name"]): m["spec"]
        for m in manifests
        if m["apiVersion"].startswith("monitoring.coreos.com")
    }

    assert rendered == component
    assert all(m["metadata"]["labels"]["release"] == "prometheus" for m in manifests if "coreos" in m["apiVersion"])

"""The deployment files in deploy/ are well formed and agree with the gateway: the
Kustomize overlays render (kubectl kustomize) into objects that pass the Kubernetes
schemas (kubernetes-validate), the gateway configs they carry pass modelway's own
validation, probes, security context, replicas, HPA and PDB are what the docs promise;
the Helm chart's values match its schema and its templates read only values that exist;
compose.yaml and the Dockerfile have the services and instructions the docs describe.

No Docker engine, Kubernetes cluster or Helm binary is needed: nothing is built, started
or applied here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelway.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "kustomize"
CHART = DEPLOY / "helm" / "modelway"
OVERLAYS = ("single", "scaled")
# kubernetes-validate ships schemas from 1.25 on; 1.29 is the oldest release still in
# the main clouds' extended support, and has every API used here (autoscaling/v2, policy/v1).
K8S_VERSION = "1.29.0"
# What the gateway's ${...} references need, with placeholder values.
CONFIG_ENV = {
    "MODELWAY_MASTER_KEY": "placeholder-master-key-0123456789",
    "MODELWAY_DATABASE_URL": "postgresql://modelway:secret@postgres:5432/modelway",
    "MODELWAY_REDIS_URL": "redis://redis:6379/0",
}

Obj = dict[str, Any]


def check_gateway_config(text: str, env: dict[str, str] | None = None) -> None:
    parse_config(text, env=CONFIG_ENV if env is None else env)  # raises ConfigError


# --- Kustomize --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl is not installed (Debian: apt-get install kubernetes-client; "
            "`make test` installs it when it can)"
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / "overlays" / request.param)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return request.param, objects


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Obj], kind: str) -> Obj:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def gateway_container(objects: list[Obj]) -> Obj:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "gateway")


def test_every_object_passes_the_kubernetes_schema(overlay: tuple[str, list[Obj]]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    _, objects = overlay
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")


def test_overlay_has_the_base_objects(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} <= kinds


def test_embedded_gateway_config_passes_modelway_validation(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    configmap = one(objects, "ConfigMap")
    check_gateway_config(configmap["data"]["config.yaml"])
    # The Deployment mounts that ConfigMap (under its hashed name) where --config points.
    deployment = one(objects, "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    config_volume = next(v for v in volumes if "configMap" in v)
    assert config_volume["configMap"]["name"] == configmap["metadata"]["name"]
    container = gateway_container(objects)
    mount = next(m for m in container["volumeMounts"] if m["name"] == config_volume["name"])
    assert container["args"] == ["--config", f"{mount['mountPath']}/config.yaml"]


def test_every_env_reference_in_the_config_is_set(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    text = one(objects, "ConfigMap")["data"]["config.yaml"]
    referenced = set(re.findall(r"\$\{(\w+)", text))
    env = {e["name"]: e for e in gateway_container(objects)["env"]}
    assert referenced <= set(env), referenced - set(env)
    secrets = {s["metadata"]["name"]: s for s in by_kind(objects, "Secret")}
    for name in referenced:
        ref = env[name].get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets[ref["name"]]["data"], f"{name}: {ref}"
    # With every reference filled in by what the pod would have, the config still passes.
    check_gateway_config(text, env={name: CONFIG_ENV[name] for name in referenced})


def test_probes_point_at_the_health_endpoints(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    container = gateway_container(objects)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    port = container["readinessProbe"]["httpGet"]["port"]
    assert port in {p.get("name") for p in container["ports"]} | {4000}


def test_pod_runs_as_non_root_and_drains_before_sigterm(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = gateway_container(objects)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    # preStop sleep plus the gateway's 30 s drain fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + 30


def test_service_selects_the_pods(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    selector = one(objects, "Service")["spec"]["selector"]
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_single_overlay_is_one_pod_without_autoscaler(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    if name != "single":
        pytest.skip("single overlay only")
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    assert by_kind(objects, "HorizontalPodAutoscaler") == []
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert "redis_url" not in config
    assert "database_url" not in config
    state = next(
        v
        for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "state"
    )
    assert "emptyDir" in state


def test_scaled_overlay_shares_state_and_autoscales(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    if name != "scaled":
        pytest.skip("scaled overlay only")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] >= 3
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 3
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] >= 2
    assert "maxUnavailable" not in pdb["spec"]
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert config["database_url"] == "${MODELWAY_DATABASE_URL}"
    assert config["redis_url"] == "${MODELWAY_REDIS_URL}"


# --- Helm -------------------------------------------------------------------------------


def chart_values() -> Obj:
    values: Obj = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def test_values_match_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(chart_values())


def test_schema_rejects_misspelt_and_short_values() -> None:
    validator = jsonschema.Draft7Validator(json.loads((CHART / "values.schema.json").read_text()))
    misspelt = chart_values() | {"replicas": 3}
    assert not validator.is_valid(misspelt)
    short = chart_values()
    short["masterKey"] = short["masterKey"] | {"value": "short"}
    assert not validator.is_valid(short)


def test_chart_default_config_passes_modelway_validation() -> None:
    check_gateway_config(yaml.safe_dump(chart_values()["config"]))
    # As the chart writes it when stores.existingSecret is set.
    shared = chart_values()["config"] | {
        "database_url": "${MODELWAY_DATABASE_URL}",
        "redis_url": "${MODELWAY_REDIS_URL}",
    }
    check_gateway_config(yaml.safe_dump(shared))


def test_every_plain_yaml_file_of_the_chart_parses() -> None:
    files = [p for p in CHART.rglob("*") if p.suffix in {".yaml", ".yml"}]
    plain = [p for p in files if "templates" not in p.relative_to(CHART).parts]
    assert {"Chart.yaml", "values.yaml", "alerts.yml"} <= {p.name for p in plain}
    for path in plain:
        assert yaml.safe_load(path.read_text()) is not None, path
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "modelway"


def test_chart_rules_are_the_prometheus_rules() -> None:
    rules = CHART / "files" / "alerts.yml"
    assert rules.read_bytes() == (DEPLOY / "prometheus" / "alerts.yml").read_bytes()
    assert yaml.safe_load(rules.read_text())["groups"]


_VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def test_templates_reference_only_existing_values() -> None:
    values = chart_values()
    templates = sorted((CHART / "templates").glob("*"))
    assert {"deployment.yaml", "service.yaml", "configmap.yaml", "secret.yaml"} <= {
        t.name for t in templates
    }
    missing = []
    for template in templates:
        for match in _VALUES_REF.finditer(template.read_text()):
            node: Any = values
            for key in match.group(1).strip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{template.name}: .Values{match.group(1)}")
                    break
                node = node[key]
    assert missing == []


def test_templates_carry_the_probes_and_optional_objects() -> None:
    templates = {t.name: t.read_text() for t in (CHART / "templates").glob("*.yaml")}
    values = chart_values()
    assert values["probes"]["readiness"]["path"] == "/health/ready"
    assert values["probes"]["liveness"]["path"] == "/health/live"
    assert "readinessProbe" in templates["deployment.yaml"]
    assert "livenessProbe" in templates["deployment.yaml"]
    assert "preStop" in templates["deployment.yaml"]
    assert "autoscaling/v2" in templates["hpa.yaml"]
    assert ".Values.autoscaling.inFlight.enabled" in templates["hpa.yaml"]
    assert values["autoscaling"]["inFlight"]["metricName"] == "modelway_in_flight_requests"
    for name, flag in [
        ("servicemonitor.yaml", ".Values.monitoring.serviceMonitor.enabled"),
        ("prometheusrule.yaml", ".Values.monitoring.prometheusRule.enabled"),
    ]:
        assert "monitoring.coreos.com/v1" in templates[name]
        assert templates[name].lstrip().startswith("{{- if " + flag), name
    assert values["podSecurityContext"]["runAsNonRoot"] is True


# --- Docker and compose -----------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    lines = [ln.strip() for ln in text.splitlines()]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    instructions = dockerfile_instructions()
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert len(froms) >= 2
    assert " AS builder" in froms[0]
    users = [arg for op, arg in instructions if op == "USER"]
    assert users, "no USER"
    assert users[-1].split(":")[0] not in {"0", "root"}
    # The last USER comes after the last FROM: it applies to the final image.
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    assert any(op == "USER" and i > last_from for i, (op, _) in enumerate(instructions))
    healthcheck = next(arg for op, arg in instructions if op == "HEALTHCHECK")
    assert "/health/live" in healthcheck
    assert "python" in healthcheck
    assert ("EXPOSE", "4000") in instructions
    entrypoint = json.loads(next(arg for op, arg in instructions if op == "ENTRYPOINT"))
    assert entrypoint[:2] == ["modelway", "serve"]
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"


def test_image_default_config_passes_modelway_validation() -> None:
    check_gateway_config((DEPLOY / "config" / "default.yaml").read_text())


def compose() -> Obj:
    data: Obj = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_has_the_services() -> None:
    services = compose()["services"]
    assert {"gateway", "redis", "postgres", "prometheus", "grafana"} <= set(services)
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["gateway"]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_mounts_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_compose_gateway_config_passes_modelway_validation() -> None:
    gateway = compose()["services"]["gateway"]
    mount = next(v for v in gateway["volumes"] if v.startswith("./config/"))
    source, target = mount.split(":")[:2]
    assert gateway["command"] == ["--config", target]
    text = (DEPLOY / source).read_text()
    # The gateway's environment as compose gives it, its defaults filled in.
    env = {
        key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
        for key, value in gateway["environment"].items()
    }
    config = parse_config(text, env=env)
    assert config.redis_url is not None
    assert config.database_url is not None
    # The store URLs name compose services.
    services = compose()["services"]
    for url in (config.redis_url, config.database_url):
        host = re.sub(r"^\w+://(?:[^@/]*@)?([^:/]+).*$", r"\1", url.get_secret_value())
        assert host in services, host


def test_prometheus_scrapes_the_gateways_and_loads_the_rules() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    mounts = compose()["services"]["prometheus"]["volumes"]
    rules_mount = next(v for v in mounts if v.startswith("./prometheus/alerts.yml"))
    assert rules_mount.split(":")[1] in prometheus["rule_files"]
    job = prometheus["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"][0]["names"] == ["gateway"]
    assert job["dns_sd_configs"][0]["port"] == 4000


def test_grafana_provisions_the_datasource_and_dashboard() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "modelway.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert any(v.startswith("./grafana/modelway.json:" + path) for v in mounts)
    json.loads((DEPLOY / "grafana" / "modelway.json").read_text())

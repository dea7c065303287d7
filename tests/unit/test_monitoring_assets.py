"""The Prometheus rules and the Grafana dashboard in deploy/ use only series the gateway
exports (modelway.observability.metrics), with labels those series have, and they load:
promtool accepts the rules and the dashboard's queries, and the alerts fire on the
situations they describe (promtool's rule unit tests over synthetic series)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from modelway.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "modelway.json"

# prometheus-client's ProcessCollector (Linux only, so listed here for other systems too).
PROCESS_SERIES = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
}
SCRAPE_SERIES = {"up"}  # written by Prometheus itself for every target
TARGET_LABELS = {"job", "instance"}  # attached by Prometheus to every scraped series
SEVERITIES = {"critical", "warning", "info"}

# PromQL words that are neither metric names nor functions.
KEYWORDS = {"and", "or", "unless", "atan2", "bool", "offset", "inf", "nan"}
# Followed by a parenthesised list of label names, not of expressions.
LABEL_LIST_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<comment>\#[^\n]*)
  | (?P<variable>\$\{?\w+(?::\w+)?\}?)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\w*)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*,?')


def selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """Yield (metric name, label names matched) for every series selector in `expr`."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    tokens = [t for t in tokens if t[0] != "comment" and not t[1].isspace()]
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "other" and text == "[":  # a range or subquery: durations, variables
            while i < len(tokens) and tokens[i][1] != "]":
                i += 1
        elif kind == "other" and text == "{":  # a selector without a name: {__name__="x"}
            end = _skip_braces(tokens, i)
            matchers = _matchers(tokens[i + 1 : end])
            for label, op, value in matchers:
                if (label, op) == ("__name__", "="):
                    yield value, {m[0] for m in matchers} - {"__name__"}
            i = end
        elif kind == "ident" and text in LABEL_LIST_WORDS:
            if nxt == "(":
                while i < len(tokens) and tokens[i][1] != ")":
                    i += 1
        elif kind == "ident" and nxt in ("(", "by", "without"):
            pass  # a function or an aggregation: `sum(`, `sum by (...) (`
        elif kind == "ident" and text.lower() not in KEYWORDS:
            labels: set[str] = set()
            if nxt == "{":
                end = _skip_braces(tokens, i + 1)
                labels = {label for label, _, _ in _matchers(tokens[i + 2 : end])}
                i = end
            yield text, labels
        i += 1


def grouping_labels(expr: str) -> set[str]:
    """Label names in `by (...)`, `without (...)`, `on (...)`, `group_left (...)` lists."""
    words = "|".join(LABEL_LIST_WORDS)
    lists = re.findall(rf"\b(?:{words})\s*\(([^()]*)\)", re.sub(r'"[^"]*"', '""', expr))
    return {label.strip() for found in lists for label in found.split(",") if label.strip()}


def _matchers(tokens: list[tuple[str | None, str]]) -> list[tuple[str, str, str]]:
    """(label, operator, value) of each matcher between a selector's braces."""
    found: list[tuple[str, str, str]] = _MATCHER.findall("".join(t for _, t in tokens))
    return found


def _skip_braces(tokens: list[tuple[str | None, str]], i: int) -> int:
    while i < len(tokens) and tokens[i][1] != "}":
        i += 1
    return i


def test_the_reference_extractor_reads_promql_as_intended() -> None:
    expr = """
      histogram_quantile(0.95, sum by (le, model) (rate(a_bucket{model=~"x|y", le!="1"}[5m])))
      / on (model) group_left(team) clamp_min(b offset 1h, 1e-9) > bool 0.5
      and ignoring(instance) sum(rate(c_total{status_class="5xx"}[$__rate_interval])) by (job)
      or vector(0) unless {__name__="d", job="x"} atan2 e # f_not_a_metric
    """
    assert list(selectors(expr)) == [
        ("a_bucket", {"model", "le"}),
        ("b", set()),
        ("c_total", {"status_class"}),
        ("d", {"job"}),
        ("e", set()),
    ]
    assert grouping_labels(expr) == {"le", "model", "team", "instance", "job"}


@pytest.fixture(scope="module")
def exposed() -> dict[str, set[str]]:
    """Every series name the gateway exposes, with its label names."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
        metrics = Metrics()
    # Labelled metrics show no series until a label set is used: use one of each.
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*("x" for _ in metric._labelnames))
    series = {name: set(TARGET_LABELS) for name in PROCESS_SERIES | SCRAPE_SERIES}
    for family in metrics.registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set(TARGET_LABELS)).update(sample.labels)
    return series


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return found


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    exprs = [
        (f"panel {panel['id']} ({panel['title']})", target["expr"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            metric = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
            assert metric, f"variable {var['name']}: unexpected query {query}"
            exprs.append((f"variable {var['name']}", metric.group(1)))
    return exprs


def unknown_references(
    exprs: list[tuple[str, str]], exposed: dict[str, set[str]], recorded: set[str]
) -> list[str]:
    problems = []
    for where, expr in exprs:
        names = list(selectors(expr))
        for name, labels in names:
            if name in recorded:
                continue  # a recording rule's output; its labels come from its expression
            if name not in exposed:
                problems.append(f"{where}: {name} is not a series the gateway exposes")
            elif labels - exposed[name]:
                problems.append(f"{where}: {name} has no label {sorted(labels - exposed[name])}")
        if names and not any(name in recorded for name, _ in names):
            known = set().union(*(exposed.get(name, set()) for name, _ in names))
            if missing := grouping_labels(expr) - known:
                problems.append(f"{where}: no series has label {sorted(missing)}")
    return problems


def test_rules_and_dashboard_reference_only_exposed_series_and_labels(
    exposed: dict[str, set[str]], rules: list[dict[str, Any]], dashboard: dict[str, Any]
) -> None:
    recorded = {rule["record"] for rule in rules if "record" in rule}
    rule_exprs = [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules]
    referenced = {name for _, e in rule_exprs for name, _ in selectors(e)}
    assert "modelway_requests_total" in referenced  # the extractor does find names

    problems = unknown_references(rule_exprs + dashboard_exprs(dashboard), exposed, recorded)
    assert problems == []


def test_a_misspelt_metric_or_label_is_reported(exposed: dict[str, set[str]]) -> None:
    exprs = [
        ("a", "sum(rate(modelway_request_total[5m]))"),
        ("b", "histogram_quantile(0.9, rate(modelway_request_duration_seconds[5m]))"),
        ("c", 'rate(modelway_requests_total{status="5xx"}[5m])'),
        ("d", "sum by (modle) (rate(modelway_requests_total[5m]))"),
    ]
    assert unknown_references(exprs, exposed, set()) == [
        "a: modelway_request_total is not a series the gateway exposes",
        "b: modelway_request_duration_seconds is not a series the gateway exposes",
        "c: modelway_requests_total has no label ['status']",
        "d: no series has label ['modle']",
    ]


def test_every_catalog_metric_is_on_the_dashboard(
    exposed: dict[str, set[str]], dashboard: dict[str, Any]
) -> None:
    charted = {name for _, e in dashboard_exprs(dashboard) for name, _ in selectors(e)}
    families = {
        re.sub(r"_(total|bucket|count|sum|created)$", "", name)
        for name in exposed
        if name.startswith("modelway_")
    }
    uncharted = {
        family
        for family in families
        if not any(re.fullmatch(rf"{family}(_total|_bucket|_count|_sum)?", c) for c in charted)
    }
    assert uncharted == set()


def test_every_alert_has_a_duration_a_severity_and_its_annotations(
    rules: list[dict[str, Any]],
) -> None:
    alerts = [rule for rule in rules if "alert" in rule]
    assert len({a["alert"] for a in alerts}) == len(alerts) >= 6
    for alert in alerts:
        assert alert.get("for"), alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        assert {"summary", "description"} <= set(alert["annotations"]), alert["alert"]
        assert "$labels" in alert["annotations"]["summary"], alert["alert"]
    for rule in rules:
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"])


def test_the_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    panels = all_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert dashboard["schemaVersion"] >= 36
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"model", "team"} <= set(variables)
    for panel in panels:
        if panel["type"] == "row":
            continue
        where = f"panel {panel['id']} ({panel['title']})"
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], where
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, where


# ------------------------------------------------------------------------ promtool

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not on PATH (Debian: apt-get install prometheus; `make test` tries)",
)


def promtool(*args: str) -> str:
    done = subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(RULES))


@needs_promtool
def test_promtool_accepts_the_dashboard_queries(dashboard: dict[str, Any], tmp_path: Path) -> None:
    grafana = {"$__rate_interval": "5m", "$__range": "1h", "$model": ".*", "$team": ".*"}
    records = []
    for n, (_, expr) in enumerate(dashboard_exprs(dashboard)):
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        records.append({"record": f"dashboard:query:n{n}", "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    assert "SUCCESS" in promtool("check", "rules", str(path))


# Synthetic series, one minute apart ("0+600x150": from 0, +600 a minute, 150 times; a
# constant zero is written "0+0x40", since "0x40" reads as hexadecimal), and the alerts
# that must be firing at a given time (none where no samples are listed), in promtool's
# rule unit-test format:
# https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/
ALERT_SCENARIOS = """
- name: a 5xx spike on a busy group fires, on an idle group it does not
  interval: 1m
  input_series:
    - {series: 'modelway_requests_total{model="chat",status_class="2xx"}', values: 0+600x150}
    - {series: 'modelway_requests_total{model="chat",status_class="5xx"}', values: 0+0x90 0+120x60}
    - {series: 'modelway_requests_total{model="idle",status_class="2xx"}', values: 0+1x150}
    - {series: 'modelway_requests_total{model="idle",status_class="5xx"}', values: 0+0x90 0+1x60}
    - {series: 'modelway_requests_total{model="down",status_class="2xx"}', values: 0+600x90 54000x60}
    - {series: 'modelway_requests_total{model="down",status_class="5xx"}', values: 0+0x90 0+600x60}
  promql_expr_test:
    - {expr: 'count by (alertname, model) (ALERTS{alertstate="firing"})', eval_time: 90m}
    - expr: count by (alertname, model) (ALERTS{alertstate="firing"})
      eval_time: 140m
      exp_samples:
        - {labels: '{alertname="ModelwayErrorRateSpike", model="chat"}', value: 1}
        - {labels: '{alertname="ModelwayErrorRateSpike", model="down"}', value: 1}
        - {labels: '{alertname="ModelwayErrorRateHigh", model="down"}', value: 1}

- name: open breakers and failing deployments
  interval: 1m
  input_series:
    - {series: 'modelway_circuit_breaker_state{model="chat",deployment="a"}', values: 0+0x20 2x20}
    - {series: 'modelway_circuit_breaker_state{model="chat",deployment="b"}', values: 0+0x40}
    - {series: 'modelway_circuit_breaker_state{model="solo",deployment="s"}', values: 0+0x10 2x30}
    - series: 'modelway_upstream_attempts_total{model="chat",deployment="a",provider="openai",outcome="success"}'
      values: 0+10x10 100x30
    - series: 'modelway_upstream_attempts_total{model="chat",deployment="a",provider="openai",outcome="upstream_error"}'
      values: 0+0x10 0+10x30
  promql_expr_test:
    - expr: count by (alertname, model, deployment) (ALERTS{alertstate="firing"})
      eval_time: 40m
      exp_samples:
        - {labels: '{alertname="ModelwayDeploymentDown", model="chat", deployment="a"}', value: 1}
        - {labels: '{alertname="ModelwayDeploymentDown", model="solo", deployment="s"}', value: 1}
        - {labels: '{alertname="ModelwayModelGroupUnavailable", model="solo"}', value: 1}
        - {labels: '{alertname="ModelwayDeploymentFailing", model="chat", deployment="a"}', value: 1}

- name: budgets, queues, the engine and the process
  interval: 1m
  input_series:
    - {series: 'modelway_budget_remaining_usd{team="a",period="day"}', values: 100-1x95}
    - {series: 'modelway_budget_remaining_usd{team="b",period="total"}', values: 0+0x95}
    - {series: 'modelway_budget_remaining_usd{team="c",period="month"}', values: 100x95}
    - {series: 'modelway_budget_rejections_total{scope="team"}', values: 0+5x95}
    - {series: 'modelway_queue_depth{model="chat",instance="i1"}', values: 85x95}
    - {series: 'modelway_queue_depth{model="chat",instance="i2"}', values: 10x95}
    - {series: 'modelway_queue_wait_seconds_bucket{model="chat",le="1"}', values: 0+0x95}
    - {series: 'modelway_queue_wait_seconds_bucket{model="chat",le="5"}', values: 0+60x95}
    - {series: 'modelway_queue_wait_seconds_bucket{model="chat",le="+Inf"}', values: 0+60x95}
    - {series: 'modelway_queue_wait_seconds_count{model="chat"}', values: 0+60x95}
    - {series: 'modelway_engine_kv_cache_usage_ratio{deployment="local",instance="i1"}', values: 0.97x95}
    - {series: 'modelway_build_info{job="modelway",instance="i1",version="0.1.0"}', values: 1x95}
    - {series: 'process_resident_memory_bytes{job="modelway",instance="i1"}', values: 5e9x95}
    - {series: 'process_resident_memory_bytes{job="other",instance="i9"}', values: 9e9x95}
    - {series: 'process_open_fds{job="modelway",instance="i1"}', values: 900x95}
    - {series: 'process_max_fds{job="modelway",instance="i1"}', values: 1000x95}
    - {series: 'up{job="modelway",instance="i1"}', values: 1x80 0+0x15}
  promql_expr_test:
    - expr: count by (alertname, team, instance) (ALERTS{alertstate="firing"})
      eval_time: 95m
      exp_samples:
        - {labels: '{alertname="ModelwayBudgetHalfSpent", team="a"}', value: 1}
        - {labels: '{alertname="ModelwayBudgetLow", team="a"}', value: 1}
        - {labels: '{alertname="ModelwayBudgetExhaustionForecast", team="a"}', value: 1}
        - {labels: '{alertname="ModelwayBudgetExhausted", team="b"}', value: 1}
        - {labels: '{alertname="ModelwayBudgetRejections"}', value: 1}
        - {labels: '{alertname="ModelwayQueueBacklog"}', value: 1}
        - {labels: '{alertname="ModelwayQueueWaitHigh"}', value: 1}
        - {labels: '{alertname="ModelwayEngineKVCacheNearlyFull", instance="i1"}', value: 1}
        - {labels: '{alertname="ModelwayMemoryHigh", instance="i1"}', value: 1}
        - {labels: '{alertname="ModelwayFileDescriptorsNearLimit", instance="i1"}', value: 1}
        - {labels: '{alertname="ModelwayTargetDown", instance="i1"}', value: 1}

- name: latency against the day's typical p95, and spending against its averages
  interval: 1m
  input_series:
    # 3h with p95 under 1s, then 40m with p95 near 5s.
    - {series: 'modelway_request_duration_seconds_bucket{model="chat",le="0.5"}', values: 0+300x180 54000x40}
    - {series: 'modelway_request_duration_seconds_bucket{model="chat",le="1"}', values: 0+600x180 108000x40}
    - {series: 'modelway_request_duration_seconds_bucket{model="chat",le="5"}', values: 0+600x180 108600+600x40}
    - {series: 'modelway_request_duration_seconds_bucket{model="chat",le="+Inf"}', values: 0+600x180 108600+600x40}
    - {series: 'modelway_request_duration_seconds_count{model="chat"}', values: 0+600x180 108600+600x40}
    - {series: 'modelway_time_to_first_token_seconds_bucket{model="chat",le="0.5"}', values: 0+600x180 108000x40}
    - {series: 'modelway_time_to_first_token_seconds_bucket{model="chat",le="5"}', values: 0+600x180 108600+600x40}
    - {series: 'modelway_time_to_first_token_seconds_bucket{model="chat",le="+Inf"}', values: 0+600x180 108600+600x40}
    - {series: 'modelway_time_to_first_token_seconds_count{model="chat"}', values: 0+600x180 108600+600x40}
    # $1.20/h for 3h, then $24/h; team b keeps its pace.
    - {series: 'modelway_cost_usd_total{model="chat",team="a"}', values: 0+0.02x180 3.8+0.4x40}
    - {series: 'modelway_cost_usd_total{model="chat",team="b"}', values: 0+0.5x220}
  promql_expr_test:
    - {expr: 'count by (alertname, model, team) (ALERTS{alertstate="firing"})', eval_time: 180m}
    - expr: count by (alertname, model, team) (ALERTS{alertstate="firing"})
      eval_time: 220m
      exp_samples:
        - {labels: '{alertname="ModelwayRequestLatencyDegraded", model="chat"}', value: 1}
        - {labels: '{alertname="ModelwayTimeToFirstTokenDegraded", model="chat"}', value: 1}
        - {labels: '{alertname="ModelwayCostAnomaly", team="a"}', value: 1}
"""  # noqa: E501 (series names are long; YAML reads best one series a line)


@needs_promtool
def test_the_alerts_fire_when_they_should(rules: list[dict[str, Any]], tmp_path: Path) -> None:
    expected = set(re.findall(r'alertname="(\w+)"', ALERT_SCENARIOS))
    assert expected == {rule["alert"] for rule in rules if "alert" in rule}, "one scenario each"
    tests = yaml.safe_load(ALERT_SCENARIOS)
    for case in tests:
        for check in case["promql_expr_test"]:
            check.setdefault("exp_samples", [])
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": tests}))
    assert "SUCCESS" in promtool("test", "rules", str(path))

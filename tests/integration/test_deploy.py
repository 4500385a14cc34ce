"""The production deployment files are valid: docker-compose.yml, the Prometheus config and alert rules
(with their promtool unit tests), and the Grafana dashboards."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

REPO = Path(__file__).resolve().parents[2]
COMPOSE_SCHEMA = REPO / "tests" / "schemas" / "compose-spec.json"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"
INSTALL_HINT = "run `bash deploy/install-system-deps.sh` (as root) or `make test`"

# Series names per prometheus_client metric type. `_created` samples are left out on purpose: nothing should query them.
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}
# Series Prometheus itself adds to every scrape target.
SCRAPE_METRICS = {"up"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(f"promtool not found on PATH: {INSTALL_HINT}", pytrace=False)
    return path


def run_promtool(promtool: str, *args: str | Path) -> None:
    result = subprocess.run([promtool, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{result.stdout}{result.stderr}"


# --- docker-compose.yml -----------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification(compose: dict) -> None:
    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(
            f"Compose Specification schema missing: expected {COMPOSE_SCHEMA} (the team's shared handouts)", pytrace=False
        )
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def bind_mount_sources(service: dict) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif volume.get("type") == "bind":
            sources.append(volume["source"])
    return sources


def named_volumes(service: dict) -> list[str]:
    names = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if ":" in volume and not source.startswith((".", "/", "~")):
                names.append(source)
        elif volume.get("type") == "volume" and volume.get("source"):
            names.append(volume["source"])
    return names


def dockerfile_sources(dockerfile: Path) -> list[str]:
    """The local paths a Dockerfile's COPY/ADD instructions must find (wildcards may match nothing)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        arguments = [word for word in words[1:] if not word.startswith("--")]
        if any(word.startswith("--from") for word in words) or arguments[0].startswith("["):
            continue
        sources += [source for source in arguments[:-1] if "://" not in source and not re.search(r"[*?[]", source)]
    return sources


def test_everything_compose_mounts_or_builds_from_exists(compose: dict) -> None:
    missing = []
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source in bind_mount_sources(service):
            if not (REPO / source).exists():
                missing.append(f"{name}: mounted {source}")
        for volume in named_volumes(service):
            if volume not in declared_volumes:
                missing.append(f"{name}: volume {volume} is not declared under top-level volumes")
        for env_file in [service["env_file"]] if isinstance(service.get("env_file"), str) else service.get("env_file", []):
            if not (REPO / env_file).exists():
                missing.append(f"{name}: env_file {env_file}")
        if "build" in service:
            build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
            context = REPO / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                missing.append(f"{name}: build file {dockerfile.relative_to(REPO)}")
                continue
            for source in dockerfile_sources(dockerfile):
                if not (context / source).exists():
                    missing.append(f"{name}: {dockerfile.name} copies {source}")
    assert not missing, "missing:\n" + "\n".join(sorted(set(missing)))


def test_compose_dependencies_and_ports_are_consistent(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        for dependency in depends_on:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if isinstance(depends_on, dict) and depends_on[dependency].get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck"
                )
    published = {int(str(port).split(":")[-2]) for service in services.values() for port in service.get("ports", [])}
    assert published == {8000, 8001, 8002, 8003, 8004, 9090, 3000}


def test_each_service_database_is_created_by_the_init_script(compose: dict) -> None:
    init_sql = (REPO / "deploy" / "postgres" / "init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+)", init_sql, re.IGNORECASE))
    urls = {
        key: value
        for service in compose["services"].values()
        for key, value in (service.get("environment") or {}).items()
        if key.endswith("_DATABASE_URL")
    }
    assert set(urls) == {f"CEPER_{s}_DATABASE_URL" for s in ("ORDERS", "CAPACITY", "QUALITY", "IDENTITY")}
    for key, url in urls.items():
        assert url.startswith("postgresql+asyncpg://"), key
        assert url.rsplit("/", 1)[-1] in created, f"{key} names a database init.sql does not create"


# --- exported metric names --------------------------------------------------------------------------


class Exported(NamedTuple):
    module: str
    labels: frozenset[str] | None  # None: not known here (recording rules), so not checked


def metrics_modules() -> list[str]:
    """shared/metrics.py and every service's metrics.py: where the code defines what `/metrics` exposes."""
    services = sorted(path.parent.name for path in (REPO / "services").glob("*/metrics.py"))
    return ["shared.metrics", *(f"services.{service}.metrics" for service in services)]


def scrape_labels() -> frozenset[str]:
    """Labels Prometheus attaches to every series of a target: job, instance and prometheus.yml's target labels."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    labels = {"job", "instance"}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            labels |= set(static.get("labels", {}))
    return frozenset(labels)


def exported_metrics() -> dict[str, Exported]:
    """Series name -> defining module and label names, read from the prometheus_client metric objects."""
    exported: dict[str, Exported] = {}
    for module_name in metrics_modules():
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            # prometheus_client has no public accessor for a parent metric's label names.
            labels = frozenset(value._labelnames)
            for family in value.describe():
                assert family.type in SAMPLE_SUFFIXES, f"{module_name}: {family.name} has unhandled type {family.type}"
                for suffix in SAMPLE_SUFFIXES[family.type]:
                    exported[family.name + suffix] = Exported(module_name, labels | ({"le"} if suffix == "_bucket" else set()))
    return exported


def recorded_metrics() -> set[str]:
    """Recording rules of alerts.yml make series too: alerts and dashboards may read them."""
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


@pytest.fixture(scope="module")
def known_metrics() -> dict[str, Exported]:
    scraped = scrape_labels()
    known = {name: Exported(exported.module, exported.labels | scraped) for name, exported in exported_metrics().items()}
    known |= {name: Exported("Prometheus", scraped) for name in SCRAPE_METRICS}
    return known | {name: Exported("alerts.yml", None) for name in recorded_metrics()}


def test_exported_metric_names_follow_the_exposition_format() -> None:
    exported = exported_metrics()
    # Counters gain `_total` and histograms `_bucket`/`_sum`/`_count`: the bare names are not series.
    for name in (
        "ceper_http_requests_total",
        "ceper_http_request_duration_seconds_bucket",
        "ceper_http_request_duration_seconds_count",
    ):
        assert exported[name].module == "shared.metrics", name
    assert "ceper_http_requests" not in exported and "ceper_http_request_duration_seconds" not in exported
    assert exported["ceper_http_request_duration_seconds_bucket"].labels == {"service", "method", "route", "le"}
    assert exported["ceper_capacity_utilisation_ratio"] == Exported(
        "services.capacity.metrics", frozenset({"product_family", "week"})
    )
    assert exported["ceper_quality_lots_total"] == Exported("services.quality.metrics", frozenset({"outcome", "item"}))


def selector_labels(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """Labels an expression matches on, per metric it selects, and labels it groups or matches vector pairs by."""
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", expr)
    grouping = {label_values.group(2)} if label_values else set()
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', label_values.group(1) if label_values else expr)
    matched: dict[str, set[str]] = {}
    for selector in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
        matched.setdefault(selector.group(1), set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector.group(2)))
    for clause in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        grouping |= {label.strip() for label in clause.group(1).split(",") if label.strip()}
    return matched, grouping


def query_problems(where: str, expr: str, known: dict[str, Exported]) -> list[str]:
    """An expression must read metrics the code defines, through labels those metrics have."""
    names = metric_names(expr)
    if not names:
        return [f"{where}: no metric found in {expr!r}"]
    if unknown := names - set(known):
        return [f"{where}: unknown metrics {sorted(unknown)} (not defined in {', '.join(metrics_modules())})"]
    labels_of = {name: known[name].labels for name in names}
    if any(labels is None for labels in labels_of.values()):
        return []
    problems = []
    matched, grouping = selector_labels(expr)
    for name, labels in matched.items():
        has = labels_of.get(name) or frozenset()
        if missing := labels - has:
            problems.append(f"{where}: {name} has no label {sorted(missing)} (it has {sorted(has)})")
    if missing := grouping - set().union(*(labels or () for labels in labels_of.values())):
        problems.append(f"{where}: groups by {sorted(missing)}, which none of {sorted(names)} has")
    return problems


# --- Prometheus -------------------------------------------------------------------------------------


def test_prometheus_config_is_valid(promtool: str) -> None:
    run_promtool(promtool, "check", "config", PROMETHEUS_DIR / "prometheus.yml")


def test_alert_rules_are_valid(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", PROMETHEUS_DIR / "alerts.yml")


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", PROMETHEUS_DIR / "alerts_test.yml")


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    firing, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts <= firing, f"alerts never tested firing: {sorted(alerts - firing)}"
    assert alerts <= quiet, f"alerts never tested staying quiet: {sorted(alerts - quiet)}"


def test_every_alert_is_made_to_fire_by_a_real_trouble_test() -> None:
    """Each alert is named, as the alert a real Prometheus must report firing, by a test that makes its trouble."""
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    here = Path(__file__).parent
    sources = "\n".join((here / name).read_text() for name in ("test_prometheus.py", "test_prometheus_faults.py"))
    named = {alert for alert in alerts if f'"{alert}"' in sources}
    assert alerts <= named, f"alerts no real-trouble test makes fire: {sorted(alerts - named)}"


def test_alert_rules_read_only_metrics_the_services_export(known_metrics: dict[str, Exported]) -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    problems = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            where = f"alerts.yml {group['name']}/{rule.get('alert') or rule.get('record')}"
            problems += query_problems(where, rule["expr"], known_metrics)
    assert not problems, "\n".join(problems)


# --- Grafana ----------------------------------------------------------------------------------------


GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)")
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


def fill_grafana_variables(expr: str) -> str:
    """Grafana's time variables become a duration; ours only stand in regex matchers, where `.*` means All."""
    expr = re.sub(r"\$__(?:rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+(?::\w+)?\}?", ".*", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions, keywords or labels."""
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr)
    if label_values:
        expr = label_values.group(1)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for token in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", expr):
        if token.group() not in PROMQL_KEYWORDS and not expr[token.end() :].lstrip().startswith("("):
            names.add(token.group())
    return names


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, where, expression) for every panel target and query variable of every dashboard."""
    dashboards = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert dashboards, f"no dashboards in {DASHBOARDS_DIR}"
    queries = []
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        panels = list(dashboard.get("panels", []))
        while panels:
            panel = panels.pop()
            panels += panel.get("panels", [])
            if panel.get("type") == "row":
                continue
            assert panel.get("targets"), f"{path.name}: panel {panel.get('title')!r} has no query"
            queries += [(path.name, f"panel {panel.get('title')!r}", target["expr"]) for target in panel["targets"]]
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                queries.append(
                    (path.name, f"variable {variable['name']!r}", query["query"] if isinstance(query, dict) else query)
                )
    return queries


def test_metric_name_extraction_sees_through_promql() -> None:
    expr = 'histogram_quantile(0.99, sum by (service, le) (rate(ceper_http_request_duration_seconds_bucket{route=~"/x"}[5m])))'
    assert metric_names(expr) == {"ceper_http_request_duration_seconds_bucket"}
    assert metric_names("a_total / on (service) group_left b offset 1h > bool 0") == {"a_total", "b"}
    assert metric_names('label_values(up{job="ceper"}, service)') == {"up"}
    assert selector_labels(expr) == ({"ceper_http_request_duration_seconds_bucket": {"route"}}, {"service", "le"})
    assert selector_labels('label_values(a{x="}", y!~"z"}, w)') == ({"a": {"x", "y"}}, {"w"})


def test_dashboards_query_only_metrics_the_services_export(known_metrics: dict[str, Exported]) -> None:
    problems = []
    for dashboard, where, expr in dashboard_queries():
        problems += query_problems(f"{dashboard} {where}", expr, known_metrics)
    assert not problems, "\n".join(problems)


def test_dashboard_queries_use_only_defined_variables() -> None:
    defined = {
        path.name: {variable["name"] for variable in json.loads(path.read_text()).get("templating", {}).get("list", [])}
        for path in DASHBOARDS_DIR.glob("*.json")
    }
    problems = []
    for dashboard, where, expr in dashboard_queries():
        if undefined := set(GRAFANA_VARIABLE.findall(expr)) - defined[dashboard] - GRAFANA_BUILTINS:
            problems.append(f"{dashboard} {where}: undefined variables {sorted(undefined)}")
    assert not problems, "\n".join(problems)


def test_dashboards_have_distinct_uids_and_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    datasource_uids = {source["uid"] for source in provisioned["datasources"]}
    uids: dict[str, str] = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        assert dashboard.get("uid"), f"{path.name} has no uid: Grafana would make up a new one on every load"
        assert dashboard["uid"] not in uids, f"{path.name} reuses the uid of {uids[dashboard['uid']]}"
        uids[dashboard["uid"]] = path.name
        stack: list[object] = [dashboard]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                source = node.get("datasource")
                if isinstance(source, dict):
                    assert source.get("uid") in datasource_uids, f"{path.name}: datasource {source} is not provisioned"
                stack += node.values()
            elif isinstance(node, list):
                stack += node


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses each query as a recording rule, with Grafana's variables given concrete values.
    rules = []
    for number, (_dashboard, _where, expr) in enumerate(dashboard_queries()):
        label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr)
        expr = label_values.group(1) if label_values else expr
        expr = fill_grafana_variables(expr)
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run_promtool(promtool, "check", "rules", rule_file)

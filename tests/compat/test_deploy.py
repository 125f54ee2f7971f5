"""The operator assets in deploy/, checked without running them: Prometheus's config and
alert rules through promtool (with the rules' unit tests), the Grafana dashboards'
structure and queries (PromQL parses and names only metrics /metrics exports; SQL runs
against the schema), and the compose, Kubernetes and systemd files.

test_dashboards.py runs the dashboards' queries against a live node; the functions both
modules use (dashboard targets, Grafana's variable and macro expansion) live here.
"""

import configparser
import json
import math
import os
import re
import shutil
import subprocess
from datetime import datetime, timezone

import pytest
import yaml

from conftest import ROOT, drop_postgres_database, postgres_database

DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
MIGRATIONS = sorted((ROOT / "migrations").glob("*.sql"))

# What Lamina's /metrics exports: metric name -> label names. Histograms add `le` to
# their _bucket series.
LAMINA_METRICS = {
    "lamina_invocations_total": {"account", "function", "version", "outcome", "start"},
    "lamina_invocation_duration_seconds": {"account", "function"},
    "lamina_init_duration_seconds": {"account", "function"},
    "lamina_restore_duration_seconds": {"account", "function"},
    "lamina_platform_overhead_seconds": {"account", "function"},
    "lamina_async_queue_wait_seconds": {"account", "function"},
    "lamina_cold_starts_total": {"account", "function"},
    "lamina_throttles_total": {"account", "function", "reason"},
    "lamina_concurrent_executions": {"account", "function"},
    "lamina_account_concurrency_limit": {"account"},
    "lamina_reserved_concurrency": {"account", "function"},
    "lamina_environments": {"account", "function", "version", "state"},
    "lamina_provisioned_environments": {"account", "function", "version"},
    "lamina_billed_gigabyte_seconds_total": {"account", "function"},
    "lamina_billed_requests_total": {"account", "function"},
    "lamina_billed_cost_usd_total": {"account", "function"},
    "lamina_async_queue_depth": set(),
    "lamina_async_queue_oldest_age_seconds": set(),
    "lamina_async_retries_total": {"account", "function"},
    "lamina_async_deliveries_total": {"account", "function", "target", "result"},
    "lamina_async_events_dropped_total": {"account", "function", "reason"},
    "lamina_ledger_backlog_records": set(),
    "lamina_ledger_write_lag_seconds": set(),
    "lamina_models_loaded": set(),
    "lamina_model_cache_bytes": set(),
    "lamina_model_loads_total": set(),
    "lamina_model_evictions_total": set(),
    "lamina_model_quality": {"account", "function", "version", "metric"},
    "lamina_model_feedback_samples": {"account", "function", "version"},
    "lamina_http_requests_total": {"route", "method", "status"},
    "lamina_http_request_duration_seconds": {"route", "method"},
}
HISTOGRAMS = {
    "lamina_invocation_duration_seconds",
    "lamina_init_duration_seconds",
    "lamina_restore_duration_seconds",
    "lamina_platform_overhead_seconds",
    "lamina_async_queue_wait_seconds",
    "lamina_http_request_duration_seconds",
}
# The prometheus crate's process collector.
PROCESS_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_threads",
}
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"instance", "job"}

PROMETHEUS_TYPE = "prometheus"
POSTGRES_TYPE = "grafana-postgresql-datasource"


# ------------------------------------------------------------------ shared by both modules


def program(name):
    """Path of a program the test needs; skips without it, except under CI."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        message = f"{name} is not installed (Debian package prometheus; scripts/test.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def load_dashboard(path):
    return json.loads(path.read_text())


def all_panels(dashboard):
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def datasource_of(panel, target):
    return target.get("datasource") or panel.get("datasource") or {}


def targets(dashboard):
    """(panel, target, datasource type) for every query of every panel."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target, datasource_of(panel, target).get("type")


def variable_query(variable):
    """The query text of a query variable: a string, or an object with `query`."""
    q = variable.get("query")
    return q.get("query", "") if isinstance(q, dict) else q or ""


def provisioned_datasources():
    found = {}
    for path in sorted((GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in yaml.safe_load(path.read_text()).get("datasources", []):
            found[ds["uid"]] = ds
    return found


def regex_escape(value):
    """Grafana's escaping of a value inside a Prometheus regex matcher."""
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)


def prometheus_format(value):
    """A variable's value as Grafana writes it into PromQL (multi-value: a regex group)."""
    if isinstance(value, list):
        escaped = [regex_escape(v) for v in value]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return value


def sql_format(value):
    """A variable's value as Grafana writes it into SQL (multi-value: quoted literals)."""
    if isinstance(value, list):
        return ",".join("'" + v.replace("'", "''") + "'" for v in value)
    return value


VARIABLE = re.compile(r"\$(?:\{(\w+)(?::[\w]+)?\}|(\w+))|\[\[(\w+)\]\]")


def interpolate(text, values, fmt):
    """Replaces template variables as Grafana's frontend does. Names that start with `__`
    and are not in `values` are left for the data source (SQL macros); any other unknown
    variable fails the test."""

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in values:
            return fmt(values[name])
        if name.startswith("__"):
            return m.group(0)
        raise AssertionError(f"undefined variable ${name} in:\n{text}")

    return VARIABLE.sub(repl, text)


def parse_interval(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text.strip().strip("'"))
    assert m, f"bad interval {text!r}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return float(m.group(1)) * scale[m.group(2)]


def go_float(x):
    """Go's %v of a float64, which Grafana uses to print interval seconds."""
    return "%g" % x


def expand_sql_macros(sql, start, end, interval="1m"):
    """Grafana's PostgreSQL macros (pkg/tsdb/sqleng and grafana-postgresql-datasource),
    for a time range given as aware datetimes."""
    iv = parse_interval(interval)
    sql = sql.replace("$__interval_ms", str(int(iv * 1000)))
    sql = sql.replace("$__interval", interval)
    sql = sql.replace("$__unixEpochFrom()", str(int(start.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(end.timestamp())))

    def rfc3339(t):
        return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")

    def nanos(t):
        return str(int(t.timestamp() * 1_000_000) * 1000)

    def macro(m):
        name = m.group(1)
        args = [a.strip() for a in m.group(2).split(",")]
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'"
        if name == "__timeFrom":
            return f"'{rfc3339(start)}'"
        if name == "__timeTo":
            return f"'{rfc3339(end)}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            s = go_float(parse_interval(args[1]))
            out = f"floor(extract(epoch from {args[0]})/{s})*{s}"
            return out + (' AS "time"' if name.endswith("Alias") else "")
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        if name == "__unixEpochNanoFilter":
            return f"{args[0]} >= {nanos(start)} AND {args[0]} <= {nanos(end)}"
        if name == "__unixEpochNanoFrom":
            return nanos(start)
        if name == "__unixEpochNanoTo":
            return nanos(end)
        if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
            s = go_float(parse_interval(args[1]))
            out = f"floor(({args[0]})/{s})*{s}"
            return out + (' AS "time"' if name.endswith("Alias") else "")
        raise AssertionError(f"unknown macro ${name}")

    return re.sub(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)", macro, sql)


def promql_builtins(rate_interval="1m", interval="15s", range_seconds=3600):
    return {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__interval_ms": str(int(parse_interval(interval) * 1000)),
        "__range": f"{int(range_seconds)}s",
        "__range_s": str(int(range_seconds)),
        "__range_ms": str(int(range_seconds * 1000)),
    }


def finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def migrate(url):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for path in MIGRATIONS:
            conn.execute(path.read_text())


@pytest.fixture(scope="module")
def dashboards():
    assert DASHBOARDS, "no dashboards in deploy/grafana/dashboards"
    return {p.name: load_dashboard(p) for p in DASHBOARDS}


# ------------------------------------------------------------------ Prometheus


def test_promtool_accepts_the_prometheus_config():
    out = subprocess.run(
        [program("promtool"), "check", "config", "prometheus.yml"],
        cwd=PROMETHEUS_DIR, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # The config loads the alert rules.
    assert "1 rule files found" in out.stdout + out.stderr


def test_promtool_accepts_the_alert_rules():
    out = subprocess.run(
        [program("promtool"), "check", "rules", "alerts.yml"],
        cwd=PROMETHEUS_DIR, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rules_pass_their_unit_tests():
    out = subprocess.run(
        [program("promtool"), "test", "rules", "alerts_test.yml"],
        cwd=PROMETHEUS_DIR, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    firing = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - firing == set(), "alerts no test makes fire"
    for g in rules["groups"]:
        for r in g["rules"]:
            assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
            assert {"summary", "description"} <= set(r["annotations"]), r["alert"]


def test_the_alert_rules_cover_errors_throttling_the_ledger_and_dead_letters():
    text = (PROMETHEUS_DIR / "alerts.yml").read_text()
    for metric in (
        "lamina_invocations_total",
        "lamina_throttles_total",
        "lamina_ledger_write_lag_seconds",
        "lamina_ledger_backlog_records",
        'lamina_async_deliveries_total{target="dead_letter"}',
    ):
        assert metric in text, metric


# ------------------------------------------------------------------ PromQL names


SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
NAME = re.compile(r"\b(lamina_[a-z0-9_]+|process_[a-z0-9_]+)\b")


def metric_names(expr):
    return set(NAME.findall(expr))


def check_promql_names(expr):
    """Problems with the metrics and labels an expression uses, against what Lamina
    exports."""
    problems = []
    labels = set(TARGET_LABELS)
    for name in metric_names(expr):
        base = name
        if name.startswith("lamina_"):
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
                    base = name[: -len(suffix)]
                    if suffix == "_bucket":
                        labels.add("le")
            if base not in LAMINA_METRICS:
                problems.append(f"{name} is not exported by Lamina")
                continue
            if base in HISTOGRAMS and base == name:
                problems.append(f"{name} is a histogram: use _bucket, _sum or _count")
            labels |= LAMINA_METRICS[base]
        elif name not in PROCESS_METRICS:
            problems.append(f"{name} is not a process metric the prometheus crate exports")
    for m in SELECTOR.finditer(expr):
        for label, _ in MATCHER.findall(m.group(2)):
            if label != "__name__" and label not in labels:
                problems.append(f"label {label} in {m.group(0)}")
    for m in GROUPING.finditer(expr):
        for label in filter(None, (x.strip() for x in m.group(1).split(","))):
            if label not in labels:
                problems.append(f"label {label} in {m.group(0)}")
    return problems


def test_alerts_use_only_exported_metrics_and_labels():
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            expr = r["expr"]
            if expr.strip().startswith("up{"):
                continue
            assert check_promql_names(expr) == [], (r["alert"], expr)


# ------------------------------------------------------------------ Grafana


def test_datasources_are_provisioned_with_fixed_uids():
    ds = provisioned_datasources()
    assert ds["lamina-prometheus"]["type"] == PROMETHEUS_TYPE
    assert ds["lamina-ledger"]["type"] == POSTGRES_TYPE
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "lamina.yaml").read_text()
    )["providers"]
    assert [p["options"]["path"] for p in providers] == ["/etc/grafana/dashboards"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path):
    d = load_dashboard(path)
    provisioned = provisioned_datasources()
    assert d["uid"] and d["title"]
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    ids = [p["id"] for p in all_panels(d)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    defined = {v["name"] for v in d["templating"]["list"]}
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            uid = v["datasource"]["uid"]
            assert uid in provisioned, f"variable {v['name']}: unknown datasource {uid}"
            assert provisioned[uid]["type"] == v["datasource"]["type"]
            assert variable_query(v), v["name"]
        assert v["type"] in ("query", "textbox", "custom", "constant", "interval"), v["name"]
    for panel in all_panels(d):
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"], panel["id"]
        assert panel.get("targets"), f"{panel['title']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refIds"
        for target in panel["targets"]:
            ds = datasource_of(panel, target)
            assert ds.get("uid") in provisioned, f"{panel['title']}: unknown datasource {ds}"
            assert provisioned[ds["uid"]]["type"] == ds["type"], panel["title"]
            if ds["type"] == PROMETHEUS_TYPE:
                text = target["expr"]
            else:
                assert target["rawQuery"] is True and target["editorMode"] == "code", panel["title"]
                assert target["format"] in ("table", "time_series"), panel["title"]
                text = target["rawSql"]
            for m in VARIABLE.finditer(text):
                name = m.group(1) or m.group(2) or m.group(3)
                assert name.startswith("__") or name in defined, f"{panel['title']}: ${name}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_do_not_overlap(path):
    taken = {}
    for panel in load_dashboard(path)["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_the_usage_dashboard_covers_the_issue(dashboards):
    d = dashboards["lamina-usage.json"]
    assert d["title"] == "Lamina usage"
    assert {"account", "function"} <= {v["name"] for v in d["templating"]["list"]}
    exprs = "\n".join(t["expr"] for _, t, kind in targets(d) if kind == PROMETHEUS_TYPE)
    for needle in (
        "rate(lamina_invocations_total",
        'outcome!="success"',
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "lamina_cold_starts_total",
        "lamina_init_duration_seconds_bucket",
        "lamina_restore_duration_seconds_bucket",
        "lamina_model_quality",
        "lamina_model_feedback_samples",
        "lamina_concurrent_executions",
        "lamina_account_concurrency_limit",
        "lamina_reserved_concurrency",
        "lamina_throttles_total",
        "lamina_environments",
        "lamina_async_queue_depth",
        "lamina_ledger_backlog_records",
    ):
        assert needle in exprs, needle


def test_the_billing_dashboard_prices_usage_with_variables(dashboards):
    d = dashboards["lamina-billing.json"]
    assert d["title"] == "Lamina billing"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert {"account", "function"} <= set(variables)
    assert variables["price_per_gb_second"]["query"] == "0.0000166667"
    assert variables["price_per_million_requests"]["query"] == "0.20"
    sql = "\n".join(t["rawSql"] for _, t, kind in targets(d) if kind == POSTGRES_TYPE)
    assert "gb_seconds) * $price_per_gb_second" in sql
    assert "$price_per_million_requests / 1000000" in sql
    for needle in ("max_memory_used_mb", "memory_size_mb", "init_ms", "LIMIT 20", "account_id IN ($account)"):
        assert needle in sql, needle


def test_promql_targets_parse_and_use_exported_metrics(dashboards, tmp_path):
    """Every PromQL query, with its variables set as Grafana would, goes through promtool
    as a recording rule: a syntax error fails `promtool check rules`."""
    values = dict(promql_builtins(), instance=".*", account="000000000000", function=["a", "b"])
    rules = []
    for name, d in dashboards.items():
        for v in d["templating"]["list"]:
            if v["type"] == "query" and v["datasource"]["type"] == PROMETHEUS_TYPE:
                q = variable_query(v)
                m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
                assert m, f"{name} variable {v['name']}: {q}"
                selector = interpolate(m.group(1), values, prometheus_format)
                rules.append({"record": f"dashboard:variable_{v['name']}", "expr": f"count by ({m.group(2)}) ({selector})"})
        for panel, target, kind in targets(d):
            if kind != PROMETHEUS_TYPE:
                continue
            expr = interpolate(target["expr"], values, prometheus_format)
            assert check_promql_names(expr) == [], (name, panel["title"], expr)
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    assert rules
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    out = subprocess.run([program("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def schema_database():
    url, why = postgres_database()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {why}")
        pytest.skip(f"PostgreSQL: {why}")
    try:
        migrate(url)
        yield url
    finally:
        drop_postgres_database(url)


def test_sql_targets_run_against_the_schema(dashboards, schema_database):
    """Every SQL query, variables and macros expanded, runs on an empty ledger: no syntax
    errors, no unknown columns, and time series return a `time` column."""
    import psycopg

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    end = datetime(2026, 2, 1, tzinfo=timezone.utc)
    with psycopg.connect(schema_database) as conn:
        for name, d in dashboards.items():
            values = {}
            for v in d["templating"]["list"]:
                if v["type"] == "textbox":
                    values[v["name"]] = v["query"]
                elif v["type"] == "query" and v["datasource"]["type"] == POSTGRES_TYPE:
                    sql = expand_sql_macros(interpolate(variable_query(v), values, sql_format), start, end)
                    conn.execute(sql).fetchall()
                    values[v["name"]] = ["000000000000"] if v["name"] == "account" else ["echo", "it's"]
            for panel, target, kind in targets(d):
                if kind != POSTGRES_TYPE:
                    continue
                sql = expand_sql_macros(interpolate(target["rawSql"], values, sql_format), start, end)
                try:
                    cur = conn.execute(sql)
                except psycopg.Error as e:
                    pytest.fail(f"{name} / {panel['title']}: {e}\n{sql}")
                columns = [c.name for c in cur.description]
                if target["format"] == "time_series":
                    assert "time" in columns, (panel["title"], columns)


# ------------------------------------------------------------------ compose, Docker, k8s, systemd


def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_runs_lamina_postgres_prometheus_and_grafana():
    c = compose()
    services = c["services"]
    assert {"lamina", "postgres", "prometheus", "grafana"} <= set(services)
    lamina = services["lamina"]
    assert lamina["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    command = lamina["command"]
    assert command[0] == "up"
    assert command[command.index("--listen") + 1] == "0.0.0.0:4599"
    assert command[command.index("--database-url") + 1].startswith("postgres://")
    assert "@postgres:5432/" in command[command.index("--database-url") + 1]
    assert lamina["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert any(v.endswith(":/var/lib/lamina") for v in lamina["volumes"])
    # Every bind mount exists in deploy/.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in c["volumes"], f"{name}: volume {source} not declared"


def test_compose_prometheus_scrapes_the_lamina_service():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "lamina")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == ["lamina:4599"]
    assert "./prometheus:/etc/prometheus:ro" in compose()["services"]["prometheus"]["volumes"]


def test_compose_grafana_sets_every_variable_provisioning_reads():
    env = compose()["services"]["grafana"]["environment"]

    def strings(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)
        elif isinstance(node, str):
            yield node

    # Grafana expands $VAR and ${VAR} in the values of provisioning files.
    needed = set()
    for path in sorted((GRAFANA_DIR / "provisioning").rglob("*.y*ml")):
        for value in strings(yaml.safe_load(path.read_text())):
            needed |= set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", value))
    assert needed, "provisioning reads no variables"
    assert needed <= set(env), needed - set(env)
    assert env["LAMINA_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert env["LAMINA_LEDGER_USER"] == "grafana_reader"


def test_dockerfile_builds_and_runs_lamina_up():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"cargo build --release --locked -p lamina\b", text)
    assert 'ENTRYPOINT ["lamina"]' in text
    assert 'CMD ["up", "--listen", "0.0.0.0:4599"]' in text
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {"target", ".git", "guests/target"} <= set(ignore)


def kubernetes_objects():
    objects = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [o for o in yaml.safe_load_all(path.read_text()) if o]
    return objects


def test_kubernetes_manifests():
    objects = kubernetes_objects()
    by_kind = {}
    for o in objects:
        assert {"apiVersion", "kind", "metadata"} <= set(o), o
        by_kind.setdefault(o["kind"], []).append(o)
    assert {"Deployment", "Service", "ConfigMap", "Secret"} <= set(by_kind)
    (deployment,) = by_kind["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    template = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "4599"
    assert annotations["prometheus.io/path"] == "/metrics"
    (container,) = template["spec"]["containers"]
    assert container["args"][0] == "up"
    assert [p["containerPort"] for p in container["ports"]] == [4599]
    refs = {r.get("secretRef", {}).get("name") for r in container["envFrom"]} - {None}
    configs = {r.get("configMapRef", {}).get("name") for r in container["envFrom"]} - {None}
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    assert refs and refs <= set(secrets)
    assert any("LAMINA_DATABASE_URL" in secrets[r]["stringData"] for r in refs)
    config_maps = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    assert configs <= set(config_maps)
    assert any(config_maps[c]["data"]["LAMINA_LISTEN"] == "0.0.0.0:4599" for c in configs)
    (service,) = by_kind["Service"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["port"] == 4599
    claims = {c["metadata"]["name"] for c in by_kind.get("PersistentVolumeClaim", [])}
    volumes = template["spec"]["volumes"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") in claims for v in volumes)
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_kustomize_renders_the_manifests():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the manifests are checked as YAML above")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kinds = [o["kind"] for o in yaml.safe_load_all(out.stdout) if o]
    assert {"Deployment", "Service", "ConfigMap", "Secret"} <= set(kinds)


def test_systemd_unit_runs_lamina_up():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "systemd" / "lamina.service")
    exec_start = unit["Service"]["ExecStart"]
    assert re.match(r"^/\S+/lamina up\b", exec_start), exec_start
    assert "--data-dir /var/lib/lamina" in exec_start
    assert unit["Service"]["StateDirectory"] == "lamina"
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert "MemoryDenyWriteExecute" not in unit["Service"], "wasmtime maps compiled code executable"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    analyze = shutil.which("systemd-analyze")
    if analyze:
        out = subprocess.run(
            [analyze, "verify", str(DEPLOY / "systemd" / "lamina.service")],
            capture_output=True, text=True,
        )
        # The binary is not installed here; anything else it reports is a mistake.
        complaints = [
            line for line in (out.stdout + out.stderr).splitlines()
            if line.strip() and "/usr/local/bin/lamina" not in line
        ]
        assert complaints == [], complaints

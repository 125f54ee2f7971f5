"""The operator assets in deploy/, checked without running them: Prometheus's config and
alert rules through promtool (with the rules' unit tests), the Grafana dashboards'
structure and queries (PromQL parses and names only metrics /metrics exports; SQL runs
against the schema), the compose cluster and its HAProxy (`haproxy -c` where installed),
the Kubernetes manifests against the API's schemas (kubernetes-validate, strict) and as
`kubectl kustomize` renders them, and the systemd files.

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
    "lamina_routing_decisions_total": {"decision"},
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
        "lamina_routing_decisions_total",
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


# ------------------------------------------------------------------ compose


def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def compose_environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def compose_setting(service, flag, variable):
    """A `lamina up` setting of a compose service: its flag in `command`, else its variable
    in `environment`."""
    command = service.get("command") or []
    if flag in command:
        return command[command.index(flag) + 1]
    return compose_environment(service).get(variable)


def lamina_nodes(services):
    """The compose services that run `lamina up`, by name."""
    return {
        name: s
        for name, s in services.items()
        if s.get("image") == "lamina:local" and (s.get("command") or [None])[0] == "up"
    }


def test_compose_runs_two_lamina_nodes_on_one_postgres_behind_haproxy():
    c = compose()
    services = c["services"]
    assert {"postgres", "haproxy", "prometheus", "grafana"} <= set(services)
    nodes = lamina_nodes(services)
    assert sorted(nodes) == ["lamina-1", "lamina-2"]
    data_volumes, key_files = set(), set()
    for name, node in nodes.items():
        assert node["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert compose_setting(node, "--listen", "LAMINA_LISTEN") == "0.0.0.0:4599", name
        url = compose_setting(node, "--database-url", "LAMINA_DATABASE_URL")
        assert url.startswith("postgres://") and "@postgres:5432/" in url, name
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy", name
        # Other nodes reach it by its service name, not through HAProxy.
        advertise = compose_setting(node, "--advertise-url", "LAMINA_ADVERTISE_URL")
        assert advertise == f"http://{name}:4599", name
        # Clients go through HAProxy, which keeps them away from draining nodes.
        assert "ports" not in node, name
        (data,) = [v.split(":")[0] for v in node["volumes"] if v.split(":")[1] == "/var/lib/lamina"]
        data_volumes.add(data)
        key = compose_setting(node, "--server-key-file", "LAMINA_SERVER_KEY_FILE")
        assert key, f"{name} sets no server key file"
        mounts = [v.split(":") for v in node["volumes"] if key.startswith(v.split(":")[1] + "/")]
        assert mounts, f"{name}: {key} is on no volume"
        key_files.add((mounts[0][0], key))
    assert len(data_volumes) == len(nodes), "nodes share a data directory"
    assert len(key_files) == 1, f"nodes use different server keys: {key_files}"
    # Every bind mount exists in deploy/, every named volume and config is declared.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in c["volumes"], f"{name}: volume {source} not declared"
        for config in service.get("configs", []):
            assert config["source"] in c["configs"], f"{name}: config {config['source']}"


def test_compose_haproxy_balances_over_the_lamina_nodes():
    services = compose()["services"]
    haproxy = services["haproxy"]
    assert haproxy["image"].startswith("haproxy:")
    assert "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    assert "4599:4599" in haproxy["ports"]
    config = haproxy_config()
    (frontend,) = sections_of(config, "frontend")
    assert any(words[:2] == ["bind", ":4599"] for words in config[frontend])
    (backend,) = sections_of(config, "backend")
    servers = {words[2] for words in config[backend] if words[0] == "server"}
    assert servers == {f"{name}:4599" for name in lamina_nodes(services)}


def compose_prometheus_config():
    c = compose()
    prometheus = c["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    (mounted,) = [
        m for m in prometheus["configs"] if m["target"] == "/etc/prometheus/prometheus.yml"
    ]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    return c["configs"][mounted["source"]]["content"]


def test_compose_prometheus_scrapes_every_node(tmp_path):
    text = compose_prometheus_config()
    config = yaml.safe_load(text)
    nodes = lamina_nodes(compose()["services"])
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "lamina")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert sorted(t for sc in job["static_configs"] for t in sc["targets"]) == sorted(
        f"{name}:4599" for name in nodes
    )

    # The rest is prometheus/prometheus.yml, so that the two cannot drift apart.
    def without_lamina_targets(c):
        c = json.loads(json.dumps(c))
        for j in c["scrape_configs"]:
            if j["job_name"] == "lamina":
                del j["static_configs"]
        return c

    standalone = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert without_lamina_targets(config) == without_lamina_targets(standalone)
    (tmp_path / "prometheus.yml").write_text(text)
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    out = subprocess.run(
        [program("promtool"), "check", "config", "prometheus.yml"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout + out.stderr


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


# ------------------------------------------------------------------ HAProxy


HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
HAPROXY_SECTIONS = {
    "global", "defaults", "frontend", "backend", "listen", "resolvers", "peers",
    "userlist", "program", "http-errors", "ring", "cache", "mailers",
}


def haproxy_config():
    """haproxy.cfg as {(section, name): [directive words...]}, comments dropped."""
    sections, current = {}, None
    for raw in HAPROXY_CFG.read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if not raw[0].isspace() and words[0] in HAPROXY_SECTIONS:
            current = (words[0], words[1] if len(words) > 1 else "")
            assert current not in sections, f"section {current} twice"
            sections[current] = []
        else:
            assert current is not None, f"directive outside a section: {raw}"
            sections[current].append(words)
    return sections


def sections_of(config, kind):
    return [key for key in config if key[0] == kind]


def haproxy_setting(config, backend, *keyword):
    """The words after `keyword` in the backend, else in the defaults section."""
    (defaults,) = sections_of(config, "defaults")
    for section in (backend, defaults):
        for words in reversed(config[section]):
            if tuple(words[: len(keyword)]) == keyword:
                return words[len(keyword):]
    return None


def test_haproxy_routes_only_to_ready_nodes_and_retries_safely():
    config = haproxy_config()
    (backend,) = sections_of(config, "backend")
    assert haproxy_setting(config, backend, "mode") == ["http"]
    assert haproxy_setting(config, backend, "balance")[0] in ("roundrobin", "leastconn")
    # Health: a node that drains or drops out of the cluster answers 503 on /lamina/ready.
    httpchk = haproxy_setting(config, backend, "option", "httpchk")
    assert httpchk is not None, "no HTTP health check"
    send = haproxy_setting(config, backend, "http-check", "send")
    if send is not None:
        assert "uri" in send, send
        path = send[send.index("uri") + 1]
    else:
        assert len(httpchk) >= 2, httpchk
        path = httpchk[1]
    assert path == "/lamina/ready"
    assert haproxy_setting(config, backend, "http-check", "expect") == ["status", "200"]
    servers = [words for words in config[backend] if words[0] == "server"]
    default_server = haproxy_setting(config, backend, "default-server") or []
    assert len(servers) >= 2
    for words in servers:
        assert "check" in words[3:] + default_server, words
        # Names must resolve at run time for `haproxy -c` and a start before the nodes.
        assert "init-addr" in words[3:] + default_server, words
    # Retries: three, each to another node, on failures where the node did not answer.
    assert haproxy_setting(config, backend, "retries") == ["3"]
    assert haproxy_setting(config, backend, "option", "redispatch") is not None
    retry_on = set(haproxy_setting(config, backend, "retry-on") or [])
    assert {"conn-failure", "empty-response", "response-timeout"} <= retry_on
    # An Invoke that reached a node may have run: only connection failures may repeat it.
    assert ["http-request", "disable-l7-retry", "unless", "METH_GET"] in config[backend]
    # A synchronous Invoke waits for the function, up to Lambda's 900 s.
    assert parse_interval(haproxy_setting(config, backend, "timeout", "server")[0]) > 900
    assert parse_interval(haproxy_setting(config, backend, "timeout", "client")[0]) > 900


def test_haproxy_accepts_its_configuration():
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if haproxy is None:
        pytest.skip("haproxy is not installed (Debian package haproxy); the structure test parsed it")
    out = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Configuration file is valid" in out.stdout + out.stderr
    # Unresolvable names (the compose services) are expected here; nothing else.
    warnings = [
        line for line in out.stderr.splitlines()
        if "[WARNING]" in line and "could not resolve address" not in line
    ]
    assert warnings == [], warnings


# ------------------------------------------------------------------ Kubernetes


K8S = DEPLOY / "kubernetes"
# The oldest Kubernetes the manifests are for: the preStop `sleep` action is on by default
# from 1.30.
KUBERNETES_VERSION = "1.30.0"
# Needs prometheus-adapter, so it is applied by hand, not by the kustomization.
K8S_EXAMPLES = {"hpa-example.yaml"}
K8S_MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def kustomization():
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def load_manifest(path):
    return [o for o in yaml.safe_load_all(path.read_text()) if o]


def validate_kubernetes(obj):
    """Problems kubernetes-validate finds in one object against the API's schemas, in
    strict mode (unknown fields are errors). A kind it has no schema for is a problem too."""
    import kubernetes_validate

    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{name}: {e.message}"]
    return []


@pytest.mark.parametrize("path", K8S_MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifest_matches_the_api_schema(path):
    objects = load_manifest(path)
    assert objects, f"{path.name} is empty"
    problems = [p for o in objects for p in validate_kubernetes(o)]
    assert problems == []


def test_kubernetes_validation_rejects_a_misspelled_field():
    """The check above catches what it is for: an unknown field, a wrong type."""
    (statefulset,) = load_manifest(K8S / "statefulset.yaml")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["failureTreshold"] = 2
    assert validate_kubernetes(statefulset)
    del container["readinessProbe"]["failureTreshold"]
    container["ports"][0]["containerPort"] = "4599"
    assert validate_kubernetes(statefulset)


def test_kustomization_lists_every_manifest_but_the_examples():
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    present = {p.name for p in K8S_MANIFESTS}
    assert K8S_EXAMPLES <= present
    assert set(listed) == present - K8S_EXAMPLES


@pytest.fixture(scope="module")
def kubernetes_objects():
    """What `kubectl apply -k` would send: the kustomization rendered by `kubectl
    kustomize` where kubectl is installed, else the resources it lists as written."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return [o for name in kustomization()["resources"] for o in load_manifest(K8S / name)]
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def test_kustomize_renders_valid_manifests():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; every listed manifest is validated on its own above")
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    assert [p for o in objects for p in validate_kubernetes(o)] == []
    namespace = kustomization()["namespace"]
    for o in objects:
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == namespace, o["kind"]
    (statefulset,) = [o for o in objects if o["kind"] == "StatefulSet"]
    image = statefulset["spec"]["template"]["spec"]["containers"][0]["image"]
    (rewrite,) = kustomization()["images"]
    assert image == f"{rewrite['newName']}:{rewrite['newTag']}"


def objects_by_kind(objects):
    by_kind = {}
    for o in objects:
        assert {"apiVersion", "kind", "metadata"} <= set(o), o
        by_kind.setdefault(o["kind"], []).append(o)
    return by_kind


def selects(selector, labels):
    return selector.items() <= labels.items()


def test_kubernetes_runs_a_cluster_of_nodes(kubernetes_objects):
    by_kind = objects_by_kind(kubernetes_objects)
    # Nodes own their volumes; nothing is shared, and no second controller runs Lamina.
    assert "Deployment" not in by_kind and "PersistentVolumeClaim" not in by_kind
    (statefulset,) = by_kind["StatefulSet"]
    spec = statefulset["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert selects(spec["selector"]["matchLabels"], labels)
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "4599"
    assert annotations["prometheus.io/path"] == "/metrics"
    pod = template["spec"]
    # Draining waits for in-flight invocations, up to Lambda's longest timeout.
    assert pod["terminationGracePeriodSeconds"] > 900
    # Service links would add LAMINA_SERVICE_HOST and the like to the node's settings.
    assert pod["enableServiceLinks"] is False

    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    headless = services[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert selects(headless["spec"]["selector"], labels)
    (client,) = [s for s in services.values() if s["spec"].get("clusterIP") != "None"]
    assert selects(client["spec"]["selector"], labels)
    assert client["spec"]["ports"][0]["port"] == 4599

    (budget,) = by_kind["PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)

    (container,) = pod["containers"]
    assert container["args"][0] == "up"
    assert [p["containerPort"] for p in container["ports"]] == [4599]
    assert container["readinessProbe"]["httpGet"]["path"] == "/lamina/ready"
    # A database outage must not restart the nodes.
    assert "tcpSocket" in container["livenessProbe"] and "httpGet" not in container["livenessProbe"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True

    # Settings: the ConfigMap and Secret it reads, then its own env list.
    config_maps = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    settings = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            settings.update(config_maps[source["configMapRef"]["name"]]["data"])
        else:
            settings.update(secrets[source["secretRef"]["name"]]["stringData"])
    assert settings["LAMINA_LISTEN"] == "0.0.0.0:4599"
    assert settings["LAMINA_DATABASE_URL"].startswith("postgres://")
    env = container["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    by_name = {e["name"]: e for e in env}
    # The pod's name: a pod back on its volume is the same node and replays its spool.
    assert by_name["LAMINA_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Kubernetes expands $(VAR) only for variables defined earlier in the list.
    for i, e in enumerate(env):
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")):
            assert ref in names[:i] or ref in settings, f"{e['name']}: $({ref}) is not set before"
    advertise = by_name["LAMINA_ADVERTISE_URL"]["value"]
    assert advertise.startswith("http://$(LAMINA_NODE_ID)." + spec["serviceName"] + ".")
    assert advertise.endswith(":4599")
    for name in ("LAMINA_SERVER_KEY_FILE", "LAMINA_ADVERTISE_URL"):
        assert name not in settings, f"{name} is per pod: set it in the StatefulSet only"

    # Volumes: the data directory from the claim template, the server key from a Secret,
    # unpacked packages in memory.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    assert mounts[settings["LAMINA_DATA_DIR"]]["name"] in claims
    key_file = by_name["LAMINA_SERVER_KEY_FILE"]["value"]
    key_dir, key_name = key_file.rsplit("/", 1)
    key_mount = mounts[key_dir]
    assert key_mount.get("readOnly") is True
    assert "secret" in volumes[key_mount["name"]]
    assert key_name == "server.key", "secret.yaml creates the secret from a file named server.key"
    secret_name = volumes[key_mount["name"]]["secret"]["secretName"]
    how = f"create secret generic {secret_name} --from-file=server.key"
    assert how in (K8S / "secret.yaml").read_text(), "secret.yaml must say how to create it"
    unpacked = volumes[mounts[settings["LAMINA_PACKAGE_CACHE_DIR"]]["name"]]
    assert unpacked["emptyDir"]["medium"] == "Memory"

    # Function URLs point at the client Service.
    namespace = kustomization()["namespace"]
    public = f"http://{client['metadata']['name']}.{namespace}.svc.cluster.local:4599"
    assert settings["LAMINA_PUBLIC_URL"] == public


def test_the_autoscaler_example_scales_the_statefulset_on_concurrent_executions():
    (hpa,) = load_manifest(K8S / "hpa-example.yaml")
    (statefulset,) = load_manifest(K8S / "statefulset.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        statefulset["apiVersion"], statefulset["kind"], statefulset["metadata"]["name"],
    )
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "lamina_concurrent_executions"
    assert "lamina_concurrent_executions" in LAMINA_METRICS
    assert metric["pods"]["target"]["type"] == "AverageValue"
    # Scaling in below the StatefulSet's count would defeat the disruption budget's spare.
    assert hpa["spec"]["minReplicas"] == statefulset["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


# ------------------------------------------------------------------ systemd


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


def test_systemd_cluster_settings():
    path = DEPLOY / "systemd" / "lamina.env.example"
    settings = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"LAMINA_[A-Z0-9_]+", name), line
            settings[name] = value
    assert settings["LAMINA_DATABASE_URL"].startswith("postgres://")
    assert re.fullmatch(r"https?://[^/:]+:\d+", settings["LAMINA_ADVERTISE_URL"])
    # DynamicUser cannot read /etc/lamina: the key arrives as the unit's credential.
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "systemd" / "lamina.service")
    assert unit["Service"]["DynamicUser"] == "yes"
    credential = re.search(r"LoadCredential=(\S+?):", path.read_text())
    assert credential, "no LoadCredential= for the server key"
    key_file = f"/run/credentials/lamina.service/{credential.group(1)}"
    assert settings["LAMINA_SERVER_KEY_FILE"] == key_file

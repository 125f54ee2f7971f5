"""The Grafana dashboards against live data: a node on PostgreSQL under generated load, a
real Prometheus scraping its /metrics every second with deploy/prometheus/alerts.yml
loaded, and then every query of both dashboards, with its variables and macros expanded
as Grafana would, must return data: each PromQL query a series with a finite value, each
SQL query a row with a non-empty value.

Load comes in two rounds with a scrape in between, because a counter or histogram series
first appears already incremented: only the second round makes rate() move.
"""

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml
from botocore.exceptions import ClientError

from conftest import (
    LAMINA_BIN,
    ROLE,
    Lamina,
    drop_postgres_database,
    postgres_database,
    send_feedback,
    unique,
    wasm_zip,
    zip_of,
)
from test_deploy import (
    DASHBOARDS,
    POSTGRES_TYPE,
    PROMETHEUS_DIR,
    PROMETHEUS_TYPE,
    expand_sql_macros,
    finite,
    interpolate,
    load_dashboard,
    program,
    prometheus_format,
    promql_builtins,
    sql_format,
    targets,
    variable_query,
)

SCRAPE_SECONDS = 1
# Grafana's $__rate_interval: max($__interval + scrape interval, 4 * scrape interval).
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"
STEP = f"{SCRAPE_SECONDS}s"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    url, why = postgres_database()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {why}")
        pytest.skip(f"the billing dashboard reads PostgreSQL: {why}")
    n = Lamina(
        tmp_path_factory.mktemp("dashboards"),
        url,
        extra=["--idle-timeout", "600", "--retry-base", "0.5"],
    ).start()
    try:
        r = requests.get(f"{n.endpoint}/metrics", timeout=10)
        assert r.status_code == 200 and "lamina_" in r.text, (
            f"{LAMINA_BIN} serves no Lamina metrics at /metrics: {r.status_code}"
        )
        yield n
    finally:
        n.stop()
        drop_postgres_database(url)


class Prometheus:
    """A Prometheus server on a free port scraping one node, with Lamina's alert rules."""

    def __init__(self, directory, target):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_SECONDS}s",
            },
            "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
            "scrape_configs": [
                {
                    "job_name": "lamina",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        self.config = directory / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = open(directory / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [
                program("prometheus"),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, self.logs()
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus did not become ready:\n" + self.logs())

    def logs(self):
        self.log.flush()
        return open(self.log.name).read()

    def api(self, path, **params):
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = r.json()
        assert body.get("status") == "success", (path, params, body)
        return body["data"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(node, tmp_path_factory):
    target = node.endpoint.removeprefix("http://").rstrip("/")
    p = Prometheus(tmp_path_factory.mktemp("prometheus"), target)
    try:
        # A first scrape before any load, so the second round of load moves every rate.
        deadline = time.time() + 20
        while time.time() < deadline:
            if p.api("query", query='up{job="lamina"} == 1')["result"]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("prometheus never scraped the node:\n" + p.logs())
        yield p
    finally:
        p.stop()


def create(client, fixture, **kwargs):
    name = unique(fixture)
    client.create_function(
        FunctionName=name,
        Runtime="wasm",
        Role=ROLE,
        Handler="function.wasm",
        Code={"ZipFile": wasm_zip(fixture)},
        **kwargs,
    )
    return name


class Load:
    """Functions that produce every kind of series the dashboards show."""

    def __init__(self, client):
        self.client = client
        c = client
        self.sink = create(c, "logger")
        sink_arn = c.get_function(FunctionName=self.sink)["Configuration"]["FunctionArn"]
        self.echo = create(c, "echo")
        # Reserved concurrency gives the limit series; provisioned concurrency on
        # version 1 gives the provisioned environments.
        c.put_function_concurrency(FunctionName=self.echo, ReservedConcurrentExecutions=50)
        c.publish_version(FunctionName=self.echo)
        c.put_provisioned_concurrency_config(
            FunctionName=self.echo, Qualifier="1", ProvisionedConcurrentExecutions=1
        )
        self.faults = create(c, "faults")
        self.sleep = create(c, "sleep", Timeout=1)
        # Version 1 of a SnapStart function: its new environments are restores.
        self.snap = create(c, "sleep", Timeout=5, SnapStart={"ApplyOn": "PublishedVersions"})
        c.publish_version(FunctionName=self.snap)
        self.throttled = create(c, "echo")
        c.put_function_concurrency(FunctionName=self.throttled, ReservedConcurrentExecutions=0)
        # Failing async events: one retry 0.5 s later, then the dead-letter target for
        # one function and an on-failure destination for the other.
        self.async_dlq = create(c, "faults", DeadLetterConfig={"TargetArn": sink_arn})
        c.put_function_event_invoke_config(FunctionName=self.async_dlq, MaximumRetryAttempts=1)
        self.async_destination = create(c, "faults")
        c.put_function_event_invoke_config(
            FunctionName=self.async_destination,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": sink_arn}},
        )
        # Models with ground truth give the quality series.
        self.classifier, self.regressor, self.rows = models(c)
        deadline = time.time() + 20
        while c.get_provisioned_concurrency_config(FunctionName=self.echo, Qualifier="1")["Status"] != "READY":
            assert time.time() < deadline, "provisioned concurrency never became READY"
            time.sleep(0.1)

    def invoke(self, name, payload, **kwargs):
        return self.client.invoke(FunctionName=name, Payload=json.dumps(payload), **kwargs)

    def round(self, n):
        for i in range(3):
            self.invoke(self.echo, {"round": n, "i": i})
        self.invoke(self.echo, {"round": n}, Qualifier="1")
        assert "FunctionError" not in self.invoke(self.faults, {})
        assert self.invoke(self.faults, {"kind": "error"})["FunctionError"] == "Unhandled"
        assert self.invoke(self.sleep, {"ms": 3000})["FunctionError"] == "Unhandled"
        # Parallel sleeps, more each round, need new environments: cold starts.
        with concurrent.futures.ThreadPoolExecutor(2 + 2 * n) as pool:
            for r in pool.map(lambda _: self.invoke(self.sleep, {"ms": 300}), range(2 + 2 * n)):
                assert "FunctionError" not in r
        with concurrent.futures.ThreadPoolExecutor(2 + 2 * n) as pool:
            restores = pool.map(
                lambda _: self.invoke(self.snap, {"ms": 300}, Qualifier="1"), range(2 + 2 * n)
            )
            for r in restores:
                assert "FunctionError" not in r
        with pytest.raises(ClientError) as e:
            self.invoke(self.throttled, {})
        assert e.value.response["Error"]["Code"] == "TooManyRequestsException"
        for name in (self.async_dlq, self.async_destination):
            r = self.invoke(name, {"kind": "error"}, InvocationType="Event")
            assert r["StatusCode"] == 202
        for name, (x, truth) in zip((self.classifier, self.regressor), self.rows):
            r = self.invoke(name, {"input": x})
            assert "FunctionError" not in r
            request_id = r["ResponseMetadata"]["RequestId"]
            sent = send_feedback(self.client.meta.endpoint_url, name, request_id, truth)
            assert sent.status_code == 200, sent.text

    def names(self):
        return [self.sink, self.echo, self.faults, self.sleep, self.throttled,
                self.async_dlq, self.async_destination, self.classifier, self.regressor,
                self.snap]


def models(client):
    """An iris classifier and a diabetes regressor as onnx functions, and for each a few
    rows with their true answers."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LinearRegression
    from sklearn.tree import DecisionTreeClassifier

    names, rows = [], []
    for load, model in ((load_iris, DecisionTreeClassifier(max_depth=2, random_state=0)),
                        (load_diabetes, LinearRegression())):
        X, y = load(return_X_y=True)
        model.fit(X, y)
        onx = to_onnx(model, X[:1].astype(np.float32))
        name = unique("model")
        client.create_function(
            FunctionName=name, Runtime="onnx", Role=ROLE, Handler="model.onnx",
            Code={"ZipFile": zip_of({"model.onnx": onx.SerializeToString()})},
        )
        names.append(name)
        rows.append((X[:3].tolist(), y[:3].tolist()))
    return names[0], names[1], rows


@pytest.fixture(scope="module")
def load(node, prometheus):
    started = datetime.now(timezone.utc)
    client = node.client()
    load = Load(client)
    load.round(0)
    # Two scrapes between the rounds.
    time.sleep(2.5 * SCRAPE_SECONDS)
    load.round(1)
    load.started = started
    return load


def eventually(check, timeout):
    """Runs `check` (which returns a list of problems) until it returns none."""
    deadline = time.time() + timeout
    while True:
        problems = check()
        if not problems or time.time() > deadline:
            return problems
        time.sleep(1)


def prometheus_variables(prometheus, dashboard, start, end):
    """Each query variable's values, fetched as Grafana does, all of them selected."""
    values = {}
    for v in dashboard["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable_query(v).strip())
        selector = interpolate(m.group(1), values, prometheus_format)
        found = prometheus.api(
            f"label/{m.group(2)}/values",
            **{"match[]": selector, "start": start.timestamp(), "end": end.timestamp()},
        )
        values[v["name"]] = found
    return values


def test_every_promql_query_returns_data(load, node, prometheus):
    dashboard = load_dashboard(next(p for p in DASHBOARDS if p.name == "lamina-usage.json"))

    def check():
        end = datetime.now(timezone.utc)
        start = load.started - timedelta(seconds=30)
        values = prometheus_variables(prometheus, dashboard, start, end)
        problems = [f"variable {k} has no values" for k, v in values.items() if not v]
        if problems:
            return problems
        assert set(load.names()) <= set(values["function"]), values["function"]
        assert values["account"] == ["000000000000"]
        range_seconds = (end - start).total_seconds()
        values.update(promql_builtins(RATE_INTERVAL, STEP, range_seconds))
        for panel, target, kind in targets(dashboard):
            if kind != PROMETHEUS_TYPE:
                continue
            expr = interpolate(target["expr"], values, prometheus_format)
            if target.get("instant"):
                result = prometheus.api("query", query=expr, time=end.timestamp())["result"]
                samples = [s["value"][1] for s in result]
            else:
                result = prometheus.api(
                    "query_range", query=expr, start=start.timestamp(),
                    end=end.timestamp(), step=STEP,
                )["result"]
                samples = [v for s in result for _, v in s["values"]]
            if not any(finite(v) for v in samples):
                problems.append(f"{panel['title']} [{target['refId']}] returned no data: {expr}")
        return problems

    problems = eventually(check, timeout=25)
    assert problems == [], "\n".join(problems)


def test_alert_rules_evaluate_without_errors(load, prometheus):
    groups = prometheus.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 10
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]
    assert broken == []


def test_every_sql_query_returns_rows(load, node):
    import psycopg

    dashboard = load_dashboard(next(p for p in DASHBOARDS if p.name == "lamina-billing.json"))
    start = load.started - timedelta(minutes=10)

    def check():
        end = datetime.now(timezone.utc) + timedelta(minutes=1)
        problems = []
        values = {}
        with psycopg.connect(node.database_url) as conn:
            for v in dashboard["templating"]["list"]:
                if v["type"] == "textbox":
                    values[v["name"]] = v["query"]
                elif v["type"] == "query" and v["datasource"]["type"] == POSTGRES_TYPE:
                    sql = expand_sql_macros(interpolate(variable_query(v), values, sql_format), start, end)
                    values[v["name"]] = [row[0] for row in conn.execute(sql).fetchall()]
                    if not values[v["name"]]:
                        return [f"variable {v['name']} has no values"]
            # Every function that ran is in the ledger, retries and dead letters included.
            missing = set(load.names()) - {load.throttled} - set(values["function"])
            if missing:
                return [f"no ledger rows yet for {sorted(missing)}"]
            for panel, target, kind in targets(dashboard):
                if kind != POSTGRES_TYPE:
                    continue
                sql = expand_sql_macros(interpolate(target["rawSql"], values, sql_format), start, end)
                rows = conn.execute(sql).fetchall()
                if not any(any(cell not in (None, 0, "") for cell in row) for row in rows):
                    problems.append(f"{panel['title']} [{target['refId']}] returned {rows}:\n{sql}")
        return problems

    problems = eventually(check, timeout=20)
    assert problems == [], "\n".join(problems)

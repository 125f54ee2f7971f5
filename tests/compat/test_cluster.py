"""Three nodes on one PostgreSQL database form one cluster behind a real HAProxy: a
catalog change made through any node is in force on every node within a second, any node
serves any function, `lamina nodes` follows the membership, and neither async events nor
ledger rows are lost when a node is killed with SIGKILL and comes back on its data
directory. Account and reserved concurrency bound all nodes together, and provisioned
concurrency is spread over the nodes and moves off a dead one.

The cluster is shared by the module (starting it takes seconds); the tests that kill
nodes bring it back to three live nodes, and every test starts by making sure it is."""

import base64
import collections
import http.client
import json
import math
import subprocess
import threading
import time
import urllib.parse
import uuid

import boto3
import botocore.exceptions
from botocore.config import Config
import pytest
import requests

from cluster import ClusterOf3, haproxy_binary, home_nodes, require, routing_decisions, wait_until
from test_scheduler import outcome, parallel
from conftest import (
    ACCOUNT,
    ROLE,
    ROOT_KEY_ID,
    ROOT_SECRET,
    signed,
    aws_lambda,
    code_sha256,
    drop_postgres_database,
    environments_of,
    expect_error,
    fixture_bytes,
    lamina_cli,
    postgres_database,
    unique,
    wasm_zip,
    zip_of,
)

# How soon a catalog change made through one node must be in force on the others.
PROPAGATION_BOUND = 1.0

# The cluster's concurrent executions per account.
ACCOUNT_CONCURRENCY = 130

# In-flight invocations at which a home node takes no more forwarded requests.
SPILL_OVER_AT = 4


@pytest.fixture(scope="module")
def cluster_of_3(tmp_path_factory):
    if haproxy_binary() is None:
        require("HAProxy", "no haproxy on PATH or in /usr/sbin (apt-get install haproxy)")
    url, why = postgres_database()
    if url is None:
        require("PostgreSQL", why)
    cluster = ClusterOf3(
        tmp_path_factory.mktemp("cluster"),
        url,
        # A small account limit, so that a test can bring its unreserved part under what
        # twelve parallel invocations need.
        extra=[
            "--idle-timeout", "600", "--retry-base", "1",
            "--account-concurrency", str(ACCOUNT_CONCURRENCY), "--min-unreserved", "10",
            # A home with four invocations in flight takes no more forwarded requests, so
            # that a test can saturate two homes with a dozen.
            "--spill-over-at", str(SPILL_OVER_AT),
        ],
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        drop_postgres_database(url)


@pytest.fixture
def cluster(cluster_of_3):
    """The module's cluster with all three nodes live, whatever an earlier test left."""
    cluster_of_3.restore()
    return cluster_of_3


def create(client, fixture="echo", name=None, zip_bytes=None, **kwargs):
    params = dict(
        FunctionName=name or unique(fixture),
        Runtime="wasm",
        Role=ROLE,
        Handler="function.wasm",
        Code={"ZipFile": zip_bytes if zip_bytes is not None else wasm_zip(fixture)},
    )
    params.update(kwargs)
    return client.create_function(**params)


def exists(name):
    def check(client):
        try:
            client.get_function(FunctionName=name)
            return True
        except client.exceptions.ResourceNotFoundException:
            return False

    return check


def absent(name):
    check = exists(name)
    return lambda client: not check(client)


def propagation(observers, check, since, timeout=10):
    """Seconds from `since` (a time.monotonic()) until `check(client)` first holds on
    each observer (label -> client), polling them in turn."""
    pending = dict(observers)
    seen = {}
    deadline = since + timeout
    while pending:
        for label, client in list(pending.items()):
            if check(client):
                seen[label] = time.monotonic() - since
                del pending[label]
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"{sorted(pending)} did not see the change within {timeout} s")
        time.sleep(0.01)
    return seen


def present_everywhere(cluster, name):
    """Waits until every node knows `name` (tests that are not about propagation)."""
    propagation(
        {cluster.names[i]: cluster.client(i) for i in range(cluster.SIZE)},
        exists(name),
        time.monotonic(),
    )


def reserved_everywhere(cluster, name, reserved):
    """Waits until every node knows `name` and holds it to `reserved` concurrency."""
    present_everywhere(cluster, name)
    propagation(
        {cluster.names[i]: cluster.client(i) for i in range(cluster.SIZE)},
        lambda c: c.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") == reserved,
        time.monotonic(),
    )


def p99(samples):
    """The nearest-rank 99th percentile."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def invoke_json(client, name, payload, **kwargs):
    r = client.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), **kwargs)
    return r, json.loads(r["Payload"].read())


def lamina_nodes(cluster, *args):
    """`lamina nodes` against the load balancer, as an operator runs it."""
    return lamina_cli(cluster.lb, "nodes", "--endpoint", cluster.lb.endpoint, *args, timeout=60)


def listed_ids(cluster):
    """The node ids `lamina nodes --output json` lists; the command's stderr if it failed."""
    done = lamina_nodes(cluster, "--output", "json")
    if done.returncode != 0:
        return done.stderr
    return {n["NodeId"] for n in json.loads(done.stdout)}


def wait_listed(cluster, want, timeout, since=None):
    """Seconds from `since` until `lamina nodes` lists exactly the ids in `want`."""
    since = since if since is not None else time.monotonic()
    last = {}

    def listed():
        last["answer"] = listed_ids(cluster)
        return last["answer"] == set(want)

    try:
        wait_until(listed, timeout, f"lamina nodes to list {sorted(want)}", interval=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer: {last.get('answer')}") from None
    return time.monotonic() - since


def ledger_rows(cluster, name):
    return cluster.query(
        "SELECT request_id, attempt, outcome FROM invocations WHERE function_name = ?", (name,)
    )


def leb128(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def never_seen_wasm(fixture):
    """The fixture with a custom section holding a fresh nonce: the same function, but
    code (and a package) that no node can have laid out or compiled before."""
    name = b"lamina-test-nonce"
    payload = leb128(len(name)) + name + uuid.uuid4().hex.encode()
    return fixture_bytes(fixture) + b"\x00" + leb128(len(payload)) + payload


def test_three_nodes_form_one_cluster_with_one_root_account(cluster):
    ids = cluster.node_ids
    assert all(ids) and len(set(ids)) == 3, ids
    addresses = {node_id: node.endpoint for node_id, node in zip(ids, cluster.nodes)}
    for node_id, node in zip(ids, cluster.nodes):
        # Unsigned, as a load balancer's health check asks.
        assert requests.get(f"{node.endpoint}/lamina/ready", timeout=5).status_code == 200
        listed = cluster.live_nodes(node.endpoint)
        assert {n["NodeId"]: n["AdvertiseUrl"].rstrip("/") for n in listed} == addresses
        assert [n["NodeId"] for n in listed if n["Self"]] == [node_id], listed
        for n in listed:
            for count in ("Environments", "InFlight", "ModelsLoaded"):
                assert isinstance(n[count], int) and n[count] >= 0, n
            assert n["StartedAt"] and n["LastHeartbeat"] >= n["StartedAt"], n
    # /lamina/status is an account's view: unsigned, it is refused like the Lambda API.
    unsigned = requests.get(f"{cluster.lb.endpoint}/lamina/status", timeout=5)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    # The first node made the root account and its key; the others found them.
    assert cluster.created_root == ["node1"], cluster.created_root
    assert cluster.query("SELECT COUNT(*) FROM accounts") == [(1,)]
    assert cluster.query("SELECT COUNT(*) FROM access_keys") == [(1,)]


def homes(cluster, name):
    """The indexes of `name`'s two home nodes among the three, best first."""
    ranked = home_nodes(name, cluster.node_ids)
    return [cluster.node_ids.index(node_id) for node_id in ranked]


def outsider(cluster, name):
    """The node that is not one of `name`'s homes."""
    return next(i for i in range(cluster.SIZE) if i not in homes(cluster, name))


def decisions(node):
    return routing_decisions(node.endpoint)


def test_a_function_created_on_one_node_is_served_by_every_node_within_a_second(cluster):
    name = unique("everywhere")
    observers = {"node2": cluster.client(1), "node3": cluster.client(2)}
    # Absent before, which also readies each client, so the clock below times the nodes.
    assert not any(exists(name)(c) for c in observers.values())
    create(cluster.client(0), "echo", name)
    created = time.monotonic()
    seen = propagation(observers, exists(name), created)
    assert max(seen.values()) < PROPAGATION_BOUND, seen
    for i in (1, 2):
        r, body = invoke_json(cluster.client(i), name, {"on": cluster.names[i]})
        assert (r["StatusCode"], body) == (200, {"on": cluster.names[i]}), r
        assert "FunctionError" not in r

    lb = cluster.lb_client()
    for i in range(30):
        payload = {"n": i, "via": "haproxy"}
        r, body = invoke_json(lb, name, payload)
        assert r["StatusCode"] == 200 and "FunctionError" not in r, r
        assert body == payload
    # Round robin spread the calls over the nodes, and routing sent them to the
    # function's two home nodes: only they run it.
    home = homes(cluster, name)
    assert all(environments_of(cluster.nodes[i], name) >= 1 for i in home), home
    assert environments_of(cluster.nodes[outsider(cluster, name)], name) == 0
    print(f"created on node1, known on {', '.join(f'{k} after {v * 1000:.0f} ms' for k, v in seen.items())}")


def test_a_node_that_is_not_home_forwards_and_answers_as_the_home_did(cluster):
    name = unique("homed")
    create(cluster.client(0), "counter", name)
    present_everywhere(cluster, name)
    out = outsider(cluster, name)
    client = cluster.client(out)
    before = decisions(cluster.nodes[out])
    counts = []
    for _ in range(10):
        r = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        assert r["StatusCode"] == 200 and "FunctionError" not in r, r
        assert r["ExecutedVersion"] == "$LATEST"
        request_id = r["ResponseMetadata"]["RequestId"]
        assert f"REPORT RequestId: {request_id}" in base64.b64decode(r["LogResult"]).decode()
        body = json.loads(r["Payload"].read())
        assert body["inits"] == 1, body
        counts.append(body["count"])
    # One warm environment on the first home served all ten, one after the other.
    assert counts == list(range(1, 11)), counts
    assert decisions(cluster.nodes[out])["forwarded"] - before["forwarded"] == 10
    assert environments_of(cluster.nodes[out], name) == 0
    assert [environments_of(cluster.nodes[i], name) for i in homes(cluster, name)] == [1, 0]
    # What the serving node tells the forwarding one stays between them.
    raw = signed("POST", f"{cluster.nodes[out].endpoint}/2015-03-31/functions/{name}/invocations", data=b"{}")
    assert raw.status_code == 200, raw.text
    assert not any(h.lower().startswith("x-lamina") for h in raw.headers), dict(raw.headers)
    # An HTTP/2 client names the host in the request's authority, which its signature
    # covers: the home checks the signature against it.
    h2 = subprocess.run(
        [
            "curl", "-sS", "--http2-prior-knowledge", "--aws-sigv4", "aws:amz:us-east-1:lambda",
            "--user", f"{ROOT_KEY_ID}:{ROOT_SECRET}", "-H", "content-type: application/json",
            "-d", "{}", "-w", "\n%{http_version} %{http_code}",
            f"{cluster.nodes[out].endpoint}/2015-03-31/functions/{name}/invocations",
        ],
        capture_output=True, text=True, timeout=30,
    )
    body, status = h2.stdout.rsplit("\n", 1)
    assert status == "2 200", (h2.stdout, h2.stderr)
    assert json.loads(body)["inits"] == 1, body
    # The ten above, the raw request and this one.
    assert decisions(cluster.nodes[out])["forwarded"] - before["forwarded"] == 12

    # A function error comes back as the home gave it.
    r = client.invoke(FunctionName=name, Payload=json.dumps({"trap": True}))
    assert (r["StatusCode"], r.get("FunctionError")) == (200, "Unhandled"), r
    assert json.loads(r["Payload"].read())["errorType"] == "Runtime.ExitError"


def test_a_function_url_is_routed_to_a_home_and_keeps_the_clients_address(cluster):
    name = unique("url-homed")
    create(cluster.client(0), "echo", name)
    url = cluster.client(0).create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    path = urllib.parse.urlparse(url).path
    out = outsider(cluster, name)
    endpoint = cluster.nodes[out].endpoint
    wait_until(
        lambda: requests.get(f"{endpoint}{path}", timeout=10).status_code == 200, 10, "the URL on the outsider"
    )
    before = decisions(cluster.nodes[out])
    # From another loopback address than the nodes use among themselves, so that the
    # client's address and the forwarding node's differ.
    host, port = urllib.parse.urlparse(endpoint).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30, source_address=("127.0.0.2", 0))
    conn.request("POST", f"{path}orders?x=1", body=b'{"a": 1}', headers={"content-type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 200, body
    event = json.loads(body)
    assert (event["rawPath"], event["rawQueryString"]) == ("/orders", "x=1"), event
    assert json.loads(event["body"]) == {"a": 1}
    # The home reports the address the client came from, which only the outsider saw.
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.2", event["requestContext"]
    assert decisions(cluster.nodes[out])["forwarded"] == before["forwarded"] + 1
    assert environments_of(cluster.nodes[out], name) == 0
    assert not any(h.lower().startswith("x-lamina") for h, _ in r.getheaders()), r.getheaders()
    # A client cannot pass itself off as a forwarding node to choose its address.
    home = cluster.nodes[homes(cluster, name)[0]].endpoint
    spoofed = requests.post(
        f"{home}{path}",
        json={},
        headers={
            "x-lamina-forwarded-by": cluster.node_ids[out],
            "x-lamina-source-ip": "203.0.113.9",
            "x-lamina-hop-proof": f"{int(time.time())}.{'0' * 64}",
        },
        timeout=30,
    )
    assert spoofed.status_code == 200, spoofed.text
    assert spoofed.json()["requestContext"]["http"]["sourceIp"] == "127.0.0.1"


def test_when_the_homes_are_saturated_the_receiving_node_serves_the_rest(cluster):
    name = unique("spill")
    create(cluster.client(0), "sleep", name)
    present_everywhere(cluster, name)
    out = outsider(cluster, name)
    client = cluster.client(out, max_pool_connections=16)
    before = decisions(cluster.nodes[out])
    results = parallel(lambda: outcome(client, name, {"ms": 2000}), 12)
    assert results == ["ok"] * 12, results
    after = decisions(cluster.nodes[out])
    forwarded = after["forwarded"] - before["forwarded"]
    spilled = after["spill_over"] - before["spill_over"]
    # Each home took what it had room for; the outsider ran the rest itself.
    assert forwarded + spilled == 12 and forwarded <= 2 * SPILL_OVER_AT and spilled >= 4, after
    assert environments_of(cluster.nodes[out], name) == spilled
    print(f"12 parallel invocations on a node that is not home: {forwarded} forwarded, {spilled} served there")


def test_a_dead_home_costs_its_functions_no_failed_request(cluster):
    name = unique("orphan")
    create(cluster.client(0), "echo", name)
    present_everywhere(cluster, name)
    first, second = homes(cluster, name)
    out = outsider(cluster, name)
    # Retrying as SDKs do by default: a hop that was on its way over a kept-alive
    # connection when the home died fails after the request left, and is answered with a
    # 500 the SDK retries (the node cannot tell whether the home ran it).
    client = boto3.client(
        "lambda",
        endpoint_url=cluster.nodes[out].endpoint,
        region_name="us-east-1",
        aws_access_key_id=ROOT_KEY_ID,
        aws_secret_access_key=ROOT_SECRET,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=60),
    )
    assert invoke_json(client, name, {"n": -1})[1] == {"n": -1}
    killed = time.monotonic()
    cluster.kill9(first)
    served = retried = 0
    # Through the 10 s in which the dead node is still a member and on after: the hop to
    # it fails at the connection, and the request goes to the other home instead.
    while time.monotonic() - killed < 12:
        r, body = invoke_json(client, name, {"n": served})
        assert (r["StatusCode"], body) == (200, {"n": served}), r
        assert "FunctionError" not in r
        retried += bool(r["ResponseMetadata"].get("RetryAttempts"))
        served += 1
    wait_until(
        lambda: {n["NodeId"] for n in cluster.live_nodes(cluster.nodes[out].endpoint)}
        == {cluster.node_ids[second], cluster.node_ids[out]},
        10,
        "the dead home to leave the membership",
    )
    # Now the outsider is one of the two homes left, and serves the function itself.
    before = decisions(cluster.nodes[out])["home"]
    assert invoke_json(client, name, {"n": "home"})[1] == {"n": "home"}
    assert decisions(cluster.nodes[out])["home"] == before + 1
    print(f"{served} invokes through a node whose first home was killed, none failed, {retried} retried")


def test_a_layer_published_on_one_node_is_mounted_by_a_function_on_every_node(cluster):
    layer = cluster.client(0).publish_layer_version(
        LayerName=unique("shared"), Content={"ZipFile": zip_of({"shared.txt": b"from node 1"})}
    )
    assert cluster.client(2).get_layer_version_by_arn(Arn=layer["LayerVersionArn"])["Version"] == 1
    name = unique("layered")
    create(cluster.client(1), "env-dump", name, Layers=[layer["LayerVersionArn"]])
    present_everywhere(cluster, name)
    for i in range(cluster.SIZE):
        # Whichever node runs it (this one, or a home it forwards to) laid the layer out.
        assert invoke_json(cluster.client(i), name, {})[1]["opt_files"] == {"shared.txt": "from node 1"}


def test_configuration_changes_and_deletes_are_in_force_everywhere_within_a_second(cluster):
    writer = cluster.client(1)
    observers = {"node1": cluster.client(0), "node3": cluster.client(2)}
    name = unique("config")
    create(cluster.client(0), "env-dump", name, Environment={"Variables": {"ROUND": "0"}})
    present_everywhere(cluster, name)
    # Warm environments on the observers: the change must replace them, not only the
    # catalog entry.
    for client in observers.values():
        assert invoke_json(client, name, {})[1]["env"]["ROUND"] == "0"

    writer.update_function_configuration(FunctionName=name, Environment={"Variables": {"ROUND": "1"}})
    updated = time.monotonic()
    # The node that made the change answers read-after-write.
    assert writer.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == {"ROUND": "1"}

    def round_one(client):
        config = client.get_function_configuration(FunctionName=name)
        return config.get("Environment", {}).get("Variables", {}).get("ROUND") == "1"

    seen = propagation(observers, round_one, updated)
    assert max(seen.values()) < PROPAGATION_BOUND, seen
    for label, client in observers.items():
        assert invoke_json(client, name, {})[1]["env"]["ROUND"] == "1", f"{label} ran the old environment"

    samples = []
    for n in range(20):
        description = f"round {n}"
        writer.update_function_configuration(FunctionName=name, Description=description)
        updated = time.monotonic()
        assert writer.get_function_configuration(FunctionName=name)["Description"] == description
        samples += propagation(
            observers,
            lambda c, d=description: c.get_function_configuration(FunctionName=name)["Description"] == d,
            updated,
        ).values()
    assert p99(samples) < PROPAGATION_BOUND, sorted(samples)

    deleter = cluster.client(2)
    others = {"node1": observers["node1"], "node2": writer}
    deleter.delete_function(FunctionName=name)
    deleted = time.monotonic()
    expect_error(deleter, "ResourceNotFoundException", 404, lambda: deleter.get_function(FunctionName=name))
    gone = propagation(others, absent(name), deleted)
    assert max(gone.values()) < PROPAGATION_BOUND, gone
    for c in others.values():
        expect_error(c, "ResourceNotFoundException", 404, lambda c=c: c.invoke(FunctionName=name))
    print(
        f"configuration: {', '.join(f'{k} {v * 1000:.0f} ms' for k, v in seen.items())}; "
        f"{len(samples)} more: p99 {p99(samples) * 1000:.0f} ms; delete: "
        f"{', '.join(f'{k} {v * 1000:.0f} ms' for k, v in gone.items())}"
    )


def test_a_node_that_never_saw_the_upload_serves_and_hands_out_the_code(cluster):
    name = unique("reach")
    zip_bytes = zip_of({"function.wasm": never_seen_wasm("echo")})
    created = create(cluster.client(0), zip_bytes=zip_bytes, name=name)
    assert created["CodeSha256"] == code_sha256(zip_bytes)
    # Neither node has the package: node1 stored it in the database.
    propagation({"node2": cluster.client(1), "node3": cluster.client(2)}, exists(name), time.monotonic())

    # Through a home node other than node1, so that the node runs it itself.
    runner = next(i for i in homes(cluster, name) if i != 0)
    r, body = invoke_json(cluster.client(runner), name, {"first": cluster.names[runner]})
    assert (r["StatusCode"], body) == (200, {"first": cluster.names[runner]}), r
    assert environments_of(cluster.nodes[runner], name) == 1
    assert "FunctionError" not in r

    got = cluster.client(1).get_function(FunctionName=name)
    assert got["Configuration"]["CodeSha256"] == code_sha256(zip_bytes)
    download = requests.get(got["Code"]["Location"], timeout=30)
    assert download.status_code == 200
    assert download.content == zip_bytes
    assert code_sha256(download.content) == got["Configuration"]["CodeSha256"]


def test_aws_cli_through_the_load_balancer_lists_a_function_made_on_another_node(cluster):
    name = unique("cli")
    create(cluster.client(1), "hello", name)
    present_everywhere(cluster, name)
    # Three runs: round robin puts each on another node.
    for _ in range(3):
        listed = aws_lambda(cluster.lb.endpoint, "list-functions")
        assert listed.returncode == 0, listed.stderr
        assert name in [f["FunctionName"] for f in json.loads(listed.stdout)["Functions"]]


def test_lamina_nodes_follows_membership_through_sigkill_and_sigterm(cluster):
    ids = list(cluster.node_ids)
    wait_listed(cluster, ids, timeout=5)
    table = lamina_nodes(cluster)
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if "://" in line]
    assert len(lines) == 3, table.stdout
    for node_id, node in zip(ids, cluster.nodes):
        assert any(node_id in line and node.endpoint in line for line in lines), table.stdout

    killed = time.monotonic()
    cluster.kill9(2)
    dead_after = wait_listed(cluster, ids[:2], timeout=20, since=killed)

    sent = cluster.terminate(1)
    left_after = wait_listed(cluster, ids[:1], timeout=3, since=sent)
    assert cluster.nodes[1].proc.wait(timeout=30) == 0, "".join(cluster.nodes[1].output)[-3000:]

    # Back on their data directories they are the same nodes, at new addresses.
    cluster.restore()
    assert cluster.node_ids == ids
    done = lamina_nodes(cluster, "--output", "json")
    assert done.returncode == 0, done.stderr
    listed = {n["NodeId"]: n["AdvertiseUrl"].rstrip("/") for n in json.loads(done.stdout)}
    assert listed == {node_id: node.endpoint for node_id, node in zip(ids, cluster.nodes)}
    print(f"SIGKILL: dead after {dead_after:.1f} s; SIGTERM: left after {left_after:.2f} s")


def test_async_events_accepted_by_a_killed_node_still_run(cluster):
    name = unique("async-kill")
    create(cluster.client(0), "sleep", name)
    present_everywhere(cluster, name)
    lb = cluster.lb_client()
    accepted = []
    for _ in range(30):
        r = lb.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"ms": 800}')
        assert r["StatusCode"] == 202, r
        accepted.append(r["ResponseMetadata"]["RequestId"])
    killed = time.monotonic()
    cluster.kill9(1)
    victim = cluster.node_ids[1]

    wait_listed(cluster, [cluster.node_ids[0], cluster.node_ids[2]], timeout=20, since=killed)
    # With the victim still dead, the others run what it held: the queue empties.
    wait_until(
        lambda: cluster.query("SELECT COUNT(*) FROM async_events WHERE function_name = ?", (name,)) == [(0,)],
        45,
        f"the live nodes to run the events {victim} held",
        interval=0.2,
    )
    drained_after = time.monotonic() - killed
    # Back on its data directory, it replays the ledger rows it spooled before the kill.
    cluster.restart(1)

    def every_event_succeeded():
        succeeded = {rid for rid, _, result in ledger_rows(cluster, name) if result == "success"}
        return set(accepted) <= succeeded

    wait_until(every_event_succeeded, 30, "a successful ledger row for every accepted event", interval=0.2)
    runs = collections.defaultdict(list)
    for rid, attempt, result in ledger_rows(cluster, name):
        runs[rid].append((attempt, result))
    assert set(runs) == set(accepted), "ledger rows for events nobody sent"
    # At least once: an event that finished on the victim without its completion being
    # recorded may have run a second time on another node, but no more.
    assert all(1 <= len(r) <= 2 for r in runs.values()), {k: v for k, v in runs.items() if len(v) > 2}
    assert not cluster.query(
        "SELECT request_id, attempt FROM invocations WHERE function_name = ? "
        "GROUP BY request_id, attempt HAVING COUNT(*) > 1",
        (name,),
    )
    twice = sum(1 for r in runs.values() if len(r) == 2)
    print(f"{len(accepted)} events, queue drained {drained_after:.1f} s after the kill, {twice} ran twice")


def test_sync_invokes_through_the_load_balancer_survive_a_kill_and_restart(cluster):
    name = unique("sync-kill")
    create(cluster.client(1), "sleep", name)
    present_everywhere(cluster, name)
    for i in range(cluster.SIZE):  # warm, so cold starts do not stall the window below
        assert invoke_json(cluster.client(i), name, {"ms": 1})[0]["StatusCode"] == 200

    completed = []
    failures = []
    retried = []
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(client):
        while not stop.is_set():
            try:
                r, body = invoke_json(client, name, {"ms": 50})
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                with lock:
                    failures.append(repr(e))
                continue
            with lock:
                if r["StatusCode"] != 200 or "FunctionError" in r or body != {"slept_ms": 50}:
                    failures.append(f"{r['StatusCode']} {r.get('FunctionError')} {body}")
                    continue
                completed.append(r["ResponseMetadata"]["RequestId"])
                if r["ResponseMetadata"].get("RetryAttempts"):
                    retried.append(r["ResponseMetadata"]["RequestId"])

    def completions(n, what):
        start = len(completed)
        wait_until(lambda: len(completed) >= start + n or failures, 60, what, interval=0.05)
        assert not failures, f"{len(failures)} invokes failed; first: {failures[:3]}"

    # Clients are made here: making them (unlike using them) is not thread-safe.
    threads = [
        threading.Thread(target=hammer, args=(cluster.lb_client(max_attempts=3),)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    try:
        completions(40, "invokes before the kill")
        cluster.kill9(0)
        cluster.lb.wait_state("node1", "DOWN", timeout=10)
        completions(40, "invokes with node1 dead")
        cluster.restart(0)
        completions(60, "invokes with node1 back")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=150)
    assert not failures, f"{len(failures)} invokes failed; first: {failures[:3]}"
    # node1 came back under HAProxy and took its share of the requests (it serves them or
    # forwards them to the function's homes).
    assert sum(decisions(cluster.nodes[0]).values()) > 0

    wanted = set(completed)
    assert len(wanted) == len(completed), "a request id answered twice"

    def all_written():
        return wanted <= {rid for rid, _, _ in ledger_rows(cluster, name)}

    wait_until(all_written, 30, "a ledger row for every answered invoke", interval=0.2)
    counts = collections.Counter(rid for rid, _, _ in ledger_rows(cluster, name))
    assert all(counts[rid] == 1 for rid in wanted), {rid: counts[rid] for rid in wanted if counts[rid] != 1}
    print(
        f"{len(completed)} invokes through the kill and restart, none failed, "
        f"{len(retried)} retried by the client"
    )


def scope_slots(cluster, scope):
    """Slots the live nodes hold of a concurrency scope, by node id."""
    return dict(
        cluster.query(
            "SELECT n.node_id, l.slots FROM concurrency_leases l "
            "JOIN cluster_nodes n ON n.incarnation = l.incarnation "
            "WHERE l.scope = ? AND n.left_at_ms IS NULL",
            (scope,),
        )
    )


def spread(cluster, name, payload, per_node):
    """`per_node` invokes of `name` on each node at once; each outcome with its node."""
    clients = [(i, cluster.client(i)) for i in range(cluster.SIZE) for _ in range(per_node)]
    calls = iter(clients)
    lock = threading.Lock()

    def one():
        with lock:
            i, client = next(calls)
        return i, outcome(client, name, payload)

    return parallel(one, len(clients))


def unreserved_everywhere(cluster, want):
    def check(client):
        return client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == want

    propagation(
        {cluster.names[i]: cluster.client(i) for i in range(cluster.SIZE)}, check, time.monotonic()
    )


def test_reserved_concurrency_bounds_the_invocations_of_all_nodes_together(cluster):
    name = unique("reserved-2")
    client = cluster.client(0)
    create(client, "sleep", name)
    present_everywhere(cluster, name)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    reserved_everywhere(cluster, name, 2)
    results = spread(cluster, name, {"ms": 3000}, per_node=4)
    outcomes = collections.Counter(o for _, o in results)
    assert outcomes == {"ok": 2, "ReservedFunctionConcurrentInvocationLimitExceeded": 10}, results

    # Finished invocations give their slots back within a few settlings: then the two
    # nodes that ran nothing can both run one at once.
    scope = f"reserved/{ACCOUNT}/{name}"
    wait_until(lambda: not any(scope_slots(cluster, scope).values()), 10, "the slots to come back", interval=0.1)
    idle = [i for i in range(cluster.SIZE) if i not in {i for i, o in results if o == "ok"}]
    pair = (idle + [i for i in range(cluster.SIZE) if i not in idle])[:2]
    clients = iter([cluster.client(i) for i in pair])
    lock = threading.Lock()

    def one():
        with lock:
            client = next(clients)
        return outcome(client, name, {"ms": 500})

    assert parallel(one, 2) == ["ok", "ok"], pair


def test_the_account_limit_is_the_clusters_not_each_nodes(cluster):
    client = cluster.client(0)
    hog = unique("reserves-most")
    create(client, "echo", hog)
    name = unique("unreserved")
    create(client, "sleep", name)
    present_everywhere(cluster, name)
    # Reserving all but 10 of what the account has unreserved for another function leaves
    # 10 for every other function of the account, over the whole cluster.
    unreserved = client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    client.put_function_concurrency(FunctionName=hog, ReservedConcurrentExecutions=unreserved - 10)
    try:
        unreserved_everywhere(cluster, 10)
        results = spread(cluster, name, {"ms": 3000}, per_node=8)
        outcomes = collections.Counter(o for _, o in results)
        assert outcomes == {"ok": 10, "ConcurrentInvocationLimitExceeded": 14}, results
    finally:
        client.delete_function_concurrency(FunctionName=hog)
    unreserved_everywhere(cluster, unreserved)


def test_the_slots_of_a_killed_node_are_free_once_it_is_dead(cluster):
    name = unique("reserved-1")
    client = cluster.client(0)
    create(client, "sleep", name)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    # The function's creation can reach a node before its limit does.
    reserved_everywhere(cluster, name, 1)
    scope = f"reserved/{ACCOUNT}/{name}"
    # Sent to one of the function's homes, so that node runs it; the other node that is
    # left, not a home, forwards to the surviving home when asked.
    held_by = homes(cluster, name)[0]
    victim = cluster.client(held_by)

    def hold():
        try:
            outcome(victim, name, {"ms": 60000})
        except botocore.exceptions.EndpointConnectionError:
            pass  # its node is killed under it

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    wait_until(
        lambda: scope_slots(cluster, scope) == {cluster.node_ids[held_by]: 1},
        10,
        f"{cluster.names[held_by]} to hold the slot",
    )
    other = outsider(cluster, name)
    assert outcome(cluster.client(other), name, {"ms": 1}) == "ReservedFunctionConcurrentInvocationLimitExceeded"

    killed = time.monotonic()
    cluster.kill9(held_by)
    survivor = cluster.client(other)
    wait_until(lambda: outcome(survivor, name, {"ms": 1}) == "ok", 20, "node3 to take the dead node's slot", interval=0.2)
    freed_after = time.monotonic() - killed
    assert freed_after < 15, freed_after
    print(f"the dead node's slot was free again {freed_after:.1f} s after SIGKILL")


def provisioned_on(node, name):
    """Provisioned environments of `name` on `node`, as its /lamina/status counts them."""
    r = signed("GET", f"{node.endpoint}/lamina/status")
    assert r.status_code == 200, r.text
    return sum(p["Environments"]["Provisioned"] for p in r.json()["Pools"] if p["FunctionName"] == name)


def test_provisioned_concurrency_is_spread_over_the_live_nodes_and_moves_off_a_dead_one(cluster):
    client = cluster.client(0)
    name = unique("provisioned")
    create(client, "echo", name)
    version = client.publish_version(FunctionName=name)["Version"]
    present_everywhere(cluster, name)
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=4
    )

    def ready_on(client):
        try:
            config = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
        except client.exceptions.ProvisionedConcurrencyConfigNotFoundException:
            return False  # the node has not read the change yet
        return config["Status"] == "READY"

    def ready_everywhere():
        return all(ready_on(cluster.client(i)) for i in range(cluster.SIZE))

    wait_until(ready_everywhere, 30, "READY through every node")
    config = cluster.client(2).get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    assert config["AllocatedProvisionedConcurrentExecutions"] == 4, config
    spread_over = [provisioned_on(node, name) for node in cluster.nodes]
    assert sum(spread_over) == 4 and sorted(spread_over) == [1, 1, 2], spread_over

    # The node with two dies: within 15 s the survivors hold all four between them.
    busiest = spread_over.index(2)
    survivors = [i for i in range(cluster.SIZE) if i != busiest]
    killed = time.monotonic()
    cluster.kill9(busiest)
    wait_until(
        lambda: sum(provisioned_on(cluster.nodes[i], name) for i in survivors) == 4,
        15,
        "the survivors to take the dead node's provisioned environments",
        interval=0.2,
    )
    moved_after = time.monotonic() - killed
    survivor = cluster.client(survivors[0])
    wait_until(
        lambda: survivor.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)[
            "AllocatedProvisionedConcurrentExecutions"
        ]
        == 4,
        5,
        "the survivors to report all four allocated",
    )
    r = survivor.invoke(FunctionName=name, Qualifier=version, Payload=b"{}")
    assert r["StatusCode"] == 200
    print(f"provisioned environments back to 4 on the survivors {moved_after:.1f} s after SIGKILL")


def test_500_events_with_a_node_killed_half_way_all_run_and_are_billed(cluster):
    name = unique("async-500")
    create(cluster.client(0), "sleep", name)
    present_everywhere(cluster, name)
    lb = cluster.lb_client(max_attempts=3)
    accepted = []

    def send(n):
        for _ in range(n):
            r = lb.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"ms": 200}')
            assert r["StatusCode"] == 202, r
            accepted.append(r["ResponseMetadata"]["RequestId"])

    send(250)
    killed = time.monotonic()
    cluster.kill9(2)
    send(250)  # through the load balancer, which stops sending to the dead node
    cluster.restart(2)

    def every_event_succeeded():
        succeeded = {rid for rid, _, result in ledger_rows(cluster, name) if result == "success"}
        return set(accepted) <= succeeded

    wait_until(every_event_succeeded, 90, "a successful ledger row for each of the 500 events", interval=0.5)
    drained_after = time.monotonic() - killed
    assert len(set(accepted)) == 500
    rows = ledger_rows(cluster, name)
    assert {rid for rid, _, _ in rows} == set(accepted), "ledger rows for events nobody sent"
    runs = collections.Counter(rid for rid, _, _ in rows)
    # At least once: an event whose completion died with the node may run once more.
    assert all(n <= 2 for n in runs.values()), {rid: n for rid, n in runs.items() if n > 2}
    twice = sum(1 for n in runs.values() if n == 2)
    print(f"500 events, node3 killed after 250: all ran {drained_after:.1f} s after the kill, {twice} ran twice")

"""Accounts, SigV4 and isolation, through boto3, aws-cli and raw HTTP: right and wrong
keys, stale signatures, two accounts that cannot see each other, a granted cross-account
invoke, revoked keys, AWS_IAM function URLs, and a fresh node's first credentials."""

import configparser
import datetime
import json
import os
import re
import stat
import subprocess
import time
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from conftest import AWS, LAMINA_BIN, ROLE, Lamina, arn, signed, unique, wasm_zip
from test_cli import aws

OTHER_ACCOUNT = "111111111111"


def admin(lamina, *args):
    cmd = [LAMINA_BIN, *args, "--data-dir", str(lamina.data_dir)]
    if lamina.database_url:
        cmd += ["--database-url", lamina.database_url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def keys_of(text):
    found = dict(re.findall(r"^(aws_access_key_id|aws_secret_access_key) = (\S+)$", text, re.M))
    return found["aws_access_key_id"], found["aws_secret_access_key"]


@pytest.fixture(scope="module")
def other_account(lamina):
    """A second account on the session's node, with its own key: (key id, secret)."""
    listed = admin(lamina, "accounts", "list")
    if OTHER_ACCOUNT in listed:
        return keys_of(admin(lamina, "keys", "create", "--account", OTHER_ACCOUNT))
    return keys_of(admin(lamina, "accounts", "create", "--id", OTHER_ACCOUNT, "--name", "other"))


def error_of(call):
    with pytest.raises(ClientError) as info:
        call()
    e = info.value.response
    return e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"], e["Error"]["Message"]


def test_unsigned_requests_are_refused(lamina):
    r = signed("GET", f"{lamina.endpoint}/2015-03-31/functions/")
    assert r.status_code == 200
    import requests

    r = requests.get(f"{lamina.endpoint}/2015-03-31/functions/", timeout=30)
    assert r.status_code == 403
    assert r.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    # Metrics stay open for Prometheus.
    assert requests.get(f"{lamina.endpoint}/metrics", timeout=30).status_code == 200


def test_wrong_secret_and_unknown_key(lamina):
    wrong = lamina.client(secret="not-the-secret")
    code, status, message = error_of(wrong.list_functions)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("The request signature we calculated does not match")
    unknown = lamina.client(key_id="LKIAUNKNOWNUNKNOWN00")
    assert error_of(unknown.list_functions) == (
        "UnrecognizedClientException",
        403,
        "The security token included in the request is invalid.",
    )


def test_requests_signed_over_http2_are_checked_against_their_authority(lamina):
    """HTTP/2 names the host in the request's authority, not in a Host header; a
    signature covers it all the same."""

    def list_over_h2(secret):
        out = subprocess.run(
            [
                "curl", "-sS", "--http2-prior-knowledge", "--aws-sigv4", "aws:amz:us-east-1:lambda",
                "--user", f"test:{secret}", "-w", "\n%{http_version} %{http_code}",
                f"{lamina.endpoint}/2015-03-31/functions",
            ],
            capture_output=True, text=True, timeout=30,
        )
        body, status = out.stdout.rsplit("\n", 1)
        return status, body

    status, body = list_over_h2("test")
    assert status == "2 200", body
    assert "Functions" in json.loads(body)
    status, body = list_over_h2("not-the-secret")
    assert status == "2 403", body
    assert json.loads(body)["message"].startswith("The request signature we calculated does not match")


def test_a_signature_older_than_fifteen_minutes_is_refused(lamina):
    client = lamina.client()
    stale = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=stale.replace(tzinfo=None)):
        code, status, message = error_of(client.list_functions)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("Signature expired: "), message
    assert message.endswith(" - 15 min.)"), message


def test_aws_cli_with_a_wrong_secret(lamina):
    out = subprocess.run(
        [AWS, "--endpoint-url", lamina.endpoint, "--region", "us-east-1", "lambda", "list-functions"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(
            os.environ,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="wrong",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        ),
    )
    assert out.returncode != 0
    assert "InvalidSignatureException" in out.stderr
    ok = aws(lamina, "list-functions")
    assert ok.returncode == 0, ok.stderr


def test_accounts_cannot_see_each_others_functions(lamina, client, make_function, other_account):
    mine = make_function("echo")
    other = lamina.client(*other_account)
    names = [f["FunctionName"] for f in other.list_functions()["Functions"]]
    assert mine not in names
    for ref in (mine, arn(mine)):
        for call in (
            lambda: other.get_function(FunctionName=ref),
            lambda: other.invoke(FunctionName=ref, Payload=b"{}"),
            lambda: other.update_function_configuration(FunctionName=ref, Timeout=5),
            lambda: other.delete_function(FunctionName=ref),
            lambda: other.get_policy(FunctionName=ref),
            lambda: other.list_aliases(FunctionName=ref),
            lambda: other.get_function_url_config(FunctionName=ref),
        ):
            code, status, _ = error_of(call)
            assert (code, status) == ("ResourceNotFoundException", 404), ref
    # The same name in the other account is a different function.
    other.create_function(
        FunctionName=mine, Runtime="wasm", Role=ROLE, Handler="function.wasm",
        Code={"ZipFile": wasm_zip("hello")},
    )
    try:
        assert client.invoke(FunctionName=mine, Payload=b'{"x": 1}')["Payload"].read() == b'{"x": 1}'
        theirs = other.get_function(FunctionName=mine)["Configuration"]
        assert theirs["FunctionArn"] == f"arn:aws:lambda:us-east-1:{OTHER_ACCOUNT}:function:{mine}"
    finally:
        other.delete_function(FunctionName=mine)
    assert client.get_function(FunctionName=mine)["Configuration"]["FunctionName"] == mine


def test_logs_and_usage_are_per_account(lamina, client, make_function, other_account):
    name = make_function("echo")
    client.invoke(FunctionName=name, Payload=b"{}")
    lamina.wait_for(
        lambda: signed("GET", f"{lamina.endpoint}/lamina/functions/{name}/logs").json()["Events"],
        what="the owner's logs",
    )
    key_id, secret = other_account
    theirs = signed("GET", f"{lamina.endpoint}/lamina/functions/{name}/logs", key_id=key_id, secret=secret)
    assert theirs.status_code == 404
    assert theirs.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    usage = signed("GET", f"{lamina.endpoint}/lamina/usage", key_id=key_id, secret=secret).json()
    assert usage["AccountId"] == OTHER_ACCOUNT
    assert name not in [f["FunctionName"] for f in usage["Functions"]]
    status = signed("GET", f"{lamina.endpoint}/lamina/status", key_id=key_id, secret=secret).json()
    assert name not in [p["FunctionName"] for p in status["Pools"]]


def test_a_granted_cross_account_invoke_is_billed_to_the_owner(
    lamina, client, make_function, other_account
):
    name = make_function("echo")
    other = lamina.client(*other_account)
    code, _, _ = error_of(lambda: other.invoke(FunctionName=arn(name), Payload=b"{}"))
    assert code == "ResourceNotFoundException"
    client.add_permission(
        FunctionName=name,
        StatementId="other-account",
        Action="lambda:InvokeFunction",
        Principal=OTHER_ACCOUNT,
    )
    resp = other.invoke(FunctionName=arn(name), Payload=b'{"from": "other"}')
    assert resp["StatusCode"] == 200 and resp["Payload"].read() == b'{"from": "other"}'
    request_id = resp["ResponseMetadata"]["RequestId"]
    # Only invoking is granted.
    code, _, _ = error_of(lambda: other.get_function(FunctionName=arn(name)))
    assert code == "ResourceNotFoundException"
    row = lamina.wait_for(
        lambda: lamina.query(
            "SELECT account_id, caller_account_id FROM invocations WHERE request_id = ?",
            (request_id,),
        ),
        what="the ledger row",
    )
    assert tuple(row[0]) == ("000000000000", OTHER_ACCOUNT)


def test_revoked_keys_stop_working(lamina):
    key_id, secret = keys_of(admin(lamina, "keys", "create", "--account", "000000000000"))
    client = lamina.client(key_id=key_id, secret=secret)
    client.list_functions()
    listed = admin(lamina, "keys", "list", "--account", "000000000000")
    assert f"{key_id}  000000000000  active" in listed
    assert secret not in listed
    admin(lamina, "keys", "revoke", key_id)

    def refused():
        try:
            client.list_functions()
            return False
        except ClientError as e:
            return e.response["Error"]["Code"] == "UnrecognizedClientException"

    lamina.wait_for(refused, timeout=15, what="the revoked key to be refused")


def test_aws_iam_function_urls_need_a_signature_from_an_allowed_account(
    lamina, client, make_function, other_account
):
    name = make_function("http-hello")
    url = client.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    import requests

    assert requests.get(url, timeout=30).status_code == 403
    mine = signed("GET", url)
    assert mine.status_code == 200, mine.text
    key_id, secret = other_account
    assert signed("GET", url, key_id=key_id, secret=secret).status_code == 403
    # The statement AWS's console writes for URL access: conditioned on the auth type.
    client.add_permission(
        FunctionName=name,
        StatementId="other-url",
        Action="lambda:InvokeFunctionUrl",
        Principal=OTHER_ACCOUNT,
        FunctionUrlAuthType="AWS_IAM",
    )
    assert signed("GET", url, key_id=key_id, secret=secret).status_code == 200
    # A statement conditioned on something Lamina cannot check grants nothing.
    client.remove_permission(FunctionName=name, StatementId="other-url")
    client.add_permission(
        FunctionName=name,
        StatementId="other-url-source",
        Action="lambda:InvokeFunctionUrl",
        Principal=OTHER_ACCOUNT,
        SourceAccount="222222222222",
    )
    assert signed("GET", url, key_id=key_id, secret=secret).status_code == 403


def test_a_fresh_node_creates_and_saves_its_first_key(tmp_path):
    data = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMINA_ROOT_")}
    proc = subprocess.Popen(
        [LAMINA_BIN, "up", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        banner = ""
        deadline = time.time() + 60
        while "listening on" not in banner and time.time() < deadline:
            banner += proc.stdout.readline()
        endpoint = re.search(r"listening on (http://\S+)", banner).group(1)
        assert "Created account 000000000000" in banner, banner
        creds = data / "credentials"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        parser = configparser.ConfigParser()
        parser.read(creds)
        key_id = parser["default"]["aws_access_key_id"]
        secret = parser["default"]["aws_secret_access_key"]
        assert key_id in banner and len(secret) == 40
        # The secret is sealed at rest: the database never holds it in the clear.
        assert secret.encode() not in (data / "lamina.db").read_bytes()
        node = Lamina(data)
        node.endpoint = endpoint
        assert node.client(key_id=key_id, secret=secret).list_functions()["Functions"] == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)

"""HTTPS on the listener: boto3 and aws-cli verify Lamina's certificate against a CA
bundle and work as over HTTP; plain HTTP to the TLS port gets nowhere."""

import os
import subprocess

import pytest
import requests
import trustme

from conftest import AWS, REGION, ROLE, Lamina, unique, wasm_zip


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    for extra in cert.cert_chain_pems[1:]:
        with open(d / "cert.pem", "ab") as f:
            f.write(extra.bytes())
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    node = Lamina(
        d / "data", extra=["--tls-cert", str(d / "cert.pem"), "--tls-key", str(d / "key.pem")]
    ).start()
    yield node, str(d / "ca.pem")
    node.stop()


def test_boto3_over_https_with_a_ca_bundle(tls_node):
    node, ca = tls_node
    assert node.endpoint.startswith("https://127.0.0.1:")
    client = node.client(verify=ca)
    name = unique("tls")
    client.create_function(
        FunctionName=name, Runtime="wasm", Role=ROLE, Handler="function.wasm",
        Code={"ZipFile": wasm_zip("echo")},
    )
    resp = client.invoke(FunctionName=name, Payload=b'{"over": "tls"}')
    assert resp["Payload"].read() == b'{"over": "tls"}'
    # Function URLs are served over the same TLS listener.
    url = client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    assert url.startswith("https://")
    assert requests.post(url, data=b"{}", verify=ca, timeout=30).status_code == 200


def test_aws_cli_over_https(tls_node):
    node, ca = tls_node
    out = subprocess.run(
        [AWS, "--endpoint-url", node.endpoint, "--ca-bundle", ca, "--region", REGION,
         "lambda", "list-functions"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                 AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull),
    )
    assert out.returncode == 0, out.stderr


def test_untrusted_and_plain_http_clients_are_refused(tls_node):
    node, _ = tls_node
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{node.endpoint}/metrics", timeout=10)
    plain = node.endpoint.replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{plain}/metrics", timeout=10)

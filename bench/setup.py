"""Creates the benchmark functions on a running Lamina with boto3 and prints their
endpoints: `setup.py ENDPOINT` -> lines `echo <invoke path>`, `url <function url>`, and
`header <name>: <value>` lines of a SigV4-signed Invoke of echo with the body
`{"hello":"world"}` (valid for 15 minutes, which wrk replays)."""

import io
import pathlib
import sys
import zipfile

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[1]
endpoint = sys.argv[1]
lam = boto3.client(
    "lambda", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id="test", aws_secret_access_key="test",
)


def package(fixture):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(ROOT / "guests/target/fixtures" / f"{fixture}.wasm", "function.wasm")
    return buf.getvalue()


for name, fixture in [("echo", "echo"), ("hello-http", "http-hello"), ("sleep", "sleep"), ("hello", "hello")]:
    lam.create_function(
        FunctionName=name, Runtime="wasm", Handler="function.wasm",
        Role="arn:aws:iam::000000000000:role/bench", Code={"ZipFile": package(fixture)},
        MemorySize=128, Timeout=30,
    )
url = lam.create_function_url_config(FunctionName="hello-http", AuthType="NONE")["FunctionUrl"]
print("echo", "/2015-03-31/functions/echo/invocations")
print("url", url)

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

invoke = AWSRequest(
    method="POST", url=f"{endpoint}/2015-03-31/functions/echo/invocations",
    data=b'{"hello":"world"}',
)
SigV4Auth(Credentials("test", "test"), "lambda", "us-east-1").add_auth(invoke)
for name, value in invoke.prepare().headers.items():
    print(f"header {name}: {value}")

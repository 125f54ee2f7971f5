"""SnapStart for Wasm: with `SnapStart: {ApplyOn: PublishedVersions}`, PublishVersion runs
INIT once and snapshots the initialised instance; new environments of that version
restore the snapshot (REPORT shows Restore Duration) instead of running INIT."""

import base64
import json

import requests

from conftest import ROLE, expect_error, zip_of


def invoke_tail(client, name, qualifier=None, payload=b"{}"):
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    r = client.invoke(FunctionName=name, Payload=payload, LogType="Tail", **kwargs)
    log = base64.b64decode(r["LogResult"]).decode()
    return r, json.loads(r["Payload"].read()), log


def test_published_versions_restore_the_init_snapshot(lamina, client, make_function):
    name = make_function("embedded-model", SnapStart={"ApplyOn": "PublishedVersions"}, MemorySize=256)
    assert client.get_function_configuration(FunctionName=name)["SnapStart"] == {
        "ApplyOn": "PublishedVersions", "OptimizationStatus": "Off",
    }
    # $LATEST never restores: INIT runs in its environment, on demand.
    r, latest, log = invoke_tail(client, name)
    assert "FunctionError" not in r, latest
    assert (latest["inits"], latest["init_type"]) == (1, "on-demand")
    assert "INIT: parsed an embedded model" in log and "\tInit Duration: " in log

    version = client.publish_version(FunctionName=name)
    assert version["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    r, restored, log = invoke_tail(client, name, version["Version"])
    assert "FunctionError" not in r, restored
    # The state INIT built at publish time, without INIT running again here.
    assert (restored["inits"], restored["init_type"]) == (1, "snap-start")
    assert restored["output"] == latest["output"] and restored["parameters"] == latest["parameters"]
    assert "INIT: parsed" not in log
    report = next(line for line in log.splitlines() if line.startswith("REPORT"))
    assert "\tRestore Duration: " in report and "\tBilled Restore Duration: " in report
    assert "Init Duration" not in report
    # The next call is warm.
    _, warm, log = invoke_tail(client, name, version["Version"])
    assert warm == restored and "Restore Duration" not in log
    # Restores have their own histogram; INIT's counts only the $LATEST start.
    metrics = requests.get(f"{lamina.endpoint}/metrics", timeout=10).text
    assert f'lamina_restore_duration_seconds_count{{account="000000000000",function="{name}"}} 1' in metrics
    assert f'lamina_init_duration_seconds_count{{account="000000000000",function="{name}"}} 1' in metrics


def test_a_trap_resets_to_the_snapshot(client, make_function):
    name = make_function("counter", SnapStart={"ApplyOn": "PublishedVersions"})
    version = client.publish_version(FunctionName=name)["Version"]
    _, first, log = invoke_tail(client, name, version)
    assert first == {"count": 1, "inits": 1} and "Restore Duration" in log
    _, second, _ = invoke_tail(client, name, version)
    assert second == {"count": 2, "inits": 1}
    r, _, _ = invoke_tail(client, name, version, b'{"trap": true}')
    assert r["FunctionError"] == "Unhandled"
    # The instance is rebuilt from the snapshot: INIT's state, not the trapped one.
    _, after, _ = invoke_tail(client, name, version)
    assert after == {"count": 1, "inits": 1}


def test_guests_without_init_still_run(client, make_function):
    # WASI commands have no INIT to capture; SnapStart leaves them on demand.
    name = make_function("command", SnapStart={"ApplyOn": "PublishedVersions"})
    version = client.publish_version(FunctionName=name)["Version"]
    r = client.invoke(FunctionName=name, Qualifier=version, Payload=b"{}", LogType="Tail")
    log = base64.b64decode(r["LogResult"]).decode()
    assert "FunctionError" not in r
    assert "Restore Duration" not in log


def test_a_failing_init_is_reported_to_callers(client, make_function):
    name = make_function("embedded-model", SnapStart={"ApplyOn": "PublishedVersions"},
                         Environment={"Variables": {"FAIL_INIT": "1"}})
    version = client.publish_version(FunctionName=name)["Version"]
    # No snapshot could be taken; the version's environments run INIT and fail as
    # they would without SnapStart.
    r, body, log = invoke_tail(client, name, version)
    assert r["FunctionError"] == "Unhandled"
    assert body == {"errorType": "ModelLoadError", "errorMessage": "FAIL_INIT is set"}
    assert "Restore Duration" not in log


def test_model_functions_refuse_snapstart(client, make_function):
    expect_error(
        client, "InvalidParameterValueException", 400,
        lambda: client.create_function(
            FunctionName="snap-model", Runtime="onnx", Role=ROLE, Handler="model.onnx",
            Code={"ZipFile": zip_of({"model.onnx": b"unused"})},
            SnapStart={"ApplyOn": "PublishedVersions"},
        ),
        "SnapStart is not supported for runtime onnx: its model is loaded once per node and shared by every environment, so they already start without loading it.",
    )
    name = make_function("echo")
    client.update_function_configuration(FunctionName=name, SnapStart={"ApplyOn": "PublishedVersions"})
    assert client.get_function_configuration(FunctionName=name)["SnapStart"]["ApplyOn"] == "PublishedVersions"
    expect_error(
        client, "InvalidParameterValueException", 400,
        lambda: client.update_function_configuration(FunctionName=name, Runtime="onnx", Handler="model.onnx"),
    )

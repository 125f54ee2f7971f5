"""Lamina's Python runtime: runs a Lambda Python handler inside the handler world.

`init` imports the module `_HANDLER` names from /var/task (then the layers' /opt/python),
as Lambda's Python runtime does, and `handle` calls its function with the event and a
Lambda context. Whatever the user's code does, this module answers with a result: an
exception that escaped into the component's glue would abort the whole environment.

Errors reach the host as the handler world's `error` record: `error-type` is Lambda's
errorType and `error-message` is a JSON object carrying the rest of Lambda's error body
(`errorMessage`, `stackTrace`), which the host completes with the request id.

This module's top level runs once when the runtime is built, not per environment:
nothing here may read the environment, the clock or the file system at import time.

Under SnapStart the host snapshots the interpreter when `init` returns (it sets
LAMINA_SNAPSHOT_INIT in that instance only), and restores that snapshot in every
environment of the version. A WASI handle the C library kept from INIT
(a file, stdout's stream) would dangle there, so such an INIT opens none: the handler's
modules are read through the host (`task-files`), what it prints stays in memory, and
the first invocation of a restored environment reseeds `random`.
"""

import importlib
import importlib.machinery
import io
import json
import logging
import os
import random
import sys
import time
import traceback
import uuid

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import task_files
from wit_world.imports.types import Error

# Imported while the runtime is built, so that they exist in it: the standard library
# handlers can use, and `lamina`, the module that runs the package's models.
importlib.import_module("lamina_stdlib")
importlib.import_module("lamina")

TASK_ROOT = "/var/task"
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"
RUNTIME_FILE = __file__


class LambdaError(Exception):
    """A failure reported with Lambda's errorType, errorMessage and stackTrace."""

    def __init__(self, error_type, message, stack_trace=()):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = list(stack_trace)

    def to_wit(self):
        body = json.dumps({"errorMessage": self.message, "stackTrace": self.stack_trace})
        return Err(Error(error_type=self.error_type, error_message=body))


def user_stack(tb):
    """The traceback's frames outside this runtime, formatted as Lambda lists them."""
    frames = [f for f in traceback.extract_tb(tb) if f.filename != RUNTIME_FILE]
    return traceback.format_list(frames)


def error_of(exc):
    """Lambda's error for an exception the handler let escape."""
    return LambdaError(type(exc).__name__, str(exc), user_stack(exc.__traceback__))


class ClientContext:
    """The `client_context` of a mobile SDK's invoke: `client`, `custom` and `env`."""

    def __init__(self, document):
        self.client = document.get("client")
        self.custom = document.get("custom")
        self.env = document.get("env")


class LambdaContext:
    """The `context` argument of a Lambda Python handler."""

    def __init__(self, wit_context, log_stream_name):
        self.aws_request_id = wit_context.request_id
        self.function_name = wit_context.function_name
        self.function_version = wit_context.function_version
        self.invoked_function_arn = wit_context.invoked_function_arn
        self.memory_limit_in_mb = wit_context.memory_limit_mb
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = None
        if wit_context.client_context:
            try:
                self.client_context = ClientContext(json.loads(wit_context.client_context))
            except (ValueError, AttributeError):
                self.client_context = None
        self._deadline_ms = wit_context.deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def __repr__(self):
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},client_context={self.client_context},"
            f"identity={self.identity}])"
        )


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request being handled, as Lambda's log lines carry it."""

    request_id = ""

    def filter(self, record):
        record.aws_request_id = RequestIdFilter.request_id
        return True


def configure_logging():
    """The root logger as Lambda's Python runtime leaves it (Text log format)."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL"):
        root.setLevel(logging.WARNING if level == "WARN" else level.replace("FATAL", "CRITICAL"))


def set_import_paths():
    """/var/task first, then each layer's Python folders, as on Lambda; then the
    package's own python/ folder, where a layer's layout vendored into the function's
    zip puts its dependencies."""
    paths = [
        TASK_ROOT,
        "/opt/python",
        f"/opt/python/lib/{PYTHON}/site-packages",
        f"{TASK_ROOT}/python",
    ]
    sys.path[:0] = [p for p in paths if p not in sys.path]


class HostFileLoader:
    """Runs a module whose source the host read (see `HostFileFinder`)."""

    def __init__(self, path, source):
        self.path = path
        self.source = source

    def create_module(self, spec):
        return None

    def get_data(self, path):
        """For `pkgutil.get_data` and `importlib.resources` on a package read this way."""
        data = task_files.read(path)
        if data is None:
            raise FileNotFoundError(path)
        return data

    def exec_module(self, module):
        # The source is not kept: the snapshot would carry it into every environment.
        source, self.source = self.source, None
        exec(compile(source, self.path, "exec", dont_inherit=True), module.__dict__)


class HostFileFinder:
    """Finds the handler's modules (plain modules and regular packages) in /var/task and
    /opt through the host, so that a SnapStart INIT imports them without opening a file."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        name = fullname.rpartition(".")[2]
        for root in path if path is not None else sys.path:
            if not isinstance(root, str) or not (
                root == TASK_ROOT or root.startswith((TASK_ROOT + "/", "/opt/"))
            ):
                continue
            base = f"{root.rstrip('/')}/{name}"
            for file, is_package in ((f"{base}/__init__.py", True), (f"{base}.py", False)):
                source = task_files.read(file)
                if source is None:
                    continue
                spec = importlib.machinery.ModuleSpec(
                    fullname, HostFileLoader(file, source), origin=file, is_package=is_package
                )
                spec.has_location = True
                if is_package:
                    spec.submodule_search_locations = [base]
                return spec
        return None


class HeldOutput:
    """sys.stdout or sys.stderr during a SnapStart INIT: kept in memory, then the real
    stream from the first invocation of a restored environment on, so whoever took a
    reference to it at INIT (a logging handler) writes to the real stream then. What INIT
    printed is not replayed in every restored environment: as for every SnapStart guest,
    the snapshot's INIT output is not kept."""

    def __init__(self, real):
        self.real = real
        self.target = io.StringIO()

    def write(self, text):
        return self.target.write(text)

    def flush(self):
        self.target.flush()

    def release(self):
        self.target = self.real

    def __getattr__(self, name):
        # Anything but writing (encoding, buffer, reconfigure) is the real stream's; a
        # write through it during INIT opens the stream, and the host then takes no
        # snapshot rather than a broken one.
        return getattr(self.real, name)


def split_handler(handler):
    """`pkg/mod.fn` or `pkg.mod.fn` into the module's dotted name and the function's."""
    try:
        module_path, function = handler.rsplit(".", 1)
    except ValueError as e:
        raise LambdaError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}")
    if not module_path or not function:
        raise LambdaError(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)",
        )
    return module_path.replace("/", "."), function


def load_handler(handler):
    modname, fname = split_handler(handler)
    if modname in sys.builtin_module_names:
        raise LambdaError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {modname} as a handler module",
        )
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise LambdaError("Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}")
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {(e.text or "").strip()}\n']
        raise LambdaError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", trace)
    except Exception as e:
        raise error_of(e)
    function = getattr(module, fname, None)
    if function is None:
        raise LambdaError("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'")
    return function


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def new_log_stream_name():
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    return time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{version}]" + uuid.uuid4().hex


class Handler(exports.Handler):
    function = None
    log_stream_name = ""
    # The outputs held during a SnapStart INIT, released by the first invocation.
    held = []

    def init(self):
        # Set by the host only in the instance a snapshot is taken from; restored
        # environments must not see it.
        snapshot = os.environ.pop("LAMINA_SNAPSHOT_INIT", None) == "1"
        try:
            if snapshot:
                Handler.held = [HeldOutput(sys.stdout), HeldOutput(sys.stderr)]
                sys.stdout, sys.stderr = Handler.held
                sys.meta_path.insert(0, HostFileFinder)
            configure_logging()
            set_import_paths()
            Handler.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", new_log_stream_name())
            os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = Handler.log_stream_name
            Handler.function = load_handler(os.environ.get("_HANDLER", ""))
        except LambdaError as e:
            flush()
            raise e.to_wit()
        except BaseException as e:
            flush()
            raise error_of(e).to_wit()
        finally:
            if HostFileFinder in sys.meta_path:
                sys.meta_path.remove(HostFileFinder)
        flush()

    @staticmethod
    def restored():
        """The first invocation of an environment restored from a snapshot: its own log
        stream and random state, and the real stdout and stderr."""
        held, Handler.held = Handler.held, []
        random.seed()
        Handler.log_stream_name = new_log_stream_name()
        os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = Handler.log_stream_name
        for output in held:
            output.release()

    def handle(self, event, context):
        if Handler.held:
            Handler.restored()
        RequestIdFilter.request_id = context.request_id
        try:
            payload = json.loads(event) if event.strip() else {}
            result = Handler.function(payload, LambdaContext(context, Handler.log_stream_name))
            try:
                body = json.dumps(result)
            except (TypeError, ValueError, RecursionError) as e:
                raise LambdaError("Runtime.MarshalError", f"Unable to marshal response: {e}")
            return body.encode()
        except LambdaError as e:
            raise e.to_wit()
        except BaseException as e:
            raise error_of(e).to_wit()
        finally:
            flush()

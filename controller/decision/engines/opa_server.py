"""OPA as a server (`opa run --server`), queried through opa-python-client: the production path.

`OpaServer` starts and stops a real OPA process loaded with a bundle (for dev, tests and the benchmark); in
production point `AUTONOMY_OPA_URL` at your own OPA (sidecar or cluster). Either way the engine checks that
the policy revision OPA evaluated is the one the controller expects, so a stale or foreign policy set can
never decide silently, and queries with strict built-in errors, so a built-in that fails is an error (a deny),
never an undefined value that lets a deny rule pass.

Before its first decision the engine also asks OPA for package autonomy.config's `errors` (the static checks of
the bundle's data, policies/autonomy/config.rego) and refuses to decide while they are not empty.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from autonomy_controller.controller.decision.engines.base import (
    EVALUATION_TIMEOUT_S,
    PolicyEngineError,
    PolicyUndefinedError,
)
from autonomy_controller.controller.decision.engines.input_types import check_input_types
from autonomy_controller.controller.decision.policy_bundle import CONFIG_ENTRYPOINT, ENTRYPOINT, PolicyBundle
from autonomy_controller.controller.processes import free_port, stop_process

PACKAGE_PATH, RULE_NAME = ENTRYPOINT.rsplit("/", 1)
CONFIG_PACKAGE_PATH, CONFIG_RULE_NAME = CONFIG_ENTRYPOINT.rsplit("/", 1)


class OpaUnavailableError(PolicyEngineError):
    pass


# Without it OPA makes a built-in that fails (net.cidr_intersects on a bare address, a type error) *undefined*:
# a deny rule calling it silently does not fire and the action runs. With it, the query fails (HTTP 500) and the
# guard denies, as the embedded engine does (regopy runs with strict_built_in_errors on).
STRICT = {"strict-builtin-errors": "true"}


def evaluation_error(url: str, entrypoint: str, response: requests.Response | None) -> PolicyEngineError:
    """The engine error for an HTTP error from OPA, naming OPA's own error codes and messages (bounded)."""
    status = response.status_code if response is not None else "?"
    try:
        body = response.json() if response is not None else {}
        details = [f"{e.get('code')}: {e.get('message')}" for e in body.get("errors") or [] if isinstance(e, dict)]
        detail = "; ".join(details) or f"{body.get('code')}: {body.get('message')}"
    except (ValueError, AttributeError):
        detail = "no error document"
    return PolicyEngineError(
        f"OPA server at {url} errored evaluating {entrypoint} (HTTP {status}, strict built-in errors on): "
        f"{detail[:500]}"
    )


class OpaServer:
    """A real `opa run --server` on loopback, loaded with one bundle; stopped (and its files removed) on exit."""

    def __init__(self, opa_bin: Path, bundle: PolicyBundle, port: int | None = None) -> None:
        if not opa_bin.exists():
            raise OpaUnavailableError(f"opa binary not found at {opa_bin} (run .ci/run or set AUTONOMY_OPA_BIN)")
        self.opa_bin = opa_bin
        self.bundle = bundle
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._output: IO[bytes] | None = None

    def start(self, ready_timeout: float = 15.0) -> OpaServer:
        self._workdir = Path(tempfile.mkdtemp(prefix="autonomy-opa-"))
        output = self._output = tempfile.TemporaryFile(prefix="autonomy-opa-output-")  # noqa: SIM115 (closed in stop)
        self.bundle.write_to(self._workdir)
        try:
            check_input_types(self.opa_bin, self._workdir, self.bundle.input_schema)
        except PolicyEngineError as exc:
            workdir = self._workdir
            self.stop()
            raise OpaUnavailableError(self.bundle.as_authored(str(exc), workdir)) from exc
        self._process = subprocess.Popen(
            [
                str(self.opa_bin),
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "error",
                "--skip-version-check",
                str(self._workdir),
            ],
            # A file, not a pipe: OPA prints why it will not start on stdout, and a pipe nobody reads while it
            # runs could fill and stall it.
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                workdir = self._workdir
                output.seek(0)
                said = output.read().decode(errors="replace")
                self.stop()
                said = self.bundle.as_authored(said.strip(), workdir)
                raise OpaUnavailableError(f"opa exited at start: {said[:800]}")
            try:
                if requests.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise OpaUnavailableError(f"opa did not become healthy within {ready_timeout}s")

    def stop(self) -> None:
        stop_process(self._process, timeout=5)
        self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> OpaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class OpaServerEngine:
    name = "opa"

    def __init__(self, url: str, timeout: float = EVALUATION_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise OpaUnavailableError(f"OPA url must name host and port, got {url!r}")
        self.url = url
        # retries=0: a decision that times out is a deny now, not a slow pass later.
        self._client = OpaClient(
            host=parts.hostname, port=parts.port, ssl=parts.scheme == "https", timeout=timeout, retries=0
        )
        self._config_checked = False

    def check_config(self) -> None:
        """Raise PolicyEngineError unless OPA's data passes package autonomy.config (no such package: nothing to check).

        evaluate() calls this before its first decision (and again after a failed check); callers that want a
        broken bundle reported at start-up may call it right away.
        """
        response = self._query({}, CONFIG_PACKAGE_PATH, CONFIG_RULE_NAME, CONFIG_ENTRYPOINT)
        errors = response.get("result", [])
        if not isinstance(errors, list):
            raise PolicyEngineError(f"OPA server at {self.url}: {CONFIG_ENTRYPOINT} is not a list: {errors!r}")
        if errors:
            raise PolicyEngineError("policy data invalid: " + "; ".join(map(str, errors)))
        self._config_checked = True

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        if not self._config_checked:
            self.check_config()
        response = self._query(input_doc, PACKAGE_PATH, RULE_NAME, ENTRYPOINT)
        if "result" not in response:
            raise PolicyUndefinedError(f"{ENTRYPOINT} is undefined for this input (OPA returned no result)")
        return response["result"]

    def _query(self, input_doc: dict[str, Any], package_path: str, rule: str, entrypoint: str) -> dict[str, Any]:
        """OPA's answer for one rule, with strict built-in errors (STRICT): an evaluation error raises."""
        try:
            response = self._client.query_rule(input_doc, package_path.replace("/", "."), rule, query_params=STRICT)
        except requests.HTTPError as exc:
            raise evaluation_error(self.url, entrypoint, exc.response) from exc
        except requests.RequestException as exc:
            raise OpaUnavailableError(f"OPA server at {self.url} unreachable or failed: {exc}") from exc
        except Exception as exc:  # the client raises its own types for OPA-side errors
            raise PolicyEngineError(f"OPA server at {self.url} returned an error: {exc}") from exc
        if not isinstance(response, dict):
            raise PolicyEngineError(f"OPA server at {self.url} answered {entrypoint} with a {type(response).__name__}")
        return response

    def close(self) -> None:
        self._client.close_connection()

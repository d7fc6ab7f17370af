"""OpenAPI-driven fuzzing of every endpoint in /openapi.json with schemathesis, against the live server on a real
Temporal dev server and worker: no request may get a 5xx that is not a deliberate, documented answer.

Schemathesis runs as its own CLI (`st run`) in a subprocess, so the server keeps serving on this test's event
loop. A fixed seed and example count keep the run reproducible and short. Deliberate 503s (Temporal down,
ledger slow) cannot happen here: Temporal and the ledger are up for the whole run.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.service import create_app
from autonomy_controller.controller.service.chatops import ChatConfig
from autonomy_controller.controller.service.tokens import Scope, TokenStore, tokens_file
from tests.harness import running_loop
from tests.test_http import LIMITS, live

pytestmark = pytest.mark.asyncio(loop_scope="module")
SEED = 20261206
MAX_EXAMPLES = 25
ST = Path(sys.executable).parent / "st"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> AsyncIterator[tuple[str, str]]:
    if not ST.exists():
        pytest.skip("schemathesis is not installed (the dev extra: make .venv/.installed)")
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(settings.levels_dir, root / "levels")
    shutil.copytree(settings.policies_dir, root / "policies")
    config = Settings(levels_dir=root / "levels", policies_dir=root / "policies", state_dir=root / "var")
    token, _ = TokenStore(tokens_file(config.state_dir)).add("fuzzer", [Scope.INGEST, Scope.READ])
    async with running_loop(config) as loop:
        chat = ChatConfig.model_validate(  # ChatOps on, so its endpoint is fuzzed past "not configured"
            {"webhook_url": "http://127.0.0.1:9/hook", "signing_secret": "fuzz", "users": {"U0BOB": "bob"}}
        )
        app = create_app(config, LIMITS, loop.client.service_client.config.target_host, chat=chat)
        async with live(app) as http:
            yield str(http.base_url).rstrip("/"), token


async def fuzz(base: str, report: Path, *headers: str) -> tuple[int, str, list[dict[str, Any]]]:
    argv = [str(ST), "run", f"{base}/openapi.json", "--checks", "not_a_server_error", "--seed", str(SEED)]
    argv += ["--max-examples", str(MAX_EXAMPLES), "--workers", "2", "--request-timeout", "30", "--no-color"]
    argv += ["--generation-database", "none", "--report", "ndjson", "--report-ndjson-path", str(report)]
    for header in headers:
        argv += ["--header", header]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=report.parent
    )
    output, _ = await process.communicate()
    events = [json.loads(line) for line in report.read_text().splitlines() if line.strip()] if report.exists() else []
    return process.returncode or 0, output.decode(errors="replace"), events


async def test_every_endpoint_fuzzed_from_the_openapi_document_answers_without_a_server_error(
    served: tuple[str, str], tmp_path: Path
) -> None:
    base, token = served
    async with httpx.AsyncClient() as http:  # async: the server answers on this very event loop
        document = (await http.get(f"{base}/openapi.json")).json()
    operations = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}
    assert {"POST /v1/alerts", "GET /v1/incidents", "POST /v1/chat/slack/interactions", "GET /readyz"} <= operations

    for name, headers in (("authorised", (f"Authorization: Bearer {token}",)), ("anonymous", ())):
        code, output, events = await fuzz(base, tmp_path / f"{name}.ndjson", *headers)
        assert code == 0, f"{name}: schemathesis found server errors:\n{output[-6000:]}"
        fuzzed = {
            str(finished["recorder"]["label"])
            for event in events
            if (finished := event.get("ScenarioFinished")) and finished["phase"] == "fuzzing"
            if finished["status"] == "success"
        }
        assert fuzzed == operations, f"{name}: not every operation was fuzzed:\n{output[-3000:]}"

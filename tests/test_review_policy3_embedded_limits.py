"""Review (policy3): the embedded engine's time limit. regopy cannot interrupt a query, so it runs in a child
process of its own that is killed past the deadline; every way that process can fail is a deny naming why, and
the engine decides the next input again.

On real regopy child processes with the shipped policy plus a platform team's slow rule (no stand-ins): a crash
is a real signal sent to the real child.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.base import PolicyEngineError
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.runtime import EngineName, load_policy_bundle, open_guard
from autonomy_controller.controller.models import Verdict
from tests.test_conformance import CASES, POLICY_CASES, _decide, _input_doc

BLOCK = next(case for case in CASES if case.name == "L4 block runs")
# A rule that walks a huge range for one action name: the wasm engine took 16 s on it, then failed on memory.
SLOW = 'deny contains "slow" if {\n\tinput.action.name == "slow"\n\tsome i in numbers.range(1, 20000000)\n\ti < 0\n}\n'
# The same, slow without growing (~30 MB; regopy gives up on it after ~4 s): what only the time limit can stop.
SLOW_SMALL = (
    'deny contains "slow" if {\n\tinput.action.name == "slow"\n\tsome i in numbers.range(1, 400)\n'
    "\tsome j in numbers.range(1, 400)\n\tsome k in numbers.range(1, 400)\n\ti == j + k + 5000\n}\n"
)
LIMIT_S = 0.3


def _with_guardrail(settings: Settings, source: str) -> None:
    (settings.policies_dir / "guardrails" / "team.rego").write_text(f"package autonomy.guardrails\n\n{source}")


def _children() -> set[int]:
    """The process ids of this process's live children (Linux /proc: every thread's list)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return {pid for pid in found if _alive(pid)}


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether `condition` held within `seconds` (a bound for the test not to hang, not a timing target)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def slow_settings(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Settings:
    """A copy of the configuration with the slow guardrail beside the shipped ones."""
    root = tmp_path_factory.mktemp("slow")
    for name, source in (("levels", settings.levels_dir), ("policies", settings.policies_dir)):
        shutil.copytree(source, root / name)
    shutil.copytree(settings.config_dir, root / "config")
    copy = Settings(levels_dir=root / "levels", policies_dir=root / "policies", config_dir=root / "config")
    _with_guardrail(copy, SLOW)
    return copy


@pytest.fixture(scope="module")
def block_input(embedded_guard: Guard) -> dict[str, Any]:
    return _input_doc(embedded_guard, BLOCK)


@pytest.fixture
def engine(slow_settings: Settings) -> Iterator[EmbeddedEngine]:
    engine = EmbeddedEngine(load_policy_bundle(slow_settings), timeout_s=LIMIT_S)
    yield engine
    engine.close()


def _slow(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "action": {**document["action"], "name": "slow"}}


# --- past the deadline ------------------------------------------------------------------------------------------
def test_a_slow_policy_is_stopped_and_the_engine_decides_again(engine: EmbeddedEngine, block_input: Any) -> None:
    before = engine.evaluate(block_input)
    first = engine.pid
    with pytest.raises(PolicyEngineError, match=rf"took longer than the {LIMIT_S:g} s limit and was stopped"):
        engine.evaluate(_slow(block_input))
    assert first is not None and not _alive(first), "the runaway query's process was left running"
    assert engine.evaluate(block_input) == before  # a new process, the same answer
    assert engine.pid not in (None, first)
    assert before["verdict"] == "execute"


def test_a_policy_that_grows_past_the_headroom_is_stopped_before_its_deadline(
    slow_settings: Settings, block_input: Any
) -> None:
    """The runaway range grows the child by hundreds of MB a second: with a deadline far off, the memory limit stops
    it (the child killed), and the next input is decided by a new child."""
    engine = EmbeddedEngine(load_policy_bundle(slow_settings), timeout_s=60, headroom_mb=128)
    try:
        before = engine.evaluate(block_input)
        first = engine.pid
        started = time.monotonic()
        with pytest.raises(
            PolicyEngineError,
            match=r"grew to \d+ MB resident, past its memory limit \(the loaded policy's size \+ 128 MB\)",
        ) as raised:
            engine.evaluate(_slow(block_input))
        assert time.monotonic() - started < 30, "stopped by its deadline, not by memory"
        assert "was stopped" in str(raised.value)
        assert first is not None and _wait_for(lambda: not _alive(first)), "the runaway process was left running"
        assert engine.evaluate(block_input) == before
    finally:
        engine.close()


def test_the_guard_denies_naming_the_limit(slow_settings: Settings) -> None:
    """Through the product's own path (open_guard, the default 2 s): the block that would run is a deny."""
    _with_guardrail(slow_settings, SLOW_SMALL.replace('name == "slow"', 'name == "network.block_ip"'))
    try:
        with open_guard(slow_settings, EngineName.EMBEDDED) as guard:
            decision = _decide(guard, BLOCK)
    finally:
        _with_guardrail(slow_settings, SLOW)
    assert decision.verdict is Verdict.DENY
    [reason] = decision.reasons
    assert reason.startswith("policy engine (embedded) gave no decision: ") and "2 s limit" in reason, reason


# --- a crash ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
def test_a_child_that_died_between_decisions_is_a_deny_then_replaced(
    sig: signal.Signals, engine: EmbeddedEngine, block_input: Any
) -> None:
    before = engine.evaluate(block_input)
    pid = engine.pid
    assert pid is not None
    os.kill(pid, sig)
    assert _wait_for(lambda: not _alive(pid))
    with pytest.raises(PolicyEngineError, match=rf"regopy process ended \(killed by signal {int(sig)}\)"):
        engine.evaluate(block_input)
    assert engine.evaluate(block_input) == before


def test_a_child_that_dies_mid_evaluation_is_a_deny_at_once(slow_settings: Settings, block_input: Any) -> None:
    """Killed while it runs the slow rule (limit 60 s): the evaluation ends with the process, not at the limit."""
    engine = EmbeddedEngine(load_policy_bundle(slow_settings), timeout_s=60)
    try:
        pid = engine.pid
        assert pid is not None
        said: list[BaseException] = []

        def evaluate() -> None:
            try:
                engine.evaluate(_slow(block_input))
            except PolicyEngineError as exc:
                said.append(exc)

        worker = threading.Thread(target=evaluate)
        worker.start()
        time.sleep(0.5)  # inside the query by now
        os.kill(pid, signal.SIGSEGV)
        worker.join(timeout=30)
        assert not worker.is_alive(), "the evaluation waited on a dead process"
        [error] = said
        assert "regopy process ended (killed by signal 11) while evaluating" in str(error)
        assert engine.evaluate(block_input)["verdict"] == "execute"
    finally:
        engine.close()


# --- loading --------------------------------------------------------------------------------------------------------
# A data check (package autonomy.config, run once at load) that walks a huge range: the load would hang.
SLOW_CHECK = '\nerrors contains "slow" if {\n\tsome i in numbers.range(1, 200000000)\n\ti < 0\n}\n'


def test_a_load_that_hangs_is_stopped_naming_the_limit(config_copy: Settings) -> None:
    config = config_copy.policies_dir / "autonomy" / "config.rego"
    config.write_text(config.read_text() + SLOW_CHECK)
    bundle = load_policy_bundle(config_copy)
    before = _children()
    with pytest.raises(PolicyEngineError, match=r"loading the policy took longer than the 0\.5 s limit"):
        EmbeddedEngine(bundle, load_timeout_s=0.5)
    assert _children() <= before, "the hung load's process was left running"


def test_a_child_that_dies_while_loading_is_an_error(config_copy: Settings) -> None:
    config = config_copy.policies_dir / "autonomy" / "config.rego"
    config.write_text(config.read_text() + SLOW_CHECK)
    bundle = load_policy_bundle(config_copy)
    before = _children()
    said: list[BaseException] = []

    def load() -> None:
        try:
            EmbeddedEngine(bundle, load_timeout_s=60)
        except PolicyEngineError as exc:
            said.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    assert _wait_for(lambda: bool(_children() - before))
    [pid] = _children() - before
    os.kill(pid, signal.SIGKILL)
    loader.join(timeout=30)
    assert not loader.is_alive()
    [error] = said
    assert "regopy process ended (killed by signal 9)" in str(error)


def test_a_load_error_is_still_the_policys_own(config_copy: Settings) -> None:
    """The child's compile error crosses the pipe as it was: file and line of the author's module."""
    _with_guardrail(config_copy, 'deny contains "x" if {\n\tinput.action.name ==\n}\n')
    with pytest.raises(PolicyEngineError, match=r"guardrails/team\.rego:\d+:"):
        EmbeddedEngine(load_policy_bundle(config_copy))


# --- several threads ------------------------------------------------------------------------------------------
def test_concurrent_evaluations_each_get_their_own_answer(engine: EmbeddedEngine, embedded_guard: Guard) -> None:
    """Eight threads on one engine, the slow input among them: each input gets the answer it gets alone (the
    slow one the limit's deny); no answer crosses to another thread's input, none is denied for the slow one."""
    documents = [_input_doc(embedded_guard, case) for case in POLICY_CASES]
    alone = [engine.evaluate(document) for document in documents]
    assert len({repr(answer) for answer in alone}) > 5  # inputs that tell answers apart
    errors: list[BaseException] = []
    got: dict[tuple[int, int], Any] = {}

    def run(thread: int) -> None:
        for round_ in range(3):
            for index, document in enumerate(documents):
                if thread == 0 and round_ == 1 and index == 0:
                    try:
                        engine.evaluate(_slow(document))
                    except PolicyEngineError as exc:
                        errors.append(exc)
                got[thread, round_ * len(documents) + index] = engine.evaluate(document)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    [error] = errors
    assert "limit" in str(error)
    assert len(got) == 8 * 3 * len(documents)
    for (_, number), answer in got.items():
        assert answer == alone[number % len(documents)]


# --- no process left behind ---------------------------------------------------------------------------------------
def test_close_and_a_dropped_engine_leave_no_process(slow_settings: Settings, block_input: Any) -> None:
    bundle = load_policy_bundle(slow_settings)
    before = _children()
    closed = EmbeddedEngine(bundle)
    pid = closed.pid
    closed.close()
    assert pid is not None and not _alive(pid)
    assert closed.evaluate(block_input)["verdict"] == "execute"  # after close: a new process, on demand
    closed.close()
    dropped = EmbeddedEngine(bundle)
    pid = dropped.pid
    del dropped  # never closed: the finalizer kills it
    assert pid is not None and not _alive(pid)
    assert _children() <= before


_PARENT = """
import sys
from pathlib import Path
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine
from autonomy_controller.controller.decision.runtime import load_policy_bundle
root = Path(sys.argv[1])
settings = Settings(levels_dir=root / "levels", policies_dir=root / "policies", config_dir=root / "config")
engine = EmbeddedEngine(load_policy_bundle(settings), timeout_s=600)
print(engine.pid, flush=True)
try:
    engine.evaluate({"action": {"name": "slow"}})
except Exception:
    pass
"""


def test_a_child_whose_parent_was_killed_mid_query_ends(slow_settings: Settings) -> None:
    """A worker killed by SIGKILL runs no finalizer: its regopy process notices and ends, runaway query and all."""
    root = slow_settings.policies_dir.parent
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(root)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        time.sleep(0.5)  # in the slow query by now
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    assert _wait_for(lambda: not _alive(child)), f"regopy process {child} outlived its parent"

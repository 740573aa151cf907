"""The Python package against the codemode binary its wheel installed.

Run by `cargo test` (tests/all/python.rs), which builds the wheel, installs it into a fresh
virtual environment and points CODEMODE_TYPESCRIPT_DIR at tests/npm's TypeScript 7, so
programs are type-checked as they are for a user who ran `codemode setup`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import pytest

import codemode
from codemode import CodemodeError, Engine, LogLine, ToolError


async def test_the_smallest_use_from_the_readme() -> None:
    async with Engine(demo=True) as engine:

        @engine.tool("shop")
        def stock_level(item: str) -> int:
            "How many of an item are in stock."
            return 3

        outcome = await engine.execute("return await shop.stock_level({ item: 'pears' })")
        assert outcome.ok and outcome.value == 3
        assert outcome.logs == ()
        assert outcome.error is None
        assert outcome.stats["tool_calls"] == 1
        assert outcome.stats["typecheck"] == "passed"
        assert outcome.text() == "result: 3"


def test_the_package_and_binary_are_the_ones_the_wheel_installed() -> None:
    assert Path(codemode.find_binary()) == Path(sys.prefix) / "bin" / "codemode"
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert Path(codemode.__file__) == site / "codemode" / "__init__.py"


class Line(pydantic.BaseModel):
    item: str
    quantity: Annotated[int, pydantic.Field(ge=1, description="How many; at least one.")]


class Order(pydantic.BaseModel):
    "An order to place."

    customer: str
    lines: list[Line]
    speed: Literal["standard", "express"] = "standard"


class Placed(pydantic.BaseModel):
    id: str
    total: float


DECLARATIONS = """\
declare namespace shop {
  /** Places an order; returns its id and total. */
  function place_order(args: PlaceOrderInput): Promise<PlaceOrderOutput>;
  /** An order to place. */
  interface PlaceOrderInput {
    customer: string;
    lines: Line[];
    /** @default "standard" */
    speed?: "standard" | "express";
  }
  interface PlaceOrderOutput {
    id: string;
    total: number;
  }
  interface Line {
    item: string;
    /**
     * How many; at least one.
     *
     * @integer
     * @minimum 1
     */
    quantity: number;
  }

  /** The price of one item. */
  function price(args: PriceInput): Promise<PriceOutput>;
  interface PriceInput {
    item: string;
    /** @default "EUR" */
    currency?: "EUR" | "USD";
    /** @default null */
    discount?: number | null;
  }
  type PriceOutput = number;
}
"""


async def test_declarations_come_from_type_hints_and_pydantic_models() -> None:
    placed: list[Order] = []
    async with Engine() as engine:

        @engine.tool("shop", description="Places an order; returns its id and total.")
        async def place_order(order: Order) -> Placed:
            placed.append(order)
            return Placed(id="o-1", total=sum(2.5 * line.quantity for line in order.lines))

        @engine.tool("shop")
        def price(item: str, currency: Literal["EUR", "USD"] = "EUR", discount: float | None = None) -> float:
            "The price of one item."
            return 2.5

        assert await engine.describe("shop") == DECLARATIONS
        code = """
            const placed = await shop.place_order({ customer: 'ada', lines: [{ item: 'pears', quantity: 2 }] })
            return { placed, price: await shop.price({ item: 'pears' }) }
        """
        outcome = await engine.execute(code)
        assert outcome.ok, outcome.text()
        assert outcome.value == {"placed": {"id": "o-1", "total": 5.0}, "price": 2.5}
        assert placed == [Order(customer="ada", lines=[Line(item="pears", quantity=2)])]


async def test_a_type_error_stops_the_program_before_any_tool_runs() -> None:
    calls: list[str] = []
    async with Engine() as engine:

        @engine.tool("shop")
        def stock_level(item: str) -> int:
            calls.append(item)
            return 3

        outcome = await engine.execute("await shop.stock_level({ item: 'a' })\nreturn await shop.stock_level({ item: 3 })")
        assert not outcome.ok
        assert outcome.error is not None and outcome.error.kind == "type_error"
        assert [(d.line, d.code) for d in outcome.diagnostics or outcome.error.diagnostics] == [(2, 2322)]
        assert calls == []


async def test_sync_tools_run_on_threads_and_async_ones_on_the_loop_all_at_once() -> None:
    started = 0
    all_started = asyncio.Event()

    async with Engine(typecheck="off") as engine:
        loop = asyncio.get_running_loop()

        @engine.tool("slow")
        async def wait_for_all(n: int) -> int:
            nonlocal started
            started += 1
            if started == 4:
                all_started.set()
            await asyncio.wait_for(all_started.wait(), 10)
            return n

        @engine.tool("slow")
        def blocking(n: int) -> int:
            # A sync tool blocks its own thread, not the event loop the other calls need.
            future = asyncio.run_coroutine_threadsafe(wait_for_all(n), loop)
            return future.result(10) * 10

        outcome = await engine.execute(
            "return await Promise.all([slow.wait_for_all({ n: 1 }), slow.blocking({ n: 2 }), "
            "slow.wait_for_all({ n: 3 }), slow.blocking({ n: 4 })])"
        )
        assert outcome.value == [1, 20, 3, 40], outcome.text()


async def test_tool_errors_reach_the_program_with_their_code() -> None:
    async with Engine(typecheck="off") as engine:

        @engine.tool("shop")
        def reserve(item: str) -> bool:
            if item == "pears":
                raise ToolError("pears are sold out", code="sold_out")
            raise ValueError(f"no such item {item!r}")

        caught = await engine.execute(
            "try { await shop.reserve({ item: 'pears' }) } catch (e) { return [e.code, e.message] }"
        )
        assert caught.value == ["sold_out", "shop.reserve: pears are sold out"]
        uncaught = await engine.execute("await shop.reserve({ item: 'kiwis' })")
        assert uncaught.error is not None
        assert (uncaught.error.kind, uncaught.error.tool, uncaught.error.code) == ("exception", "shop.reserve", "tool_error")
        assert uncaught.error.message == "shop.reserve: ValueError: no such item 'kiwis'"
        assert uncaught.text() == (
            "error[exception] at line 1, column 11: ToolError: shop.reserve: ValueError: no such item 'kiwis' "
            "(tool shop.reserve, code tool_error)"
        )


async def test_logs_arrive_while_the_program_runs() -> None:
    seen: list[LogLine] = []
    first = asyncio.Event()

    async with Engine(typecheck="off") as engine:

        @engine.tool("t")
        async def after_first_log() -> str:
            # Returns only once the line logged before this call has reached Python.
            await asyncio.wait_for(first.wait(), 10)
            return "go"

        def on_log(line: LogLine) -> None:
            seen.append(line)
            first.set()

        outcome = await engine.execute(
            "console.log('starting'); const go = await t.after_first_log({}); console.warn(go); return 1",
            on_log=on_log,
        )
        assert outcome.value == 1
        assert seen == [LogLine("log", "starting"), LogLine("warn", "go")]
        assert outcome.logs == tuple(seen)


async def test_a_failing_log_callback_is_logged_and_the_program_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken(line: LogLine) -> None:
        raise RuntimeError(f"cannot show {line.message}")

    async def broken_later(line: LogLine) -> None:
        raise RuntimeError(f"cannot show {line.message} either")

    async with Engine(typecheck="off") as engine:
        first = await engine.execute("console.log('a'); return 1", on_log=broken)
        second = await engine.execute("console.log('b'); return 2", on_log=broken_later)
        assert (first.value, second.value) == (1, 2)
        assert first.logs == (LogLine("log", "a"),)
    failures = [r for r in caplog.records if r.name == "codemode" and r.levelno == logging.ERROR]
    assert [(r.getMessage(), str(r.exc_info[1])) for r in failures if r.exc_info] == [
        ("an on_log callback failed", "cannot show a"),
        ("an on_log callback failed", "cannot show b either"),
    ]


async def test_a_session_keeps_state_until_it_is_closed() -> None:
    async with Engine(typecheck="off") as engine:
        first = await engine.execute("const basket = ['pears']; return basket.length", session="s")
        assert first.value == 1 and first.session is not None and first.session["id"] == "s"
        second = await engine.execute("basket.push('plums'); return basket", session="s")
        assert second.value == ["pears", "plums"]
        assert await engine.close_session("s") is True
        assert await engine.close_session("s") is False
        third = await engine.execute("return typeof basket", session="s")
        assert third.value == "undefined"


async def test_approvals_pause_and_resume(tmp_path: Path) -> None:
    config = tmp_path / "codemode.toml"
    config.write_text('[approvals]\ntools = ["shop.refund"]\n')
    done: list[str] = []
    async with Engine(config, typecheck="off") as engine:

        @engine.tool("shop")
        def refund(order: int) -> str:
            done.append(f"refund {order}")
            return f"refunded {order}"

        @engine.tool("shop", approval=True)
        def cancel(order: int) -> str:
            done.append(f"cancel {order}")
            return f"cancelled {order}"

        code = "try { return await shop.refund({ order: 7 }) } catch (e) { return e.code + ': ' + e.message }"
        paused = await engine.execute(code)
        assert not paused.ok and paused.error is None and paused.paused is not None
        assert (paused.paused.tool, paused.paused.arguments) == ("shop.refund", {"order": 7})
        assert paused.text() == (
            f'paused: shop.refund({{"order":7}}) needs a person\'s approval (approval {paused.paused.approval})'
        )
        rejected = await engine.resume(paused.paused.approval, False, "not today")
        assert rejected.value == "rejected: shop.refund: the call was rejected: not today", rejected.value
        assert done == []

        asked: list[codemode.Paused] = []

        async def approve(p: codemode.Paused) -> bool | tuple[bool, str]:
            asked.append(p)
            return p.tool == "shop.refund" or (False, "keep it")

        code = "const r = await shop.refund({ order: 7 })\ntry { await shop.cancel({ order: 8 }) } catch (e) { return [r, e.message] }"
        decided = await engine.execute(code, approve=approve)
        assert decided.value == ["refunded 7", "shop.cancel: the call was rejected: keep it"], decided.text()
        assert [(p.tool, p.arguments) for p in asked] == [("shop.refund", {"order": 7}), ("shop.cancel", {"order": 8})]
        assert done == ["refund 7"]


async def test_a_refused_request_raises_and_the_engine_keeps_serving() -> None:
    async with Engine(typecheck="off") as engine:
        with pytest.raises(CodemodeError) as refused:
            await engine.execute("return 1", limits={"memory_gb": 1})
        assert refused.value.code == -32602
        assert str(refused.value).startswith("limits.memory_gb: unknown field `memory_gb`, expected one of")
        with pytest.raises(CodemodeError) as unknown:
            await engine.describe("nowhere.nothing")
        assert unknown.value.code == -32003
        assert (await engine.execute("return 2")).value == 2


async def test_a_bad_tool_signature_is_refused_when_declared() -> None:
    engine = Engine()
    with pytest.raises(TypeError, match=r"tool spread: \*items cannot be described"):

        @engine.tool("bad")
        def spread(*items: str) -> None: ...


async def test_a_dead_engine_fails_what_waits_with_the_reason() -> None:
    called = asyncio.Event()
    async with Engine(typecheck="off") as engine:

        @engine.tool("t")
        async def never() -> None:
            called.set()
            await asyncio.sleep(3600)

        run = asyncio.create_task(engine.execute("await t.never({})"))
        await asyncio.wait_for(called.wait(), 10)
        assert engine._process is not None
        os.kill(engine._process.pid, signal.SIGKILL)
        with pytest.raises(CodemodeError, match=r"closed its output \(it exited with status -9\)"):
            await asyncio.wait_for(run, 10)
        with pytest.raises(CodemodeError, match="closed its output"):
            await engine.execute("return 1")


async def test_a_bad_configuration_fails_start_with_the_binarys_reason(tmp_path: Path) -> None:
    config = tmp_path / "codemode.toml"
    config.write_text("[limits]\ntimeout_ms = 'soon'\n")
    with pytest.raises(CodemodeError) as failed:
        async with Engine(config):
            pass
    assert str(failed.value) == (
        "the codemode process closed its output (it exited with status 2): "
        f'codemode: {config}:2:14: invalid type: string "soon", expected u64'
    )


async def test_the_processs_diagnostics_go_to_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="codemode"):
        async with Engine(typecheck="off") as engine:
            await engine.execute("return 1")
    assert ("codemode", logging.INFO, "codemode: daemon serving JSON-RPC on standard input and output (0 tools)") in caplog.record_tuples


def test_the_package_type_checks_strictly(tmp_path: Path) -> None:
    # The package ships py.typed: its annotations must hold for its users' checkers. Checked
    # as installed (`-p`, from elsewhere than the source tree, which would shadow it).
    import subprocess

    config = Path(__file__).parent.parent / "pyproject.toml"
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental", "--cache-dir", os.devnull, "-p", "codemode"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == "Success: no issues found in 7 source files\n", checked.stdout

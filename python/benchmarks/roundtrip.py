"""What the Python face costs: medians of `Engine.execute` for a trivial program, and per tool
call for programs that call a Python tool (sync and async) 100 times in a row. Runs are back
to back: spaced out, every request would also pay for waking the daemon's idle threads.

    pip install ./python && python python/benchmarks/roundtrip.py [runs] [binary ...]

Binaries other than the one the wheel installed may be named to compare builds: each runs
twice, alternating, in one session.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from codemode import Engine


async def median_ms(run, runs: int) -> float:
    for _ in range(min(20, runs)):
        await run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main(runs: int, binary: str | None) -> None:
    async with Engine(typecheck="off", binary=binary) as engine:

        @engine.tool("py")
        def double(n: int) -> int:
            return n * 2

        @engine.tool("py")
        async def triple(n: int) -> int:
            return n * 3

        async def check(code: str, expected: object) -> None:
            outcome = await engine.execute(code)
            assert outcome.ok and outcome.value == expected, outcome.text()

        together = "const xs = await Promise.all([...Array(100).keys()].map((n) => py.triple({ n }))); return xs.reduce((a, b) => a + b, 0)"
        loop = "let s = 0; for (let i = 0; i < 100; i++) s += await py.{}({{ n: i }}); return s"
        async def stats() -> None:
            await engine.request("stats", {})

        rows = [
            ("a `stats` request (no program)", await median_ms(stats, runs)),
            ("return 1 + 1", await median_ms(lambda: check("return 1 + 1", 2), runs)),
            ("100 sequential calls of a sync tool", await median_ms(lambda: check(loop.format("double"), 9900), runs)),
            ("100 sequential calls of an async tool", await median_ms(lambda: check(loop.format("triple"), 14850), runs)),
            ("100 calls of an async tool together", await median_ms(lambda: check(together, 14850), runs)),
        ]
    print(f"{binary or 'the wheel'}: Python {sys.version.split()[0]}, {runs} runs each, medians")
    print("| program | Engine.execute | per tool call |")
    print("|---|---|---|")
    base = rows[1][1]
    for name, ms in rows:
        per_call = f"{(ms - base) * 10:.0f} µs" if "calls" in name else ""
        print(f"| {name} | {ms:.3f} ms | {per_call} |")


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    binaries = sys.argv[2:] * 2 if len(sys.argv) > 2 else [None]
    for binary in binaries:
        asyncio.run(main(runs, binary))

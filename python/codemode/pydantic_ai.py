"""The engine as a tool for Pydantic AI (`pip install "codemode[pydantic-ai]"`).

    from pydantic_ai import Agent
    from codemode import Engine
    from codemode.pydantic_ai import code_tool

    async with Engine(config="codemode.toml") as engine:
        agent = Agent("openai:gpt-5", tools=[await code_tool(engine)])
        result = await agent.run("Which region sold most last quarter?")
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import Tool

from . import _adapter
from ._engine import Approver, Engine


async def code_tool(
    engine: Engine,
    *,
    session: str | None = None,
    approve: Approver | None = None,
    name: str = _adapter.NAME,
) -> Tool[Any]:
    """A Pydantic AI `Tool` that runs the model's TypeScript in `engine`. Its description is
    the engine's prompt, read now: register Python tools before calling this. `session` keeps
    state from one program to the next; `approve` decides calls that need a person's
    approval (without it such a call's pause is what the model reads)."""

    async def execute_code(code: str) -> str:
        return await _adapter.run(engine, code, session, approve)

    return Tool(
        execute_code,
        takes_ctx=False,
        name=name,
        description=await _adapter.description(engine, session),
    )

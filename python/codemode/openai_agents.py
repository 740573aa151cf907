"""The engine as a tool for the OpenAI Agents SDK (`pip install "codemode[openai-agents]"`).

    from agents import Agent, Runner
    from codemode import Engine
    from codemode.openai_agents import code_tool

    async with Engine(config="codemode.toml") as engine:
        agent = Agent(name="analyst", tools=[await code_tool(engine)])
        result = await Runner.run(agent, "Which region sold most last quarter?")
"""

from __future__ import annotations

import json
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext

from . import _adapter
from ._engine import Approver, Engine


async def code_tool(
    engine: Engine,
    *,
    session: str | None = None,
    approve: Approver | None = None,
    name: str = _adapter.NAME,
) -> FunctionTool:
    """A `FunctionTool` that runs the model's TypeScript in `engine`. Its description is the
    engine's prompt, read now: register Python tools before calling this. `session` keeps
    state from one program to the next; `approve` decides calls that need a person's
    approval (without it such a call's pause is what the model reads)."""

    async def invoke(_context: ToolContext[Any], arguments: str) -> str:
        code = json.loads(arguments)["code"]
        return await _adapter.run(engine, code, session, approve)

    return FunctionTool(
        name=name,
        description=await _adapter.description(engine, session),
        params_json_schema=_adapter.PARAMETERS,
        on_invoke_tool=invoke,
        strict_json_schema=True,
    )

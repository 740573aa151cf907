"""What both framework adapters share: the one tool an agent gets, `execute_code`."""

from __future__ import annotations

from typing import Any

from ._engine import Approver, Engine

NAME = "execute_code"

# The tool's parameters: one TypeScript program. Closed, so strict JSON-schema modes accept it.
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {
            "type": "string",
            "description": "The TypeScript program: a function body that awaits the tools and returns a value.",
        }
    },
    "required": ["code"],
    "additionalProperties": False,
}


async def description(engine: Engine, session: str | None) -> str:
    """The engine's prompt (how to write a program, the namespaces, the limits) as the tool's
    description, so the model reads it wherever the framework puts tool descriptions."""
    return await engine.prompt(session=session is not None)


async def run(engine: Engine, code: str, session: str | None, approve: Approver | None) -> str:
    """Runs the model's program; what the model reads back is the outcome's text (logs, then
    the result, the error or the pause), never a Python exception."""
    outcome = await engine.execute(code, session=session, approve=approve)
    return outcome.text()

"""The framework adapters, each driven by its framework's own agent loop with a scripted model
in place of a real one: the model writes a program, the adapter runs it in the engine, and the
model reads back the outcome's text."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from codemode import Engine

PROGRAM = (
    "const n = await shop.stock_level({ item: 'pears' })\n"
    "console.log('pears:', n)\n"
    "return { pears: n }"
)


def add_shop(engine: Engine) -> None:
    @engine.tool("shop")
    def stock_level(item: str) -> int:
        "How many of an item are in stock."
        return {"pears": 3}.get(item, 0)


async def test_openai_agents_runs_the_models_program() -> None:
    from agents import Agent, ModelResponse, RunConfig, Runner, Usage
    from agents.models.interface import Model
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

    from codemode.openai_agents import code_tool

    seen: dict[str, Any] = {}

    class Scripted(Model):
        """Calls execute_code with PROGRAM, then answers with what the tool returned."""

        async def get_response(self, system_instructions: Any, input: Any, model_settings: Any, tools: Any, *args: Any, **kwargs: Any) -> ModelResponse:
            outputs = [i for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"]
            if not outputs:
                seen["tools"] = [(t.name, t.description, t.params_json_schema) for t in tools]
                call = ResponseFunctionToolCall(
                    type="function_call",
                    id="fc_1",
                    call_id="call_1",
                    name="execute_code",
                    arguments=json.dumps({"code": PROGRAM}),
                )
                return ModelResponse(output=[call], usage=Usage(), response_id=None)
            seen["output"] = outputs[0]["output"]
            text = ResponseOutputText(type="output_text", text="There are 3 pears.", annotations=[])
            message = ResponseOutputMessage(
                type="message", id="msg_1", role="assistant", status="completed", content=[text]
            )
            return ModelResponse(output=[message], usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            raise NotImplementedError

    async with Engine(typecheck="off") as engine:
        add_shop(engine)
        tool = await code_tool(engine)
        agent = Agent(name="clerk", instructions="Answer with code.", model=Scripted(), tools=[tool])
        result = await Runner.run(agent, "How many pears?", run_config=RunConfig(tracing_disabled=True))

    assert result.final_output == "There are 3 pears."
    assert seen["output"] == '[log] pears: 3\nresult: {"pears":3}'
    [(name, description, schema)] = seen["tools"]
    assert name == "execute_code"
    assert description.startswith("Write a TypeScript program to do the task;")
    assert "\n- shop (1 tool) — stock_level\n" in description
    assert schema["required"] == ["code"] and schema["additionalProperties"] is False


async def test_pydantic_ai_runs_the_models_program() -> None:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from codemode.pydantic_ai import code_tool

    seen: dict[str, Any] = {}

    def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)]
        if not returns:
            seen["tools"] = [(t.name, t.description) for t in info.function_tools]
            return ModelResponse(parts=[ToolCallPart(tool_name="execute_code", args={"code": PROGRAM})])
        seen["output"] = returns[0].content
        return ModelResponse(parts=[TextPart("There are 3 pears.")])

    async with Engine(typecheck="off") as engine:
        add_shop(engine)
        agent = Agent(FunctionModel(scripted), tools=[await code_tool(engine, session="clerk")])
        result = await agent.run("How many pears?")

    assert result.output == "There are 3 pears."
    assert seen["output"] == '[log] pears: 3\nresult: {"pears":3}'
    [(name, description)] = seen["tools"]
    assert name == "execute_code"
    assert "\n- shop (1 tool) — stock_level\n" in description
    # With a session, the prompt tells the model that state carries over.
    assert "State persists between your programs" in description

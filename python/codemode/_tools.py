"""Tools from plain Python functions: their JSON Schemas from type hints (through pydantic),
and the call of one with the arguments a program passed."""

from __future__ import annotations

import asyncio
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable

import pydantic
import pydantic_core
from pydantic.json_schema import GenerateJsonSchema


class ToolError(Exception):
    """Raise it from a tool to fail the program's call with this `code` and message; the
    program sees an Error whose `code` and `message` are these, which it may catch. Any other
    exception fails the call with code `"tool_error"` and the exception's type and text."""

    def __init__(self, message: str, code: str = "tool_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Untitled(GenerateJsonSchema):
    """Pydantic titles every property and model after its name; the declarations say the
    name already, and a title would only repeat it as a comment."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def generate(self, schema: Any, mode: Any = "validation") -> dict[str, Any]:
        out = super().generate(schema, mode)
        out.pop("title", None)
        for name, definition in out.get("$defs", {}).items():
            if definition.get("title") == name:
                del definition["title"]
        return out


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel)


@dataclass
class PythonTool:
    """A Python function as a tool: its definition for `tools/register`, and its call."""

    name: str
    description: str | None
    func: Callable[..., Any]
    arguments: type[pydantic.BaseModel]
    # The function's one parameter when it is a pydantic model: the model is the arguments.
    whole: str | None
    returns: pydantic.TypeAdapter[Any] | None
    # Its calls wait for a person's approval.
    approval: bool = False

    @classmethod
    def from_function(
        cls,
        func: Callable[..., Any],
        name: str | None = None,
        description: str | None = None,
        approval: bool = False,
    ) -> PythonTool:
        name = name or func.__name__
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        params = list(signature.parameters.values())
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"tool {name}: *{p.name} cannot be described to a program; "
                    "give each argument its own parameter"
                )
        whole = None
        if len(params) == 1 and _is_model(hints.get(params[0].name)):
            whole = params[0].name
            arguments = hints[whole]
        else:
            fields: dict[str, Any] = {
                p.name: (hints.get(p.name, Any), ... if p.default is p.empty else p.default)
                for p in params
            }
            arguments = pydantic.create_model(
                f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
            )
        ret = hints.get("return", inspect.Signature.empty)
        returns = None
        if ret not in (inspect.Signature.empty, Any):
            returns = pydantic.TypeAdapter(ret)
        return cls(
            name=name,
            description=description if description is not None else inspect.getdoc(func),
            func=func,
            arguments=arguments,
            whole=whole,
            returns=returns,
            approval=approval,
        )

    def definition(self) -> dict[str, Any]:
        """The MCP-style tool definition the daemon declares to programs."""
        schema = self.arguments.model_json_schema(schema_generator=_Untitled)
        schema.setdefault("properties", {})
        definition: dict[str, Any] = {"name": self.name, "inputSchema": schema}
        if self.description:
            definition["description"] = self.description
        if self.returns is not None:
            definition["outputSchema"] = self.returns.json_schema(schema_generator=_Untitled)
        return definition

    async def call(self, arguments: Any) -> Any:
        """Runs the function (a sync one on a worker thread, so the event loop keeps serving)
        and returns its result as JSON-ready data."""
        try:
            parsed = self.arguments.model_validate(arguments if arguments is not None else {})
        except pydantic.ValidationError as e:
            raise ToolError(f"invalid arguments for {self.name}: {e}", "invalid_arguments") from e
        if self.whole is not None:
            kwargs = {self.whole: parsed}
        else:
            kwargs = {k: getattr(parsed, k) for k in type(parsed).model_fields}
        if inspect.iscoroutinefunction(self.func):
            result = await self.func(**kwargs)
        else:
            result = await asyncio.to_thread(self.func, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        if self.returns is not None:
            return self.returns.dump_python(result, mode="json")
        return pydantic_core.to_jsonable_python(result)

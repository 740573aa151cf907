"""What an execution returns: the shape of `codemode run --json`, as typed Python objects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LogLine:
    """One console line of the program (or one a tool added, such as an upstream's progress)."""

    level: str
    message: str


@dataclass(frozen=True)
class Diagnostic:
    """One type error: where in the program, TypeScript's code and message."""

    line: int
    column: int
    code: int
    message: str


@dataclass(frozen=True)
class ExecutionError:
    """Why an execution failed. `kind` is stable (`exception`, `timeout`, `memory_limit`,
    `type_error`, `syntax`, `tool_limit`, `cancelled`, ...); the rest says where and what."""

    kind: str
    message: str
    name: str | None = None
    line: int | None = None
    column: int | None = None
    stack: str | None = None
    tool: str | None = None
    code: str | None = None
    diagnostics: tuple[Diagnostic, ...] = ()
    pending: tuple[dict[str, Any], ...] = ()

    def headline(self) -> str:
        """One line for a person or a model: `error[kind] at line L, column C: Name: message
        (tool t, code c)`, as the CLI and the MCP server print it."""
        at = f" at line {self.line}, column {self.column}" if self.line is not None and self.column is not None else ""
        name = f"{self.name}: " if self.name else ""
        tool = ""
        if self.tool is not None:
            tool = f" (tool {self.tool}, code {self.code})" if self.code is not None else f" (tool {self.tool})"
        return f"error[{self.kind}]{at}: {name}{self.message}{tool}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecutionError:
        return cls(
            kind=data["kind"],
            message=data["message"],
            name=data.get("name"),
            line=data.get("line"),
            column=data.get("column"),
            stack=data.get("stack"),
            tool=data.get("tool"),
            code=data.get("code"),
            diagnostics=tuple(Diagnostic(**d) for d in data.get("diagnostics", ())),
            pending=tuple(data.get("pending", ())),
        )


@dataclass(frozen=True)
class Paused:
    """A call waiting for a person's approval: decide it with `Engine.resume(approval, ...)`."""

    approval: str
    tool: str
    arguments: Any
    pending_since: str


@dataclass(frozen=True)
class Outcome:
    """The result of `Engine.execute` or `Engine.resume`.

    `ok` is true when the program returned; then `value` is what it returned. Otherwise
    `error` says why it failed, or `paused` names the call waiting for approval. `stats`,
    `session`, `calls` and `diagnostics` are as in `codemode run --json`; `report` is the
    whole JSON object as the daemon sent it.
    """

    ok: bool
    value: Any
    logs: tuple[LogLine, ...]
    error: ExecutionError | None
    stats: dict[str, Any]
    paused: Paused | None = None
    session: dict[str, Any] | None = None
    calls: tuple[dict[str, Any], ...] | None = None
    diagnostics: tuple[Diagnostic, ...] = ()
    hint: str | None = None
    report: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def text(self) -> str:
        """What a model should read, as `codemode mcp` puts it: the logged lines, then the
        result, the error or the pause."""
        lines = [f"[{line.level}] {line.message}" for line in self.logs]
        if self.error is not None:
            lines.append(self.error.headline())
        elif self.paused is not None:
            p = self.paused
            lines.append(
                f"paused: {p.tool}({json.dumps(p.arguments, separators=(',', ':'))}) needs a person's "
                f"approval (approval {p.approval})"
            )
        else:
            lines.append("result: " + json.dumps(self.value, separators=(",", ":"), ensure_ascii=False))
        return "\n".join(lines)

    @classmethod
    def from_json(cls, report: dict[str, Any]) -> Outcome:
        error = report.get("error")
        paused = report.get("paused")
        calls = report.get("calls")
        return cls(
            ok=report["ok"],
            value=report.get("value"),
            logs=tuple(LogLine(**line) for line in report.get("logs", ())),
            error=ExecutionError.from_json(error) if error else None,
            stats=report.get("stats", {}),
            paused=Paused(**paused) if paused else None,
            session=report.get("session"),
            calls=tuple(calls) if calls is not None else None,
            diagnostics=tuple(Diagnostic(**d) for d in report.get("diagnostics", ())),
            hint=report.get("hint"),
            report=report,
        )

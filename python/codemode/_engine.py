"""The engine: a `codemode serve --stdio` process and the JSON-RPC client that drives it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import collections
import itertools
import json
import logging
import os
import shutil
import sysconfig
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Mapping, Sequence, TypeVar, Union, overload

from ._outcome import LogLine, Outcome, Paused
from ._tools import PythonTool, ToolError

F = TypeVar("F", bound=Callable[..., Any])

OnLog = Callable[[LogLine], Union[None, Awaitable[None]]]
Approver = Callable[[Paused], Union[bool, tuple[bool, str], Awaitable[Union[bool, tuple[bool, str]]]]]

log = logging.getLogger("codemode")

# One JSON-RPC message may be large (a program's result, a big tool result): the daemon's
# own limit for a line is 16 MiB, so the client reads lines at least that long.
_LINE_LIMIT = 64 << 20


class CodemodeError(Exception):
    """The daemon refused a request (bad params, no such tool, ...), or the process is gone.
    `code` is the JSON-RPC error code; -1 means the process ended."""

    def __init__(self, message: str, code: int = -1, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


def find_binary() -> str:
    """The `codemode` binary this package installed (in the environment's scripts folder),
    or else the one on PATH."""
    name = "codemode"
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"no codemode binary in {beside.parent} or on PATH; install this package with pip "
            "(its wheel carries the binary) or pass binary= to Engine"
        )
    return found


class Engine:
    """A codemode engine in its own process, with the tools its configuration gives it and the
    Python functions registered with `tool`.

    Use it as an async context manager (or call `start` and `close`)::

        async with Engine(demo=True) as engine:
            @engine.tool("shop")
            def stock_level(item: str) -> int:
                "How many of an item are in stock."
                return 3
            outcome = await engine.execute("return await shop.stock_level({ item: 'pears' })")

    `config` is a `codemode.toml` (limits, upstream MCP servers, approvals, privacy, ...);
    `demo` adds the built-in demo tools; `typecheck` is `"strict"`, `"warn"` or `"off"` (the
    daemon's default is strict, which needs TypeScript 7: `codemode setup`); `schemas` are
    tool definition files as for `codemode serve --schema`. `env` replaces the process's
    environment (default: this process's). The process's diagnostics go to the `codemode`
    logger, one record per line (or to `stderr`, a file or file descriptor, when given); the
    last of them say why when the process ends early.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | None = None,
        *,
        demo: bool = False,
        typecheck: Literal["strict", "warn", "off"] | None = None,
        schemas: Sequence[str | os.PathLike[str]] = (),
        binary: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stderr: Any = None,
    ) -> None:
        args = ["serve", "--stdio"]
        if config is not None:
            args += ["--config", os.fspath(config)]
        if demo:
            args.append("--demo")
        if typecheck is not None:
            args += ["--typecheck", typecheck]
        for schema in schemas:
            args += ["--schema", os.fspath(schema)]
        self._binary = os.fspath(binary) if binary is not None else None
        self._args = args
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._stderr = stderr
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._log_handlers: dict[int, OnLog] = {}
        self._tools: dict[tuple[str, str], PythonTool] = {}
        # Tools declared with the decorator, sent before the next request.
        self._unsent: list[tuple[str, PythonTool]] = []
        self._descriptions: dict[str, str] = {}
        # Held while tools are being sent, so that no request overtakes their registration.
        self._registering = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed_because: str | None = None
        self._stderr_reader: asyncio.Task[None] | None = None
        self._last_words: collections.deque[str] = collections.deque(maxlen=20)
        self.server_info: dict[str, Any] = {}
        self.limits: dict[str, Any] = {}

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Starts the process and says hello; `server_info` and `limits` come from its answer."""
        if self._process is not None:
            raise RuntimeError("this engine has already been started")
        binary = self._binary or find_binary()
        self._process = await asyncio.create_subprocess_exec(
            binary,
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr if self._stderr is not None else asyncio.subprocess.PIPE,
            env=self._env,
            cwd=self._cwd,
            limit=_LINE_LIMIT,
        )
        if self._process.stderr is not None:
            self._stderr_reader = asyncio.create_task(self._forward_stderr(self._process.stderr))
        self._reader = asyncio.create_task(self._read())
        try:
            hello = await self.request("initialize", {"clientInfo": {"name": "codemode-python"}})
        except BaseException:
            await self.close()
            raise
        self.server_info = hello["serverInfo"]
        self.limits = hello.get("limits", {})

    async def close(self) -> None:
        """Ends the process: closes its input, which ends `serve --stdio` once running programs
        finish; waits up to 10 s, then kills it."""
        process = self._process
        if process is None or process.returncode is not None:
            await self._stop_reader()
            return
        if process.stdin is not None:
            with contextlib.suppress(ConnectionError):
                process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        for reader in (self._reader, self._stderr_reader):
            if reader is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        for task in list(self._tasks):
            task.cancel()

    # Tools ----------------------------------------------------------------------------------

    @overload
    def tool(self, namespace: str, func: F, /) -> F: ...

    @overload
    def tool(
        self,
        namespace: str,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        approval: bool = False,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        namespace: str,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        approval: bool = False,
    ) -> Any:
        """Declares a Python function (sync or async) as the tool `namespace.name` (the
        function's name by default). Its JSON Schema comes from its type hints, pydantic
        models included; a function whose one parameter is a model takes the model's fields
        as its arguments. Its docstring is the description. With `approval`, each call waits
        for a person's decision (see `execute`'s `approve` and `resume`), as tools matching
        the configuration's `[approvals]` do. Programs see it from the next request on (or
        call `register` to send it now)."""

        def declare(f: F) -> F:
            self._unsent.append((namespace, PythonTool.from_function(f, name, description, approval)))
            return f

        return declare(func) if func is not None else declare

    async def register(
        self, namespace: str, *funcs: Callable[..., Any], description: str | None = None
    ) -> list[str]:
        """Registers functions as tools of `namespace` now, with an optional description of the
        namespace; returns the names programs call them by."""
        if not funcs:
            raise ValueError(f"register {namespace!r}: give at least one function")
        self._unsent += [(namespace, PythonTool.from_function(f)) for f in funcs]
        if description is not None:
            self._descriptions[namespace] = description
        async with self._registering:
            return await self._send_tools()

    async def _send_tools(self) -> list[str]:
        names: list[str] = []
        while self._unsent:
            namespace = self._unsent[0][0]
            tools = [t for ns, t in self._unsent if ns == namespace]
            self._unsent = [u for u in self._unsent if u[0] != namespace]
            params: dict[str, Any] = {"namespace": namespace, "tools": [t.definition() for t in tools]}
            if namespace in self._descriptions:
                params["description"] = self._descriptions.pop(namespace)
            if approve := [t.name for t in tools if t.approval]:
                params["approve"] = approve
            answer = await self._call("tools/register", params)
            for t in tools:
                self._tools[(namespace, t.name)] = t
            names += [f"{namespace}.{n}" for n in answer["tools"]]
        return names

    # Programs -------------------------------------------------------------------------------

    async def execute(
        self,
        code: str,
        *,
        session: str | None = None,
        shared: bool = False,
        limits: Mapping[str, Any] | None = None,
        tokens: bool = False,
        calls: bool = False,
        on_log: OnLog | None = None,
        approve: Approver | None = None,
    ) -> Outcome:
        """Runs a program and returns its outcome.

        `session` runs it in a named session (state stays for the next program with the same
        name; `shared` makes the name the daemon's, not only this engine's); `limits` may
        tighten the configured ones (`timeout_ms`, `memory_mb`, `typecheck`, ...); `tokens`
        counts tokens exactly instead of estimating; `calls` adds the audit record of its tool
        calls. `on_log` (sync or async) receives each console line as the program logs it.
        `approve`, when given, decides each call that needs a person's approval (return
        `True`, `False` or `(False, "reason")`); without it such a call pauses the execution:
        the outcome's `paused` names it, for `resume`.
        """
        params: dict[str, Any] = {"code": code}
        if session is not None:
            params["session"] = session
            params["shared"] = shared
        if limits is not None:
            params["limits"] = dict(limits)
        if tokens:
            params["tokens"] = True
        if calls:
            params["calls"] = True
        outcome = Outcome.from_json(await self.request("code/execute", params, on_log=on_log))
        return await self._decide(outcome, approve, tokens, calls, on_log)

    async def resume(
        self,
        approval: str,
        approve: bool,
        reason: str | None = None,
        *,
        tokens: bool = False,
        calls: bool = False,
        on_log: OnLog | None = None,
    ) -> Outcome:
        """Decides a paused call: approved, it runs and the program goes on; rejected, the
        program's call throws an Error with code `"rejected"` and the reason. Returns the
        execution's next outcome (its end, or its next pause)."""
        params: dict[str, Any] = {"approval": approval, "approve": approve}
        if reason is not None:
            params["reason"] = reason
        if tokens:
            params["tokens"] = True
        if calls:
            params["calls"] = True
        return Outcome.from_json(await self.request("code/resume", params, on_log=on_log))

    async def _decide(
        self, outcome: Outcome, approve: Approver | None, tokens: bool, calls: bool, on_log: OnLog | None
    ) -> Outcome:
        while approve is not None and outcome.paused is not None:
            answer = approve(outcome.paused)
            if inspect.isawaitable(answer):
                answer = await answer
            allowed, reason = answer if isinstance(answer, tuple) else (answer, None)
            outcome = await self.resume(
                outcome.paused.approval, bool(allowed), reason, tokens=tokens, calls=calls, on_log=on_log
            )
        return outcome

    async def close_session(self, session: str, shared: bool = False) -> bool:
        """Ends a session; true when there was one."""
        answer = await self.request("session/close", {"session": session, "shared": shared})
        return bool(answer["closed"])

    async def prompt(self, session: bool = False) -> str:
        """The instructions an agent needs to write programs for this engine, and the index of
        its namespaces (registered Python tools included)."""
        return str((await self.request("prompt", {"session": session}))["prompt"])

    async def describe(self, *names: str) -> str:
        """TypeScript declarations of tools or namespaces (`"shop"`, `"shop.stock_level"`)."""
        return str((await self.request("tools/describe", {"names": list(names)}))["declarations"])

    async def search(self, query: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Tools matching a description, best first."""
        params: dict[str, Any] = {"query": query}
        if limit is not None:
            params["limit"] = limit
        return list((await self.request("tools/search", params))["hits"])

    async def request(self, method: str, params: Mapping[str, Any], *, on_log: OnLog | None = None) -> Any:
        """Sends any daemon request (after the tools declared since the last one) and returns
        its result; raises `CodemodeError` with the daemon's code and message."""
        if self._unsent or self._registering.locked():
            async with self._registering:
                await self._send_tools()
        return await self._call(method, params, on_log)

    # The connection -------------------------------------------------------------------------

    async def _call(self, method: str, params: Mapping[str, Any], on_log: OnLog | None = None) -> Any:
        if self._closed_because is not None:
            raise CodemodeError(self._closed_because)
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        if on_log is not None:
            self._log_handlers[request_id] = on_log
        try:
            try:
                await self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": dict(params)})
            except BaseException:
                # The reader may have failed the future too; the send's error says the same.
                if future.done() and not future.cancelled():
                    future.exception()
                raise
            return await future
        finally:
            self._waiting.pop(request_id, None)
            self._log_handlers.pop(request_id, None)

    async def _send(self, message: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.stdin is None:
            raise RuntimeError("the engine is not started: use `async with Engine(...)` or `await engine.start()`")
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n"
        async with self._write_lock:
            try:
                process.stdin.write(line.encode())
                await process.stdin.drain()
            except ConnectionError as e:
                # The process ended: the reader is about to say how (its status, its last
                # lines), which says more than the broken pipe.
                if self._reader is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._reader), 5)
                raise CodemodeError(self._closed_because or f"the codemode process is gone: {e}") from e

    async def _forward_stderr(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self._last_words.append(text)
            log.info("%s", text)

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        why = "the codemode process closed its output"
        try:
            while line := await stdout.readline():
                message = json.loads(line)
                if "method" in message:
                    if "id" in message:
                        self._spawn(self._serve_call(message))
                    elif message["method"] == "code/log":
                        self._log(message["params"])
                else:
                    self._answer(message)
        except Exception as e:  # a broken line or stream: everyone waiting hears why
            why = f"reading from the codemode process failed: {e!r}"
        finally:
            code = await self._process.wait() if self._process.stdout.at_eof() else None
            if code is not None:
                why += f" (it exited with status {code})"
                if self._stderr_reader is not None:
                    # Its last lines say why; they are complete once its standard error closes.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._stderr_reader), 1)
                if code != 0 and self._last_words:
                    why += ": " + "\n".join(self._last_words)
            self._closed_because = why
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(CodemodeError(why))

    def _answer(self, message: dict[str, Any]) -> None:
        future = self._waiting.get(message.get("id"))  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if "error" in message:
            e = message["error"]
            future.set_exception(CodemodeError(e.get("message", ""), e.get("code", 0), e.get("data")))
        else:
            future.set_result(message.get("result"))

    def _log(self, params: dict[str, Any]) -> None:
        handler = self._log_handlers.get(params.get("id"))  # type: ignore[arg-type]
        if handler is None:
            return
        # A failing callback is the caller's bug, not the connection's: it is logged, and the
        # reader goes on serving every other request.
        try:
            result = handler(LogLine(params["level"], params["message"]))
            if inspect.isawaitable(result):
                self._spawn(self._logged(result))
        except Exception:
            log.exception("an on_log callback failed")

    async def _logged(self, work: Awaitable[Any]) -> None:
        try:
            await work
        except Exception:
            log.exception("an on_log callback failed")

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_call(self, message: dict[str, Any]) -> None:
        """Answers the daemon's `tools/call` with the Python function's result or its error."""
        params = message.get("params") or {}
        namespace, name = str(params.get("namespace")), str(params.get("name"))
        tool = self._tools.get((namespace, name))
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        try:
            if tool is None:
                raise ToolError(f"no Python tool {namespace}.{name}", "not_found")
            reply["result"] = await tool.call(params.get("arguments"))
        except ToolError as e:
            reply["error"] = {"code": -32000, "message": e.message, "data": {"code": e.code}}
        except Exception as e:
            reply["error"] = {
                "code": -32000,
                "message": f"{type(e).__name__}: {e}",
                "data": {"code": "tool_error"},
            }
        with contextlib.suppress(CodemodeError):
            await self._send(reply)

"""codemode for Python: an agent's TypeScript runs in a sandbox beside your tools.

The wheel carries the `codemode` binary; `Engine` runs it as `codemode serve --stdio` and
speaks its JSON-RPC. Tools come from the configuration (upstream MCP servers, the demo) and
from plain Python functions (`Engine.tool`). Adapters for agent frameworks are in
`codemode.openai_agents` and `codemode.pydantic_ai` (extras `openai-agents`, `pydantic-ai`).
"""

from ._engine import CodemodeError, Engine, find_binary
from ._outcome import Diagnostic, ExecutionError, LogLine, Outcome, Paused
from ._tools import ToolError

__all__ = [
    "CodemodeError",
    "Diagnostic",
    "Engine",
    "ExecutionError",
    "LogLine",
    "Outcome",
    "Paused",
    "ToolError",
    "find_binary",
]

"""Approves and rejects codemode's approval requests through MCP elicitation, as a person's
client would, with the official MCP Python SDK, and prints what it sees.

Run by tests/all/approvals.rs:
    python3 mcp_approval.py PATH_TO_CODEMODE CONFIG
"""
import asyncio
import json
import sys

from mcp import Client, StdioServerParameters
from mcp import types

asked = []


async def decide(context, params):
    """Approves the first call it is asked about, rejects the others with a reason."""
    asked.append(params.message)
    if len(asked) == 1:
        return types.ElicitResult(action="accept", content={"approve": True})
    return types.ElicitResult(action="accept", content={"approve": False, "reason": "not row 2"})


async def main(codemode, config, mode):
    """One client: mode "legacy" speaks the session protocol (codemode sends elicitation/create
    while the call runs), "auto" the 2026-07-28 one (the call's result asks, the client calls again)."""
    asked.clear()
    print("mode:", mode)
    server = StdioServerParameters(command=codemode, args=["mcp", "--demo", "--config", config])
    async with Client(server, elicitation_callback=decide, mode=mode) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(sorted(t.name for t in tools.tools)))
        program = """
            await sheets.updateRow({ sheetId: "sales", id: 1, fields: { status: "won" } });
            let second = "ran";
            try { await sheets.updateRow({ sheetId: "sales", id: 2, fields: { status: "won" } }) }
            catch (e) { second = e.code + ": " + e.message }
            const rows = await sheets.getRows({ sheetId: "sales", limit: 3 });
            return { second, statuses: rows.map((r) => r.status) };
        """
        ran = await client.call_tool("execute_code", {"code": program})
        print("execute:", ran.is_error, json.dumps(ran.structured_content["value"], sort_keys=True))
        print("paused:", "paused" in ran.structured_content)
        for message in asked:
            print("asked:", message)


for mode in ["legacy", "auto"]:
    asyncio.run(main(sys.argv[1], sys.argv[2], mode))

"""Drives `codemode mcp --demo` with the official MCP Python SDK and prints what it sees.

Run by tests/all/mcp.rs, over stdio or over streamable HTTP:
    python3 mcp_client.py PATH_TO_CODEMODE
    python3 mcp_client.py http://127.0.0.1:PORT/mcp
"""
import asyncio
import json
import sys

from mcp import Client, StdioServerParameters


async def main(target):
    server = target if target.startswith("http") else StdioServerParameters(command=target, args=["mcp", "--demo"])
    async with Client(server) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(sorted(t.name for t in tools.tools)))
        execute = next(t for t in tools.tools if t.name == "execute_code")
        print("prompt in execute_code:", "- sheets (3 tools)" in execute.description)

        hits = await client.call_tool("search_tools", {"query": "read rows", "detail": "name", "limit": 2})
        print("search:", [h["path"] for h in hits.structured_content["hits"]])

        described = await client.call_tool("describe_tools", {"names": ["sheets.getRows"]})
        print("describe:", "function getRows(args: GetRowsInput): Promise<GetRowsOutput>;" in described.content[0].text)

        program = """
            const rows = await sheets.getRows({ sheetId: "sales" });
            const churned = rows.filter((r) => r.status === "churned");
            console.log("rows", rows.length);
            return { churned: churned.length, revenue: churned.reduce((s, r) => s + r.amount, 0) };
        """
        ran = await client.call_tool("execute_code", {"code": program})
        print("execute:", ran.is_error, json.dumps(ran.structured_content["value"], sort_keys=True))
        print("text:", ran.content[0].text.splitlines()[0])

        failed = await client.call_tool("execute_code", {"code": "const x: number = 1;\nthrow new TypeError('bad ' + x)"})
        print("failure:", failed.is_error, failed.structured_content["error"]["kind"], failed.content[0].text)


asyncio.run(main(sys.argv[1]))

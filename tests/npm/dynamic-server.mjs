// An MCP server whose tool list grows while it runs: `add_tool({name})` adds a tool that
// answers "I am <name>" and sends notifications/tools/list_changed. The upstream tests use it to
// show that codemode lists the tools again. Built on the official TypeScript SDK.
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const tools = [
  {
    name: "add_tool",
    description: "Adds a tool that answers with its own name.",
    inputSchema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
  },
];
const server = new Server(
  { name: "dynamic", version: "1.0.0" },
  { capabilities: { tools: { listChanged: true } }, instructions: "Tools that appear while it runs." },
);
server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
server.setRequestHandler(CallToolRequestSchema, async (request) => {
  const { name, arguments: args } = request.params;
  if (name === "add_tool") {
    tools.push({ name: args.name, description: `Answers ${args.name}.`, inputSchema: { type: "object", properties: {} } });
    await server.sendToolListChanged();
    return { content: [{ type: "text", text: `added ${args.name}` }] };
  }
  if (tools.some((t) => t.name === name)) {
    return { content: [{ type: "text", text: `I am ${name}` }] };
  }
  return { content: [{ type: "text", text: `no tool ${name}` }], isError: true };
});
await server.connect(new StdioServerTransport());

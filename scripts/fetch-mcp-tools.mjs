// Fetches the `tools/list` result of real MCP servers from the npm registry and writes one JSON
// file per server into tests/fixtures/typegen/real/. Run by hand (not by the tests) when a pinned
// version changes:   node scripts/fetch-mcp-tools.mjs
// The committed JSON is the fixture; the tests never reach the network for it.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const SERVERS = [
  { name: "everything", pkg: "@modelcontextprotocol/server-everything@2026.8.31", args: ["stdio"] },
  { name: "filesystem", pkg: "@modelcontextprotocol/server-filesystem@2026.8.31", args: ["DIR"] },
  { name: "memory", pkg: "@modelcontextprotocol/server-memory@2026.8.31", args: [] },
  // The GitHub server lists its tools without a token; it needs one only to call them.
  { name: "github", pkg: "@modelcontextprotocol/server-github@2025.4.8", args: [] },
];

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "codemode-fetch-"));
execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefix", work, ...SERVERS.map((s) => s.pkg)], {
  stdio: "inherit",
});

function toolsList(server) {
  const pkgName = server.pkg.slice(0, server.pkg.lastIndexOf("@"));
  const meta = JSON.parse(execFileSync("node", ["-p", `JSON.stringify(require("${pkgName}/package.json"))`], { cwd: work }));
  const bin = typeof meta.bin === "string" ? meta.bin : Object.values(meta.bin)[0];
  const entry = join(work, "node_modules", pkgName, bin);
  const args = server.args.map((a) => (a === "DIR" ? work : a));
  const child = spawn("node", [entry, ...args], { stdio: ["pipe", "pipe", "inherit"] });
  const send = (msg) => child.stdin.write(JSON.stringify({ jsonrpc: "2.0", ...msg }) + "\n");
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`${server.name}: no tools/list answer in 30 s`)), 30000);
    child.stdout.on("data", (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        const msg = JSON.parse(line);
        if (msg.id === 1) {
          send({ method: "notifications/initialized" });
          send({ id: 2, method: "tools/list", params: {} });
        } else if (msg.id === 2) {
          clearTimeout(timer);
          child.kill();
          if (msg.error) reject(new Error(`${server.name}: ${JSON.stringify(msg.error)}`));
          else resolve({ server: server.pkg, ...msg.result });
        }
      }
    });
    send({
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "codemode-fetch", version: "0" } },
    });
  });
}

for (const server of SERVERS) {
  const result = await toolsList(server);
  const out = join(root, "tests/fixtures/typegen/real", `${server.name}.json`);
  writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
  console.log(`${server.name}: ${result.tools.length} tools -> ${out}`);
}

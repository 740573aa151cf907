// A peer runtime for examples/compare.rs, speaking newline-delimited JSON on stdio. Runs under
// node (`node peer.mjs vm`: a fresh vm.createContext per execution) or deno (`deno run peer.mjs
// worker`: a fresh Web Worker per execution; `deno run peer.mjs once`: this process is the one
// execution; `deno run --allow-read --allow-env --allow-sys peer.mjs vercel`: Vercel's AI SDK code mode, which needs Node 22.13's
// APIs that Deno provides). Rust → peer: {"run", "code"}; peer → Rust: {"call", "id", "args"} answered by
// {"id", "result"}: the tools live in the Rust host, as they do for codemode. At the end the
// peer sends {"done", "first_ns", "total_ns"}: time to the program's first instruction, and to
// its result.
import process from "node:process";
import readline from "node:readline";

const mode = process.argv[2];
const out = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");
const now = () => process.hrtime.bigint();
const AsyncFunction = (async () => {}).constructor;

// Tool calls go to the Rust host; `answer` routes its replies.
const pending = new Map();
let nextId = 1;
const call = (name) => (args) =>
  new Promise((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    out({ call: name, id, args });
  });
const answer = (msg) => {
  const resolve = pending.get(msg.id);
  pending.delete(msg.id);
  resolve(msg.result);
};

async function inVm(code) {
  const vm = await import("node:vm");
  const t0 = now();
  const context = vm.createContext({ host: { getRows: call("getRows"), echo: call("echo") } });
  const fn = vm.runInContext(`(async () => { __first(); ${code}\n})`, Object.assign(context, { __first: () => (first = now()) }));
  let first = 0n;
  const result = await fn();
  return { done: result, first_ns: Number(first - t0), total_ns: Number(now() - t0) };
}

function inWorker(code) {
  return new Promise((resolve) => {
    const t0 = now();
    let first = 0n;
    const worker = new Worker(WORKER_URL, { type: "module" });
    worker.onmessage = async ({ data }) => {
      if (data.first) first = now();
      else if (data.call) worker.postMessage({ id: data.id, result: await call(data.call)(data.args) });
      else {
        worker.terminate();
        resolve({ done: data.done, first_ns: Number(first - t0), total_ns: Number(now() - t0) });
      }
    };
    worker.postMessage({ code });
  });
}

// Resident memory added by `n` live sandboxes (each has run a program and is still alive),
// divided by `n`.
async function perSandbox(n) {
  const before = process.memoryUsage().rss;
  const live = [];
  if (mode === "vm") {
    const vm = await import("node:vm");
    for (let i = 0; i < n; i++) {
      const context = vm.createContext({});
      vm.runInContext("globalThis.x = 1 + 1", context);
      live.push(context);
    }
  } else {
    for (let i = 0; i < n; i++) {
      const worker = new Worker(WORKER_URL, { type: "module" });
      await new Promise((resolve) => {
        worker.onmessage = ({ data }) => data.first && resolve();
        worker.postMessage({ code: "await new Promise(() => {})" });
      });
      live.push(worker);
    }
  }
  const after = process.memoryUsage().rss;
  for (const w of live) w.terminate?.();
  return Math.round((after - before) / n);
}

// Vercel's AI SDK code mode (`@ai-sdk/code-mode`: QuickJS compiled to WebAssembly, run in a
// worker thread by the package itself): its tools are AI SDK tools whose `execute` asks the
// Rust host, and programs call them as `tools.NAME` instead of `host.NAME`. It has no hook for
// the program's first instruction; it refuses more than 256 tool calls in one run and more than
// 32 in flight.
let vercel = null;
async function inVercel(code) {
  if (vercel === null) {
    const { experimental_runCodeMode: runCodeMode } = await import("@ai-sdk/code-mode");
    const { tool, jsonSchema } = await import("ai");
    const tools = {};
    for (const name of ["getRows", "echo"]) {
      tools[name] = tool({ description: name, inputSchema: jsonSchema({ type: "object" }), execute: call(name) });
    }
    vercel = { runCodeMode, tools };
  }
  const t0 = now();
  const done = await vercel.runCodeMode({ js: code.replaceAll("host.", "tools."), tools: vercel.tools });
  return { done, total_ns: Number(now() - t0) };
}

// The worker's own code, run from a blob URL so the worker needs no read permission (and,
// like the main process, has none).
function workerMain() {
  const AsyncFunction = (async () => {}).constructor;
  const waiting = new Map();
  let next = 1;
  const host = {};
  for (const name of ["getRows", "echo"]) {
    host[name] = (args) => new Promise((resolve) => { const id = next++; waiting.set(id, resolve); self.postMessage({ call: name, id, args }); });
  }
  self.onmessage = async ({ data }) => {
    if (data.code !== undefined) {
      const fn = new AsyncFunction("host", "__first", `__first(); ${data.code}`);
      self.postMessage({ done: await fn(host, () => self.postMessage({ first: true })) });
    } else {
      const resolve = waiting.get(data.id);
      waiting.delete(data.id);
      resolve(data.result);
    }
  };
}
const WORKER_URL = typeof Blob === "undefined" ? null
  : URL.createObjectURL(new Blob([`(${workerMain})()`], { type: "application/javascript" }));

{
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("line", async (line) => {
    const msg = JSON.parse(line);
    if (msg.memory !== undefined) return out({ per_sandbox_bytes: await perSandbox(msg.memory) });
    if (msg.code === undefined) return answer(msg);
    if (mode === "vm") out(await inVm(msg.code));
    else if (mode === "worker") out(await inWorker(msg.code));
    else if (mode === "vercel") out(await inVercel(msg.code));
    else {
      const t0 = now();
      let first = 0n;
      const fn = new AsyncFunction("host", "__first", `__first(); ${msg.code}`);
      const done = await fn({ getRows: call("getRows"), echo: call("echo") }, () => (first = now()));
      // Stays alive (idle) so the host can read its memory; the host ends it.
      out({ done, first_ns: Number(first - t0), total_ns: Number(now() - t0) });
    }
  });
}

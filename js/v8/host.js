// The V8 engine's host: one Node.js process per sandbox thread of the engine, started by
// src/v8.rs with this script as `node -e` and its end of a socket pair on descriptor 3. It
// speaks the sealed workers' frames (src/sandbox/wire.rs): the same host loop answers both.
//
// The main thread only routes. Programs run on one worker thread, a V8 isolate with its own
// heap limit (`resourceLimits`), each in a fresh `vm` context (a realm: its own globals and
// built-ins) made ahead of demand; a session's context lives in an isolate of its own. A
// program that breaches the heap limit ends its isolate alone (ERR_WORKER_OUT_OF_MEMORY), not
// the process; a deadline or a cancellation terminates the isolate. In each case this thread
// ends the execution (`Stopped`) with the lines it had logged, and the next one gets a new
// isolate.
//
// The worker writes its frames to the socket itself and blocks on Atomics.wait for answers,
// which this thread reads and hands over through a MessagePort: an answer costs one wake-up
// of the worker, not a trip through its event loop.
"use strict";

const { Worker, MessageChannel, receiveMessageOnPort, isMainThread, workerData } = require("node:worker_threads");
const fs = require("node:fs");

const FD = 3;

// Writes one frame: u32 header length, u32 body length (little-endian), JSON header, body.
// The socket is non-blocking (the main thread reads it through libuv): a full buffer is
// waited out.
function writeFrame(header, body, wait) {
  // A lone surrogate would be an escape JSON readers refuse: it becomes U+FFFD, as the
  // QuickJS sandboxes make it.
  const head = Buffer.from(JSON.stringify(header, (_, v) => (typeof v === "string" ? v.toWellFormed() : v)));
  const rest = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  const frame = Buffer.allocUnsafe(8 + head.length + rest.length);
  frame.writeUInt32LE(head.length, 0);
  frame.writeUInt32LE(rest.length, 4);
  head.copy(frame, 8);
  rest.copy(frame, 8 + head.length);
  let sent = 0;
  while (sent < frame.length) {
    try {
      sent += fs.writeSync(FD, frame, sent, frame.length - sent);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
      wait();
    }
  }
}

if (isMainThread) main();
else isolate();

// -- the main thread ------------------------------------------------------------------------

function main() {
  const net = require("node:net");
  const [source, prelude, version, hooks] = process.argv.slice(1);
  // `state[0]` of an isolate: 0 idle, n > 0 it runs run n, -n this thread stopped run n.
  // `state[1]` counts frames handed to it.
  let pool = null; // the isolate fresh contexts come from
  const held = new Map(); // sandbox id -> the isolate that holds it (a session's, a paused run's)
  let runs = 0;
  let running = null; // { isolate, run, timer, logs, why }
  let memory = 64 << 20;
  const CANCEL_GRACE = 100;
  // The tool names, sent when they change: a new isolate needs them too.
  let names = null;

  const sleep = new Int32Array(new SharedArrayBuffer(4));
  const wait = () => Atomics.wait(sleep, 0, 0, 1);

  function spawn(memoryBytes) {
    const { port1, port2 } = new MessageChannel();
    const state = new Int32Array(new SharedArrayBuffer(16));
    const mb = Math.max(8, Math.ceil(memoryBytes / (1 << 20)));
    const worker = new Worker(source, {
      eval: true,
      workerData: { port: port2, state, prelude, version, hooks: hooks === "1" },
      transferList: [port2],
      // The stack of the isolate's thread: V8's parser recurses on a long flat chain
      // (`1 + 1 + …` a hundred thousand times), which QuickJS parses.
      resourceLimits: { maxOldGenerationSizeMb: mb, maxYoungGenerationSizeMb: Math.min(16, mb), stackSizeMb: 32 },
      stdout: true,
      stderr: true,
      env: {},
    });
    const isolate = { worker, port: port1, state, memoryBytes, dead: false, error: null };
    // Each line the program keeps, so a run this thread stops still returns its logs; or
    // the limit the program passed, as the worker ends itself.
    worker.on("message", (message) => {
      if (!running || running.isolate !== isolate) return;
      if (message.stop === undefined) return void running.logs.push(message);
      running.why = message.stop;
      running.logs = message.logs;
      running.truncated = message.truncated;
    });
    worker.on("error", (e) => {
      isolate.error = e;
    });
    worker.on("exit", () => ended(isolate));
    return isolate;
  }

  function ended(isolate) {
    isolate.dead = true;
    if (pool === isolate) pool = null;
    if (!running || running.isolate !== isolate) {
      for (const [id, holder] of held) if (holder === isolate) held.delete(id);
      return;
    }
    const { run, logs, why, truncated } = running;
    clearTimeout(running.timer);
    running = null;
    // The worker wrote its run's last frame itself unless the state still names the run.
    const was = Atomics.compareExchange(isolate.state, 0, run, -run);
    if (was !== run && was !== -run) return;
    const oom = isolate.error !== null && isolate.error.code === "ERR_WORKER_OUT_OF_MEMORY";
    const kind = why ?? (oom ? "memory_limit" : "internal");
    const cause = isolate.error === null ? "it exited" : isolate.error.message;
    const message = kind === "internal" ? `the V8 isolate running it ended (${cause})` : null;
    // A session's state ended with its isolate: the host replaces the session's sandbox.
    const session = isolate.session === true && !["timeout", "memory_limit", "internal"].includes(kind);
    for (const [id, holder] of held) if (holder === isolate) held.delete(id);
    writeFrame({ t: "stopped", kind, logs, message, logs_truncated: truncated === true, lost: session }, undefined, wait);
  }

  function deliver(isolate, frame) {
    isolate.port.postMessage(frame);
    Atomics.add(isolate.state, 1, 1);
    Atomics.notify(isolate.state, 1);
  }

  // Ends the running program from outside (run `only`, if given): the isolate is terminated.
  function stop(why, only) {
    if (!running || (only !== undefined && running.run !== only)) return;
    const { isolate, run } = running;
    if (Atomics.compareExchange(isolate.state, 0, run, -run) !== run) return;
    running.why = why;
    isolate.worker.terminate();
  }

  function warm(memoryBytes) {
    memory = memoryBytes;
    if (pool && pool.memoryBytes === memoryBytes) return pool;
    // An isolate's heap limit is fixed when it starts: another limit needs another isolate.
    if (pool && ![...held.values()].includes(pool)) pool.worker.terminate();
    pool = spawn(memoryBytes);
    return pool;
  }

  function begin(isolate, frame, deadlineIn) {
    runs += 1;
    if (running) clearTimeout(running.timer);
    Atomics.store(isolate.state, 0, runs);
    running = { isolate, run: runs, logs: [], why: null, timer: null };
    const ms = deadlineIn.secs * 1000 + deadlineIn.nanos / 1e6;
    running.timer = setTimeout(() => stop("timeout"), Math.max(0, ms));
    deliver(isolate, frame);
  }

  function onFrame(header, body) {
    switch (header.t) {
      case "run": {
        if (header.names === null) header.names = names;
        else names = header.names;
        let isolate = held.get(header.sandbox);
        if (isolate === undefined) {
          if (header.session === null) isolate = warm(header.limits.memory_bytes);
          else {
            // A session's context lives in an isolate of its own: another program's breach
            // must not end it. Its heap limit is the session's, across its executions.
            isolate = spawn(Math.min(header.limits.memory_bytes, header.session));
            isolate.session = true;
            held.set(header.sandbox, isolate);
          }
        }
        begin(isolate, { header }, header.deadline_in);
        return;
      }
      case "resume": {
        const isolate = held.get(header.sandbox) ?? pool;
        if (isolate === null) {
          writeFrame({ t: "stopped", kind: "internal", logs: [], message: "the paused execution's V8 isolate is gone" }, undefined, wait);
          return;
        }
        begin(isolate, { header }, header.deadline_in);
        return;
      }
      case "build":
        // The pool isolate makes its contexts ahead of demand itself; here it is only
        // started again if it has ended.
        warm(memory);
        writeFrame({ t: "built", error: null }, undefined, wait);
        return;
      case "drop": {
        const isolate = held.get(header.sandbox) ?? pool;
        held.delete(header.sandbox);
        if (isolate === null) return;
        if (isolate !== pool && ![...held.values()].includes(isolate)) isolate.worker.terminate();
        else deliver(isolate, { header });
        return;
      }
      case "cancel": {
        // A program waiting on the host hears of it from its next answer and ends itself,
        // keeping a session's state; one that does not within a moment is terminated.
        if (running) setTimeout(stop, CANCEL_GRACE, "cancelled", running.run);
        return;
      }
      case "next":
      case "text":
        // An answer to the running program; or to one stopped here, which nobody awaits.
        if (!running) return;
        // A result larger than the isolate's whole heap cannot be read into it: reading it
        // would end the process, not the isolate.
        if (body.length > running.isolate.memoryBytes) return void stop("memory_limit");
        deliver(running.isolate, { header, body });
        return;
    }
  }

  let pending = Buffer.alloc(0);
  // A large frame arrives in many chunks: they are joined once it is whole.
  let chunks = [];
  let buffered = 0;
  let wanted = 8;
  const sock = new net.Socket({ fd: FD, readable: true, writable: false });
  sock.on("data", (chunk) => {
    chunks.push(chunk);
    buffered += chunk.length;
    if (buffered < wanted) return;
    pending = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    chunks = [];
    buffered = 0;
    wanted = 8;
    for (;;) {
      if (pending.length < 8) break;
      const need = 8 + pending.readUInt32LE(0) + pending.readUInt32LE(4);
      if (pending.length < need) {
        wanted = need;
        break;
      }
      const head = pending.readUInt32LE(0);
      const len = pending.readUInt32LE(4);
      const header = JSON.parse(pending.toString("utf8", 8, 8 + head));
      const body = pending.toString("utf8", 8 + head, 8 + head + len);
      pending = pending.subarray(8 + head + len);
      onFrame(header, body);
    }
    if (pending.length > 0) {
      chunks.push(pending);
      buffered = pending.length;
    }
  });
  // The host hung up: nothing here is worth keeping.
  sock.on("end", () => process.exit(0));
  sock.on("error", () => process.exit(0));

  warm(memory);
  // What sealed the process was done before it started: the host knows it already.
  const seal = { seccomp: false, namespaces: [], namespaces_refused: null, landlock: "", rlimits: [] };
  writeFrame({ t: "hello", seal }, undefined, wait);
}

// -- the isolate ----------------------------------------------------------------------------

function isolate() {
  const vm = require("node:vm");
  const util = require("node:util");
  const { port, state, prelude, version, hooks } = workerData;
  const { parentPort } = require("node:worker_threads");
  const sleep = new Int32Array(new SharedArrayBuffer(4));
  const wait = () => Atomics.wait(sleep, 0, 0, 1);
  const send = (header, body) => writeFrame(header, body, wait);

  // Waits for the main thread's next frame for this isolate.
  let seen = 0;
  function receive() {
    for (;;) {
      const m = receiveMessageOnPort(port);
      if (m !== undefined) return m.message;
      Atomics.wait(state, 1, seen);
      seen = Atomics.load(state, 1);
    }
  }

  const EMPTY = new vm.Script("");
  // Built-ins no program gets, as in the QuickJS sandboxes: binary buffers and shared memory
  // (V8's heap limit does not count an ArrayBuffer's memory: without them, the limit covers
  // everything a program can allocate), WebAssembly, and V8's own `console`.
  const REMOVED = [
    "ArrayBuffer", "SharedArrayBuffer", "DataView", "Atomics", "WebAssembly", "Int8Array", "Uint8Array",
    "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array", "Float16Array",
    "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "console",
  ];
  const GUARD = `(function (host, removed) {
    "use strict";
    for (const name of removed) delete globalThis[name];
    const E = Error, T = TypeError, P = Promise, apply = Reflect.apply;
    // Nothing of the host's realm reaches the program: its functions are called here only, an
    // error they throw is replaced, and what they return is a primitive. (No spread: the
    // program may have replaced the array iterator.)
    const guard = (f) => function () {
      try { return apply(f, undefined, arguments); } catch { throw new E("the sandbox's host failed"); }
    };
    const call = guard(host.call), log = guard(host.log), timer = guard(host.timer);
    const clearTimer = guard(host.clearTimer), unknownTool = guard(host.unknownTool), skill = guard(host.skill);
    // What QuickJS has built in and a V8 context lacks.
    const define = (name, value) => Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
    const now = guard(host.now);
    define("performance", Object.freeze({ __proto__: null, now() { return now(); } }));
    define("queueMicrotask", function queueMicrotask(callback) {
      if (typeof callback !== "function") throw new TypeError("queueMicrotask: callback must be a function");
      (async () => { await undefined; callback(); })();
    });
    return {
      call(target, args, site) {
        return new P((resolve, reject) => call(target, args, site, resolve, reject));
      },
      log, timer, clearTimer, unknownTool,
      skill(name) {
        const f = skill(name);
        if (f === undefined) throw new T("skills." + name + " is not a saved program");
        return f;
      },
      version: host.version,
    };
  })`;
  // Watches a promise: `{ state, value }` as it settles.
  // (\`await\`, not \`then\`: the program may replace \`then\` or the species.)
  const WATCH = `(promise) => {
    "use strict";
    const watch = { __proto__: null, state: "pending", value: undefined };
    (async () => {
      try { watch.value = await promise; watch.state = "fulfilled"; }
      catch (e) { watch.value = e; watch.state = "rejected"; }
    })();
    return watch;
  }`;
  const preludeSource = `(function () {"use strict";\n${prelude}\nreturn init;\n})()`;

  // One run's state; `null` between runs.
  let exec = null;
  // The context being used by the run: its settle functions.
  const contexts = new Map(); // sandbox id -> sandbox
  let spare = null;

  function build() {
    const sandbox = { context: null, exports: null, runs: 0, paused: null };
    // `import()` rejects with the context's own ReferenceError: Node's default is an error of
    // the host's realm, whose constructor would reach the host's `Function` (and `process`).
    const importModuleDynamically = (specifier) => {
      throw new sandbox.ReferenceError(`could not load module '${String(specifier).slice(0, 200)}': the sandbox has no modules`);
    };
    const context = vm.createContext({}, {
      microtaskMode: "afterEvaluate",
      codeGeneration: { strings: true, wasm: false },
      importModuleDynamically,
    });
    sandbox.context = context;
    sandbox.ReferenceError = vm.runInContext("ReferenceError", context);
    sandbox.importModuleDynamically = importModuleDynamically;
    const host = {
      call(target, args, site, resolve, reject) {
        if (exec === null) return;
        let json;
        if (args === undefined) json = { Ok: {} };
        else {
          try {
            json = { Ok: toJson(args, exec.limits.max_tool_argument_bytes, false) };
          } catch (e) {
            json = { Err: `the arguments cannot be sent: ${e.message}` };
          }
        }
        const id = exec.nextId++;
        const wire = typeof target === "string" ? { builtin: target } : { tool: target };
        send({ t: "call", id, target: wire, args: json });
        exec.resolvers.set(id, { resolve, reject, site });
        if (typeof target !== "string" || target === "readResource") {
          exec.calls += 1;
          if (exec.calls > exec.limits.max_tool_calls) abort("tool_call_limit");
        }
      },
      log(level, args) {
        if (exec === null) return false;
        const message = format(args, exec);
        exec.attempted += Buffer.byteLength(message);
        if (exec.attempted > exec.limits.max_output_bytes) abort("output_limit");
        keep(exec, level, message);
        return true;
      },
      timer(ms) {
        if (exec === null) return 0;
        const id = exec.nextId++;
        const secs = Math.min(1e9, Math.max(0, ms / 1000));
        send({ t: "timer", id, delay: { secs: Math.floor(secs), nanos: Math.floor((secs % 1) * 1e9) } });
        return id;
      },
      clearTimer(id) {
        if (exec !== null) send({ t: "clear_timer", id });
      },
      unknownTool(namespace, name) {
        return ask({ t: "unknown_tool", namespace: String(namespace), name: String(name) }) ?? "";
      },
      skill(name) {
        const js = ask({ t: "skill", name: String(name) });
        if (js === null || js === undefined) return undefined;
        return vm.runInContext(js, context, { filename: `skills/${name}.ts`, importModuleDynamically });
      },
      version,
      // Milliseconds since the sandbox was made, as QuickJS's `performance.now()`.
      now: () => Number(process.hrtime.bigint() - made) / 1e6,
    };
    const made = process.hrtime.bigint();
    const guarded = vm.runInContext(GUARD, context)(host, REMOVED);
    const init = vm.runInContext(preludeSource, context, { filename: "codemode:prelude" });
    sandbox.exports = init(guarded);
    // Made here, before any program runs (which may patch what it uses), and in the context:
    // a promise's reactions run in the realm of their handlers, and only the context's own
    // microtask queue is run.
    sandbox.watch = vm.runInContext(WATCH, context);
    // V8's own `stack` accessor, the only getter of an error read here (it runs no program
    // code; one the program defined is not called).
    sandbox.stack = vm.runInContext('Object.getOwnPropertyDescriptor(new Error(), "stack").get', context);
    sandbox.parse = vm.runInContext("JSON.parse", context);
    if (hooks) {
      // The seal tests' hook: here only "spin", a loop that only the deadline ends.
      vm.runInContext('globalThis.__codemodeSyscall = (name) => { if (name === "spin") for (;;); return -1; }', context);
    }
    return sandbox;
  }

  // Ends the run at once, whatever the program catches: this isolate ends, and the main
  // thread reports the limit with the lines logged so far.
  function abort(kind) {
    parentPort.postMessage({ stop: kind, logs: closing(exec), truncated: exec.dropped > 0 || exec.lineCut });
    process.exit(0);
  }

  // The run's lines, with the note of those dropped.
  function closing(exec) {
    const logs = exec.logs;
    if (exec.dropped > 0) {
      const limits = exec.limits;
      logs.push({ level: "warn", message: `[codemode] ${exec.dropped} more log line(s) dropped: the log is capped at ${limits.max_log_lines} lines and ${limits.max_log_bytes} bytes` });
    }
    return logs;
  }

  function ask(header) {
    send(header);
    const { header: answer } = receive();
    if (answer.t !== "text") process.exit(1);
    return answer.text;
  }

  // -- logs ---------------------------------------------------------------------------------

  const MIN_CUT_LINE = 1024;
  function keep(exec, level, text) {
    let message = exec.redact ? ask({ t: "redact", text }) ?? "" : text;
    const limits = exec.limits;
    const room = limits.max_log_bytes - exec.logBytes;
    const bytes = Buffer.byteLength(message);
    if (exec.dropped > 0 || exec.logs.length >= limits.max_log_lines) message = null;
    else if (bytes <= room) {
      // kept whole
    } else if (room >= MIN_CUT_LINE) {
      exec.lineCut = true;
      const marker = `… [line cut at the log's ${limits.max_log_bytes}-byte cap]`;
      let end = Math.max(0, room - Buffer.byteLength(marker));
      message = Buffer.from(message).subarray(0, end).toString("utf8").replace(/\uFFFD$/, "") + marker;
    } else message = null;
    if (message === null) {
      exec.dropped += 1;
      return;
    }
    exec.logBytes += Buffer.byteLength(message);
    const line = { level, message };
    exec.logs.push(line);
    parentPort.postMessage(line);
    if (exec.stream) send({ t: "log", line });
  }

  const INSPECT = {
    depth: 2, maxArrayLength: 100, maxStringLength: 10000,
    customInspect: false, getters: false, showProxy: false, colors: false,
  };
  // Node's own formatting, bounded: a string argument is cut to what the line can hold, and
  // so is a string inside a value. (An error's stack inside a value is printed whole, as Node
  // does: a program logging thousands of references to a huge message fills its own heap.)
  function format(args, exec) {
    const budget = Math.max(0, Math.min(exec.limits.max_log_bytes - exec.logBytes, exec.limits.max_output_bytes - exec.attempted)) + 1;
    const options = { ...INSPECT, maxStringLength: Math.min(INSPECT.maxStringLength, budget) };
    const cut = (a) => (typeof a === "string" && a.length > budget ? `${a.slice(0, budget)}… [${a.length - budget} more characters]` : a);
    let text;
    try {
      // Copied by index: the program may have replaced its arrays' iterator and methods.
      const list = [];
      for (let i = 0; i < args.length; i++) list.push(args[i]);
      text = util.formatWithOptions(options, ...specifiers(list).map(cut));
    } catch {
      text = "a value that could not be shown";
    }
    return text.length > budget ? `${text.slice(0, budget)}…` : text;
  }

  // `%j` is read as results are (no `toJSON` or getter of the program runs while a line is
  // formatted) and `%o` as `%O`, as the QuickJS sandboxes do.
  function specifiers(args) {
    const template = args[0];
    if (typeof template !== "string" || args.length < 2 || !/%[jo]/.test(template)) return args;
    const out = [""];
    let next = 1;
    out[0] = template.replace(/%[sdifjoOc%]/g, (spec) => {
      if (spec === "%%") return spec;
      const at = next++;
      if (at >= args.length) return spec;
      if (spec === "%j") {
        try {
          args[at] = JSON.stringify(toJson(args[at], 1 << 20, true).json);
        } catch {
          args[at] = "[Circular]";
        }
        return "%s";
      }
      return spec === "%o" ? "%O" : spec;
    });
    return out.concat(args.slice(1));
  }

  // -- unhandled rejections -----------------------------------------------------------------

  // Node tracks them for the whole isolate and reports them when its queue of ticks runs,
  // which is at the end of each run here: a rejection handled by then is not reported.
  const MAX_UNHANDLED = 64;
  const SHOWN_UNHANDLED = 10;
  process.on("unhandledRejection", (reason, promise) => {
    if (exec === null) return;
    if (exec.unhandled.length < MAX_UNHANDLED) exec.unhandled.push([promise, reason]);
    else exec.unhandledMore += 1;
  });
  // Reported while the program waited on the host, then handled after all.
  process.on("rejectionHandled", (promise) => {
    if (exec === null) return;
    const at = exec.unhandled.findIndex(([p]) => p === promise);
    if (at >= 0) exec.unhandled.splice(at, 1);
    else if (exec.unhandledMore > 0) exec.unhandledMore -= 1;
  });

  // Runs the isolate's own queue of ticks (promise jobs of the host's realm, such as an
  // `import()` refused, and the rejection reports), then the context's jobs they queued.
  // Node settles a refused `import()` through an async function of its own: a few rounds.
  function tick(context) {
    for (let round = 0; round < 3; round++) {
      try {
        process._tickCallback();
      } catch {
        // A report that failed is not the program's.
      }
      EMPTY.runInContext(context);
    }
  }

  function unhandledLines(exec, logs) {
    const PREFIX = "Unhandled promise rejection: ";
    tick(exec.sandbox.context);
    const limits = exec.limits;
    let room = limits.max_log_bytes - exec.logBytes;
    let lines = limits.max_log_lines - logs.length;
    let shown = 0;
    let more = exec.unhandledMore;
    for (const [, reason] of exec.unhandled) {
      const max = room - (PREFIX.length + 32);
      if (shown === SHOWN_UNHANDLED || lines <= 0 || max <= 0) {
        more += 1;
        continue;
      }
      const message = PREFIX + describe(reason, max);
      room -= Buffer.byteLength(message);
      lines -= 1;
      shown += 1;
      logs.push({ level: "error", message });
    }
    if (more > 0) logs.push({ level: "error", message: `[codemode] ${more} more unhandled promise rejection(s) not shown` });
  }

  // A rejection's reason: an object's `message`, else the value as a console shows it.
  function describe(reason, max) {
    const cut = (text) => (text.length > max ? `${text.slice(0, max)}… [${text.length - max} more characters]` : text);
    if (reason !== null && (typeof reason === "object" || typeof reason === "function")) {
      if (util.types.isProxy(reason)) return "[object]";
      for (let o = reason; o !== null; o = Object.getPrototypeOf(o)) {
        const d = Object.getOwnPropertyDescriptor(o, "message");
        if (d !== undefined) return typeof d.value === "string" ? cut(d.value) : "[object]";
      }
      return "[object]";
    }
    try {
      return cut(util.formatWithOptions(INSPECT, reason));
    } catch {
      return "a value";
    }
  }

  // -- results ------------------------------------------------------------------------------

  const MAX_DEPTH = 256;
  // Past this, a BigInt is measured, not printed (the rule of src/sandbox/convert.rs).
  const MAX_BIGINT_BITS = 33220;
  function bigint(v) {
    const hex = v.toString(16);
    const negative = hex.startsWith("-");
    const bits = (hex.length - (negative ? 1 : 0)) * 4;
    if (bits > MAX_BIGINT_BITS) return `[${negative ? "negative " : ""}BigInt of about ${bits} bits, too large to print]`;
    return v.toString();
  }
  // A value as JSON, reading own enumerable data properties only (no getter, toJSON or
  // Proxy trap runs): the rules of src/sandbox/convert.rs.
  function toJson(value, budget, cut) {
    let used = 0;
    let truncated = false;
    const ancestors = [];
    const path = [];
    const pathText = () => {
      let out = "$";
      const n = path.length;
      path.forEach((seg, i) => {
        if (n > 9 && i >= 6 && i < n - 2) {
          if (i === 6) out += `…(${n - 8} levels)…`;
          return;
        }
        if (typeof seg === "number") out += `[${seg}]`;
        else out += /^[A-Za-z_$][\w$]*$/.test(seg) ? `.${seg}` : `[${JSON.stringify(seg)}]`;
      });
      return out;
    };
    const charge = (n) => {
      used += n;
      if (!cut && used > budget) throw new Error(`the value is larger than the ${budget} byte limit`);
    };
    const over = () => used >= budget;
    function walk(v, depth) {
      switch (typeof v) {
        case "undefined": case "function": case "symbol": return undefined;
        case "boolean": charge(v ? 4 : 5); return v;
        case "number": {
          const j = Number.isFinite(v) ? v : null;
          charge(j === null ? 4 : String(j).length);
          return j;
        }
        case "bigint": { const s = bigint(v); charge(s.length + 2); return s; }
        case "string": {
          if (cut) {
            const room = Math.max(0, budget - used - 2);
            if (v.length > room) {
              const s = `${v.slice(0, room)}… [${v.length - room} more characters]`;
              truncated = true;
              used += s.length + 2;
              return s;
            }
          }
          v = v.toWellFormed();
          charge(Buffer.byteLength(v) + 2);
          return v;
        }
      }
      if (v === null) { charge(4); return null; }
      if (util.types.isProxy(v)) throw new Error(`a Proxy at ${pathText()} cannot leave the sandbox`);
      if (depth >= MAX_DEPTH) throw new Error(`the value at ${pathText()} is nested deeper than ${MAX_DEPTH} levels`);
      if (util.types.isDate(v)) {
        const t = Date.prototype.getTime.call(v);
        const j = Number.isFinite(t) ? Date.prototype.toISOString.call(v) : null;
        charge(j === null ? 4 : j.length + 2);
        return j;
      }
      if (ancestors.includes(v)) throw new Error(`the value has a cycle at ${pathText()}`);
      ancestors.push(v);
      let out;
      if (Array.isArray(v)) {
        const d = Object.getOwnPropertyDescriptor(v, "length");
        const len = d && "value" in d ? d.value : 0;
        charge(2);
        out = [];
        for (let i = 0; i < len; i++) {
          if (cut && over()) { out.push(`… [${len - i} more items]`); truncated = true; break; }
          path.push(i);
          const p = Object.getOwnPropertyDescriptor(v, i);
          let item = null;
          if (p && "value" in p) { item = walk(p.value, depth + 1); if (item === undefined) item = null; }
          else charge(4);
          path.pop();
          charge(1);
          out.push(item);
        }
      } else {
        const keys = Object.keys(v);
        charge(2);
        out = {};
        for (let i = 0; i < keys.length; i++) {
          if (cut && over()) { out["…"] = `[${keys.length - i} more keys]`; truncated = true; break; }
          const key = keys[i];
          const p = Object.getOwnPropertyDescriptor(v, key);
          if (!p || !("value" in p)) continue;
          path.push(key);
          const item = walk(p.value, depth + 1);
          path.pop();
          if (item !== undefined) { charge(Buffer.byteLength(key) + 4); out[key] = item; }
        }
      }
      ancestors.pop();
      return out;
    }
    const json = walk(value, 0);
    if (cut) return { json: json === undefined ? null : json, truncated };
    return json === undefined ? null : json;
  }

  // -- errors -------------------------------------------------------------------------------

  function errorOf(reason, kind) {
    if (reason === null || (typeof reason !== "object" && typeof reason !== "function")) {
      let text;
      try { text = util.formatWithOptions(INSPECT, reason); } catch { text = "a value"; }
      return { kind, message: `Uncaught ${text}`, name: "Error" };
    }
    if (util.types.isProxy(reason)) return { kind, message: "Uncaught Proxy (its traps are not run)", name: "Error" };
    const read = (key) => {
      for (let o = reason; o !== null; o = Object.getPrototypeOf(o)) {
        const d = Object.getOwnPropertyDescriptor(o, key);
        if (d) return "value" in d && typeof d.value === "string" ? d.value : undefined;
      }
      return undefined;
    };
    const ownString = (key) => {
      const d = Object.getOwnPropertyDescriptor(reason, key);
      return d && typeof d.value === "string" ? d.value.slice(0, 1024) : undefined;
    };
    const max = exec === null ? 1 << 20 : exec.limits.max_result_bytes;
    const cut = (text) => (text.length > max ? `${text.slice(0, max)}… [${text.length - max} more characters]` : text);
    const e = { kind, message: cut(read("message") ?? ""), name: cut(read("name") ?? "Error") };
    let stack = read("stack");
    const own = Object.getOwnPropertyDescriptor(reason, "stack");
    if (own !== undefined && exec !== null && own.get === exec.sandbox.stack) {
      try {
        stack = Reflect.apply(own.get, reason, []);
      } catch {
        stack = undefined;
      }
    }
    if (typeof stack === "string") {
      stack = stack.slice(0, max + 4096);
      // Frames only, and only the program's: V8 starts with `Name: message`, and the host's
      // own frames (this script, Node) mean nothing to the agent.
      const lines = stack.split("\n");
      const first = lines.findIndex((l) => /^\s+at /.test(l));
      // An anonymous frame is written as QuickJS writes it, so stacks read alike whatever
      // the engine: `at <anonymous> (agent.ts:3:7)`.
      stack = first < 0 ? "" : lines.slice(first)
        .filter((l) => l.includes("agent.ts:") || l.includes("skills/"))
        .map((l) => l.replace(/^(\s+at )((?:agent\.ts|skills\/[^:]*):\d+:\d+)$/, "$1<anonymous> ($2)"))
        .join("\n");
      if (stack !== "") e.stack = stack;
    }
    const tool = ownString("tool");
    if (tool !== undefined) {
      e.tool = tool;
      const code = ownString("code");
      if (code !== undefined) e.code = code;
    }
    if (e.name === "ReferenceError" && e.message.endsWith(" is not defined")) {
      const note = ask({ t: "note", undefined: e.message.slice(0, -" is not defined".length) });
      if (note) e.message += note;
    }
    return e;
  }

  // -- runs ---------------------------------------------------------------------------------

  function start(spec) {
    let sandbox = contexts.get(spec.sandbox);
    if (sandbox === undefined && spec.ran) {
      return finish(null, { kind: "internal", message: "the V8 isolate that held this session's sandbox ended, and its state with it" });
    }
    if (sandbox === undefined) {
      sandbox = spare ?? build();
      spare = null;
    }
    if (spec.session !== null) contexts.set(spec.sandbox, sandbox);
    if (sandbox.runs > 0) sandbox.exports.reset();
    sandbox.runs += 1;
    if (spec.names !== null) names = spec.names;
    exec = {
      sandbox, spec, limits: spec.limits, logs: [], logBytes: 0, dropped: 0, lineCut: false, attempted: 0,
      nextId: 1, calls: 0, resolvers: new Map(), redact: spec.redact, stream: spec.stream,
      unhandled: [], unhandledMore: 0,
    };
    const compiled = spec.compiled;
    let main;
    try {
      let first = 0;
      for (const [js, tools] of names) {
        if (js === "skills") sandbox.exports.installSkills(js, tools);
        else sandbox.exports.install(js, tools, first);
        first += tools.length;
      }
      // The program is a module for QuickJS; here a strict script whose completion value is
      // the default export, at the same positions ("use strict"; takes the place of
      // `export default `).
      const js = compiled.js.startsWith("export default ") ? `"use strict";  ${compiled.js.slice(15)}` : `"use strict";${compiled.js}`;
      let script;
      try {
        script = new vm.Script(js, { filename: "agent.ts", importModuleDynamically: sandbox.importModuleDynamically });
      } catch (e) {
        return finish(null, errorOf(e, "syntax"));
      }
      main = sandbox.exports.start(script.runInContext(sandbox.context), compiled.call_default);
    } catch (e) {
      return finish(null, errorOf(e, "exception"));
    }
    return drive(sandbox.watch(main));
  }

  let names = [];

  function drive(watch) {
    for (;;) {
      EMPTY.runInContext(exec.sandbox.context);
      if (watch.state === "fulfilled") {
        const value = watch.value;
        if (typeof value === "function") {
          return finish(null, { kind: "invalid_result", message: "the result is a function, which has no JSON form" });
        }
        try {
          const { json, truncated } = toJson(value, exec.limits.max_result_bytes, true);
          return finish({ json, truncated, nothing: value === undefined });
        } catch (e) {
          return finish(null, { kind: "invalid_result", message: e.message });
        }
      }
      if (watch.state === "rejected") return finish(null, errorOf(watch.value, "exception"));
      if (!exec.ticked) {
        exec.ticked = true;
        tick(exec.sandbox.context);
        continue;
      }
      exec.ticked = false;
      send({ t: "next" });
      const { header, body } = receive();
      if (header.t !== "next") process.exit(1);
      const next = header.next;
      switch (next.t) {
        case "value": {
          const r = exec.resolvers.get(next.id);
          exec.resolvers.delete(next.id);
          if (r) {
            let value;
            try {
              value = body === "" ? undefined : exec.sandbox.parse(body);
            } catch {
              value = undefined;
            }
            r.resolve(value);
          }
          break;
        }
        case "error": {
          const r = exec.resolvers.get(next.id);
          exec.resolvers.delete(next.id);
          if (r) {
            const f = next.failure;
            const spec = { name: f.type_error ? "TypeError" : "ToolError", message: f.message, tool: f.tool };
            if (f.code !== null) spec.code = f.code;
            if (f.path !== null) spec.path = f.path;
            r.reject(exec.sandbox.exports.toolError(spec, r.site));
          }
          break;
        }
        case "timer":
          try {
            exec.sandbox.exports.fire(next.id);
          } catch (e) {
            // A timer callback threw: the program fails, as it would in Node.
            return finish(null, errorOf(e, "exception"));
          }
          break;
        case "log":
          keep(exec, next.line.level, next.line.message);
          break;
        case "idle":
          return finish(null, { kind: "deadlock", message: "the program is waiting on a promise that can never settle: no tool call or timer is pending" });
        case "paused":
          return pause(watch);
        case "timed_out":
          return stopped("timeout");
        case "cancelled":
          return stopped("cancelled");
      }
    }
  }

  function pause(watch) {
    exec.sandbox.paused = { watch, exec };
    contexts.set(exec.spec.sandbox, exec.sandbox);
    const logs = exec.logs;
    exec.logs = [];
    end({ t: "done", value: null, logs, error: null, hint: null, returned_bytes: logs.reduce((n, l) => n + Buffer.byteLength(l.message), 0), result_truncated: false, logs_truncated: false, paused: true, nothing: false });
    return null;
  }

  function stopped(kind) {
    const truncated = exec.dropped > 0 || exec.lineCut;
    end({ t: "stopped", kind, logs: closing(exec), message: null, logs_truncated: truncated });
    return null;
  }


  function finish(result, error) {
    if (exec === null) {
      end({ t: "done", value: null, logs: [], error, hint: null, returned_bytes: 0, result_truncated: false, logs_truncated: false, paused: false, nothing: false });
      return null;
    }
    const logs = closing(exec);
    unhandledLines(exec, logs);
    const value = result ? result.json : null;
    const text = JSON.stringify(value);
    const returned = Buffer.byteLength(text) + logs.reduce((n, l) => n + Buffer.byteLength(l.message), 0);
    end({
      t: "done", value, logs, error: error ?? null, hint: null, returned_bytes: returned,
      result_truncated: result ? result.truncated : false, logs_truncated: exec.dropped > 0 || exec.lineCut,
      paused: false, nothing: result ? result.nothing : false,
    });
    return null;
  }

  // The run's last frame, unless the main thread has stopped the run (then it is ending this
  // isolate and says so itself).
  function end(frame) {
    const run = Atomics.load(state, 0);
    if (run <= 0 || Atomics.compareExchange(state, 0, run, 0) !== run) {
      for (;;) Atomics.wait(state, 3, 0);
    }
    const session = exec && exec.spec.session !== null;
    if (exec && !frame.paused && !session) contexts.delete(exec.spec.sandbox);
    exec = null;
    send(frame);
  }

  // The loop: frames from the main thread.
  spare = build();
  for (;;) {
    const { header } = receive();
    if (header.t === "run") {
      start(header);
      if (spare === null) spare = build();
    } else if (header.t === "resume") {
      const sandbox = contexts.get(header.sandbox);
      if (!sandbox || !sandbox.paused) {
        finish(null, { kind: "internal", message: "no execution is paused in this sandbox" });
        continue;
      }
      exec = sandbox.paused.exec;
      const watch = sandbox.paused.watch;
      sandbox.paused = null;
      drive(watch);
    } else if (header.t === "drop") {
      contexts.delete(header.sandbox);
    }
  }
}

// The V8 engine's host: one Node.js process per sandbox thread of the engine, started by
// src/sealed/v8.rs with this script as `node -e` and two sockets: descriptor 3 carries the
// frames both ways, descriptor 4 what the host must have stopped (`stop`: a deadline passed,
// a cancellation) to this process's main thread. It speaks the sealed workers' frames
// (src/sandbox/wire.rs): the same host loop answers both.
//
// Programs run on worker threads, V8 isolates with their own heap limit (`resourceLimits`),
// each in a fresh `vm` context (a realm: its own globals and built-ins) built ahead of demand
// by the home isolate; a session's context lives in an isolate of its own. A program that
// breaches the heap limit ends its isolate alone (ERR_WORKER_OUT_OF_MEMORY), not the process;
// a deadline or a cancellation terminates the isolate. In each case the main thread ends the
// execution (`Stopped`) with the lines it had kept, and the next one gets a new isolate.
//
// The main thread is off every run's path. One isolate at a time reads descriptor 3, in
// blocking reads: the home isolate between runs, and the running one for its answers (an
// answer costs one wake-up). A frame the home isolate is not to serve (a session's run, a
// run under another heap limit) goes to the main thread, which places it in the right
// isolate and hands the socket over; that isolate gives it back when its run ends. A thread
// blocked in a read cannot be terminated, and need not be: the host answers a run past its
// deadline, or cancelled, with the news. So `state[RUN]` carries a WAITING bit the isolate
// sets while it waits on the host, and the main thread stops only a run without it.
"use strict";

const { Worker, MessageChannel, receiveMessageOnPort, isMainThread, workerData } = require("node:worker_threads");
const fs = require("node:fs");

const FD = 3;
const CONTROL_FD = 4;
// `shared`, one for the process: the isolate that reads descriptor 3 now (0: none, the main
// thread is placing a frame), the home isolate (which reads it between runs), a count that
// moves whenever an isolate waiting on either should look again, and the isolate running a
// program.
const HOLDER = 0, HOME = 1, EPOCH = 2, RUNNING = 3, SHARED_WORDS = 4;
// An isolate's `state`: RUN is 0 between runs, n > 0 while it runs its run n (with WAITING
// while it waits on the host), -n once the main thread has stopped run n; the LOG_ words
// describe the lines its run kept, in its log buffer.
const RUN = 0, LOG_BYTES = 1, LOG_DROPPED = 2, LOG_CUT = 3, LOG_MAX_LINES = 4, LOG_MAX_BYTES = 5;
const STATE_WORDS = 8;
// After the words: when its run began (monotonic nanoseconds, as the host's clock reads it).
const STATE_BYTES = 4 * STATE_WORDS + 8;
const begunOf = (state) => new BigInt64Array(state.buffer, 4 * STATE_WORDS, 1);
const WAITING = 1 << 30;
// The log buffer's reach (address space only; it grows with the lines kept).
const MAX_LOG_BUFFER = 1 << 30;

// Gives descriptor 3 to isolate `id`, and wakes the waiting ones to look.
function handOver(shared, id) {
  Atomics.store(shared, HOLDER, id);
  Atomics.add(shared, EPOCH, 1);
  Atomics.notify(shared, EPOCH);
}

// The note that closes a run's lines when some were dropped.
function droppedNote(dropped, maxLines, maxBytes) {
  return { level: "warn", message: `[codemode] ${dropped} more log line(s) dropped: the log is capped at ${maxLines} lines and ${maxBytes} bytes` };
}

// The lines a run kept (JSON, one per line, in `buffer`), as the main thread reads them
// after the isolate has ended.
function keptLines(buffer, state) {
  const text = Buffer.from(buffer, 0, state[LOG_BYTES]).toString("utf8");
  const logs = text === "" ? [] : text.slice(0, -1).split("\n").map((line) => JSON.parse(line));
  if (state[LOG_DROPPED] > 0) logs.push(droppedNote(state[LOG_DROPPED], state[LOG_MAX_LINES], state[LOG_MAX_BYTES]));
  return { logs, truncated: state[LOG_DROPPED] > 0 || state[LOG_CUT] === 1 };
}

// A lone surrogate is the one thing JSON.stringify writes as an escape JSON readers refuse
// (`\udxxx`, lower case; a pair is written as itself): each becomes U+FFFD, as the QuickJS
// sandboxes make it. An escape has an even run of backslashes before it; an odd one makes it
// text. (Checked on the text: a replacer would cost every string of every frame a call.)
const LONE_SURROGATE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;
// Frames are encoded here, and wait here when written `later` (most fit).
const outgoing = Buffer.allocUnsafe(1 << 16);
let held = 0;

// Writes one frame: u32 header length, u32 body length (little-endian; no frame from here
// has a body), JSON header. A frame written `later` (a tool call) waits for the next one:
// a program that calls a tool then waits on it, the common case, costs one write for both,
// not two. Frames keep their order; a run stopped from outside loses calls it never waited
// on, whose tools then never start.
function writeFrame(header, later) {
  let head = JSON.stringify(header);
  if (head.includes("\\ud")) head = head.replace(LONE_SURROGATE, "$1\\ufffd");
  // UTF-8 takes at most 3 bytes per UTF-16 unit.
  const most = 8 + 3 * head.length;
  if (held + most > outgoing.length) flush();
  // A frame larger than the buffer gets one of its own and leaves at once.
  const own = most > outgoing.length;
  const buffer = own ? Buffer.allocUnsafe(most) : outgoing;
  const at = own ? 0 : held;
  const length = buffer.write(head, at + 8);
  buffer.writeUInt32LE(length, at);
  buffer.writeUInt32LE(0, at + 4);
  if (own) return writeAll(buffer.subarray(0, 8 + length));
  held += 8 + length;
  if (!later) flush();
}

// Writes the frames that wait.
function flush() {
  if (held > 0) writeAll(outgoing.subarray(0, held));
  held = 0;
}

function writeAll(bytes) {
  let sent = 0;
  while (sent < bytes.length) sent += fs.writeSync(FD, bytes, sent, bytes.length - sent);
}

if (isMainThread) main();
else isolate();

// -- the main thread ------------------------------------------------------------------------

function main() {
  const net = require("node:net");
  const [source, prelude, version, hooks, warm] = process.argv.slice(1);
  const shared = new Int32Array(new SharedArrayBuffer(4 * SHARED_WORDS));
  const isolates = new Map(); // id -> isolate
  let nextId = 0;
  let pool = null; // the home isolate: fresh contexts come from it
  const held = new Map(); // sandbox id -> the isolate of its session
  let memory = 64 << 20;
  let names = [];
  const CANCEL_GRACE = 100;
  let cancelling = null; // the isolate and run a cancellation is pending for

  function spawn(memoryBytes, session) {
    const id = ++nextId;
    const { port1, port2 } = new MessageChannel();
    const state = new Int32Array(new SharedArrayBuffer(STATE_BYTES));
    // The lines its run keeps, so a run ended from here still returns them.
    const logs = new SharedArrayBuffer(0, { maxByteLength: MAX_LOG_BUFFER });
    const mb = Math.max(8, Math.ceil(memoryBytes / (1 << 20)));
    const worker = new Worker(source, {
      eval: true,
      workerData: { id, port: port2, state, shared, logs, names, prelude, version, hooks: hooks === "1", warm: warm === "1" && !session, memoryBytes },
      transferList: [port2],
      // The stack of the isolate's thread: V8's parser recurses on a long flat chain
      // (`1 + 1 + …` a hundred thousand times), which QuickJS parses.
      resourceLimits: { maxOldGenerationSizeMb: mb, maxYoungGenerationSizeMb: Math.min(16, mb), stackSizeMb: 32 },
      stdout: true,
      stderr: true,
      env: {},
    });
    const begun = begunOf(state);
    const isolate = { id, worker, port: port1, state, begun, logs, memoryBytes, session, dead: false, error: null, why: null };
    isolates.set(id, isolate);
    worker.on("message", (header) => forwarded(header));
    worker.on("error", (e) => {
      isolate.error = e;
    });
    worker.on("exit", () => ended(isolate));
    return isolate;
  }

  // A new home isolate (its heap limit is fixed when it starts: another limit needs another
  // isolate). The old one's sandboxes (runs paused there) end with it.
  function home(memoryBytes) {
    const old = pool;
    memory = memoryBytes;
    pool = spawn(memoryBytes, false);
    Atomics.store(shared, HOME, pool.id);
    if (old !== null && !old.dead) old.worker.terminate();
    return pool;
  }

  // A frame the home isolate read and is not its to serve.
  function forwarded(header) {
    switch (header.t) {
      case "names":
        names = header.names;
        return;
      case "run": {
        let isolate = held.get(header.sandbox);
        if (isolate === undefined && header.session !== null) {
          // A session's context lives in an isolate of its own: another program's breach
          // must not end it. Its heap limit is the session's, across its executions.
          isolate = spawn(Math.min(header.limits.memory_bytes, header.session), true);
          held.set(header.sandbox, isolate);
        }
        give(isolate ?? home(header.limits.memory_bytes), header);
        return;
      }
      case "resume": {
        const isolate = held.get(header.sandbox);
        if (isolate !== undefined) return void give(isolate, header);
        writeFrame({ t: "stopped", kind: "internal", logs: [], message: "the paused execution's V8 isolate is gone" });
        handOver(shared, Atomics.load(shared, HOME));
        return;
      }
      case "drop": {
        const isolate = held.get(header.sandbox);
        held.delete(header.sandbox);
        if (isolate !== undefined) isolate.worker.terminate();
        return;
      }
    }
  }

  // The isolate serves the frame, and reads the socket until its run ends.
  function give(isolate, header) {
    isolate.port.postMessage(header);
    handOver(shared, isolate.id);
  }

  function ended(isolate) {
    isolate.dead = true;
    isolates.delete(isolate.id);
    for (const [id, holder] of held) if (holder === isolate) held.delete(id);
    const { state } = isolate;
    const was = Atomics.load(state, RUN);
    if (was > 0 && (was & WAITING) !== 0) {
      // It ended in a read of its answer (only a crash does that): the host may write that
      // answer still, where the next isolate would read it. A new process starts clean.
      process.exit(70);
    }
    if (was !== 0) {
      // A run it did not end itself: stopped from here, or its heap full, or it failed.
      const oom = isolate.error !== null && isolate.error.code === "ERR_WORKER_OUT_OF_MEMORY";
      const kind = isolate.why ?? (oom ? "memory_limit" : "internal");
      const cause = isolate.error === null ? "it exited" : isolate.error.message;
      const message = kind === "internal" ? `the V8 isolate running it ended (${cause})` : null;
      const { logs, truncated } = keptLines(isolate.logs, state);
      // A session's state ended with its isolate: the host replaces the session's sandbox.
      const lost = isolate.session && !["timeout", "memory_limit", "internal"].includes(kind);
      writeFrame({ t: "stopped", kind, logs, message, logs_truncated: truncated, lost });
    }
    if (Atomics.load(shared, RUNNING) === isolate.id) Atomics.store(shared, RUNNING, 0);
    if (isolate === pool) home(memory);
    if (Atomics.load(shared, HOLDER) === isolate.id) handOver(shared, Atomics.load(shared, HOME));
  }

  // The running run, if it began before `sent` (the host's news is not for a later one).
  function current(sent) {
    const isolate = isolates.get(Atomics.load(shared, RUNNING));
    if (isolate === undefined || isolate.begun[0] > BigInt(sent)) return null;
    const run = Atomics.load(isolate.state, RUN) & ~WAITING;
    return run > 0 ? { isolate, run } : null;
  }

  // Ends run `run` of `isolate` from outside: the isolate is terminated. Not while it waits
  // on the host (a read cannot be interrupted; the host answers it with the news), nor once
  // it has ended: whether it stopped is returned.
  function stop(isolate, run, why) {
    if (Atomics.compareExchange(isolate.state, RUN, run, -run) !== run) return false;
    isolate.why = why;
    isolate.worker.terminate();
    return true;
  }

  // The host says it again at each tick while the program is silent, until the run ends: a
  // run that waited on the host when first told is stopped at a later tick.
  function onFrame(header) {
    if (header.t !== "stop") return;
    const found = current(header.sent);
    if (found === null) return;
    const { isolate, run } = found;
    if (header.timeout) return void stop(isolate, run, "timeout");
    // A program waiting on the host hears of a cancellation from its next answer and ends
    // itself, keeping a session's state; one that does not within a moment is terminated.
    const key = `${isolate.id}:${run}`;
    if (cancelling === key) return;
    cancelling = key;
    setTimeout(() => {
      if (!stop(isolate, run, "cancelled")) cancelling = null;
    }, CANCEL_GRACE);
  }

  let pending = Buffer.alloc(0);
  const control = new net.Socket({ fd: CONTROL_FD, readable: true, writable: false });
  control.on("data", (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const head = pending.readUInt32LE(0);
      const need = 8 + head + pending.readUInt32LE(4);
      if (pending.length < need) break;
      onFrame(JSON.parse(pending.toString("utf8", 8, 8 + head)));
      pending = pending.subarray(need);
    }
  });
  // The host hung up: nothing here is worth keeping.
  control.on("end", () => process.exit(0));
  control.on("error", () => process.exit(0));

  // The first home isolate says hello once it is ready: starting it is part of starting the
  // process, not of the first execution.
  handOver(shared, home(memory).id);
}

// -- the isolate ----------------------------------------------------------------------------

function isolate() {
  const vm = require("node:vm");
  const util = require("node:util");
  const { id, port, state, shared, logs: logBuffer, prelude, version, hooks, warm, memoryBytes } = workerData;
  const { parentPort } = require("node:worker_threads");
  const send = writeFrame;
  const logBytes = new Uint8Array(logBuffer);
  const nap = new Int32Array(new SharedArrayBuffer(4));

  // Never returns: the main thread has stopped the run and is terminating this isolate.
  function halt() {
    for (;;) Atomics.wait(state, STATE_WORDS - 1, 0);
  }

  // Asks the host (`header`) and reads its answer from the socket. The run is marked as
  // waiting first, so the main thread does not terminate this thread in the read; if it has
  // stopped the run already, the question is not asked.
  function question(header) {
    const run = Atomics.load(state, RUN);
    if (run <= 0 || Atomics.compareExchange(state, RUN, run, run | WAITING) !== run) halt();
    send(header);
    const frame = readFrame(memoryBytes, true);
    Atomics.store(state, RUN, run);
    // A result larger than the isolate's whole heap cannot be read into it: reading it would
    // end the process, not the isolate. It was read past, and the run ends as its heap would.
    if (frame === null) abort("memory_limit");
    return frame;
  }

  // Reads one frame from the socket (`null` if it is larger than `most`: then read past).
  // Between runs frames come back to back, and each is read exactly; an answer is the only
  // frame until the next question (`whole`), and comes in one read as a rule.
  const incoming = Buffer.allocUnsafe(1 << 16);
  function readFrame(most, whole) {
    let got = 0;
    while (got < 8) got += readSome(incoming, got, whole ? incoming.length : 8);
    const head = incoming.readUInt32LE(0);
    const total = 8 + head + incoming.readUInt32LE(4);
    if (got > total) process.exit(1); // The host broke the protocol.
    if (total - 8 > most) {
      for (let left = total - got; left > 0; ) left -= readSome(incoming, 0, Math.min(left, incoming.length));
      return null;
    }
    let frame = incoming;
    if (total > incoming.length) {
      frame = Buffer.allocUnsafe(total);
      incoming.copy(frame, 0, 0, got);
    }
    while (got < total) got += readSome(frame, got, total);
    return { header: JSON.parse(frame.toString("utf8", 8, 8 + head)), body: frame.toString("utf8", 8 + head, total) };
  }
  // Reads into `buffer` from `at` up to `end` (at least one byte): how many came.
  function readSome(buffer, at, end) {
    const n = fs.readSync(FD, buffer, at, end - at);
    if (n === 0) process.exit(0); // The host hung up.
    return n;
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
  // What each context is set up with, compiled once: the guard, the prelude, and what this
  // thread uses of the context's own. All are made before any program runs (which may patch
  // what they use), and in the context: a promise's reactions run in the realm of their
  // handlers, and only the context's own microtask queue is run. `stack` is V8's own accessor,
  // the only getter of an error read here (it runs no program code; one the program defined
  // is not called).
  const SETUP = new vm.Script(
    `[${GUARD}, ${preludeSource}, ${WATCH}, Object.getOwnPropertyDescriptor(new Error(), "stack").get, JSON.parse, ReferenceError, Object.prototype]`,
    { filename: "codemode:prelude" },
  );

  // `import()` rejects with the context's own ReferenceError: Node's default is an error of
  // the host's realm, whose constructor would reach the host's `Function` (and `process`).
  // (Outside a run nothing of a program runs; a string has no realm.)
  function refuseImport(specifier) {
    const message = `could not load module '${String(specifier).slice(0, 200)}': the sandbox has no modules`;
    if (exec === null) throw message;
    // Node settles the refusal in jobs of the host's realm, which the run must now run (`tick`).
    exec.imported = true;
    throw new exec.sandbox.ReferenceError(message);
  }

  // Programs compiled, by their JavaScript: a script is bound to no context, and an agent
  // runs the same program again. Small ones only, as the cache lives in the heap programs
  // are limited to.
  const scripts = new Map();
  const SCRIPT_CACHE = 64;
  const SCRIPT_CACHE_MOST = 16 * 1024;
  function script(js) {
    let compiled = scripts.get(js);
    if (compiled !== undefined) return compiled;
    compiled = new vm.Script(js, { filename: "agent.ts", importModuleDynamically: refuseImport });
    if (js.length <= SCRIPT_CACHE_MOST) {
      if (scripts.size >= SCRIPT_CACHE) scripts.delete(scripts.keys().next().value);
      scripts.set(js, compiled);
    }
    return compiled;
  }

  // One run's state; `null` between runs.
  let exec = null;
  // The sandboxes kept between runs (a session's, a paused run's), by the host's id.
  const contexts = new Map();
  // A home isolate's sandbox for the next run, built as soon as the last one ended (while the
  // host still reads its outcome), so a run finds it ready: a fresh context costs more than
  // running `return 1 + 1`. `null` once taken, or without a warm pool.
  let spare = null;

  function build() {
    const sandbox = { context: null, exports: null, runs: 0, paused: null, names: null };
    // A context without Node's interceptors in front of its global (the global is the
    // context's own object): a third cheaper to make, and a program's globals behave as in any
    // realm.
    const context = vm.createContext(vm.constants.DONT_CONTEXTIFY, {
      microtaskMode: "afterEvaluate",
      codeGeneration: { strings: true, wasm: false },
      importModuleDynamically: refuseImport,
    });
    sandbox.context = context;
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
        send({ t: "call", id, target: wire, args: json }, true);
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
        return vm.runInContext(js, context, { filename: `skills/${name}.ts`, importModuleDynamically: refuseImport });
      },
      version,
      // Milliseconds since the sandbox was made, as QuickJS's `performance.now()`.
      now: () => Number(process.hrtime.bigint() - made) / 1e6,
    };
    const made = process.hrtime.bigint();
    const [guard, init, watch, stack, parse, ReferenceError, objectPrototype] = SETUP.runInContext(context);
    sandbox.exports = init(guard(host, REMOVED));
    sandbox.watch = watch;
    sandbox.stack = stack;
    sandbox.parse = parse;
    sandbox.ReferenceError = ReferenceError;
    sandbox.objectPrototype = objectPrototype;
    install(sandbox);
    if (hooks) {
      // The seal tests' hook: here only "spin", a loop that only the deadline ends.
      vm.runInContext('globalThis.__codemodeSyscall = (name) => { if (name === "spin") for (;;); return -1; }', context);
    }
    return sandbox;
  }

  // Ends the run at once, whatever the program catches: this isolate ends, and the main
  // thread reports the limit with the lines logged so far.
  function abort(kind) {
    const truncated = exec.dropped > 0 || exec.lineCut;
    // The isolate ends with the run, and a session's state with it.
    const lost = exec.spec.session !== null;
    end({ t: "stopped", kind, logs: closing(exec), message: null, logs_truncated: truncated, lost });
    process.exit(0);
  }

  // The run's lines, with the note of those dropped.
  function closing(exec) {
    const logs = exec.logs;
    if (exec.dropped > 0) logs.push(droppedNote(exec.dropped, exec.limits.max_log_lines, exec.limits.max_log_bytes));
    return logs;
  }

  function ask(header) {
    const { header: answer } = question(header);
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
      state[LOG_DROPPED] = exec.dropped;
      return;
    }
    exec.logBytes += Buffer.byteLength(message);
    const line = { level, message };
    exec.logs.push(line);
    remember(line);
    if (exec.stream) send({ t: "log", line });
  }

  // A kept line, also where the main thread finds it if it has to end the run.
  function remember(line) {
    const text = Buffer.from(`${JSON.stringify(line)}\n`);
    const at = state[LOG_BYTES];
    if (at + text.length > logBuffer.byteLength) logBuffer.grow(Math.min(MAX_LOG_BUFFER, Math.max(at + text.length, 2 * logBuffer.byteLength)));
    text.copy(logBytes, at);
    state[LOG_BYTES] = at + text.length;
    state[LOG_CUT] = exec.lineCut ? 1 : 0;
  }

  // -- console lines ------------------------------------------------------------------------

  // The QuickJS sandboxes' formatter (src/sandbox/inspect.rs) over V8's values, so a line reads
  // the same whatever the engine: Node's layout for plain data, own data properties read without
  // running any of the program's code (a getter shows as `[Getter]`), and every piece of the
  // program's text charged to the line's budget: past it a value is `…`, not read at all (ten
  // thousand references to a 30 MB error cost the line's cap, not 300 GB), and a BigInt too
  // large to print is measured.
  const MAX_INSPECT_DEPTH = 2, MAX_ITEMS = 100, MAX_STRING = 10000, MAX_JSON = 64 * 1024;
  const CUT = "…";
  const symbolDescription = Object.getOwnPropertyDescriptor(Symbol.prototype, "description").get;
  const isIdentifier = (k) => /^[A-Za-z_$][\w$]*$/.test(k);
  const isIndex = (k) => /^(0|[1-9]\d*)$/.test(k) && Number(k) < 4294967295;

  // A line of `args` as `console.log` shows it, within about `max` characters of the program's
  // text.
  function line(args, max) {
    const builtins = exec === null ? null : exec.sandbox.exports.builtins;
    const ins = { left: max, seen: [], builtins };
    if (args.length === 0) return "";
    const [first] = args;
    let rest = 1;
    let out;
    if (typeof first === "string" && args.length > 1) {
      const template = read(ins, first, Infinity);
      if (template.includes("%")) {
        out = template.replace(/%[sdifjoOc%]/g, (spec) => {
          if (spec === "%%") return "%";
          if (rest >= args.length) return spec;
          const arg = args[rest++];
          switch (spec[1]) {
            case "s":
              if (typeof arg === "string") return read(ins, arg, Infinity);
              return inspect(ins, arg, 1);
            case "o": case "O":
              return inspect(ins, arg, 1);
            case "d": case "i": case "f": {
              if (spec !== "%f" && typeof arg === "bigint") return bigintText(arg);
              let n = number(arg);
              if (spec === "%i" && !Number.isNaN(n)) n = Math.trunc(n);
              return String(n);
            }
            case "j":
              return spend(ins, json(ins, arg));
            default:
              return ""; // %c: CSS, meaningless here
          }
        });
      } else out = template;
    } else {
      out = inspect(ins, first, 0);
    }
    for (; rest < args.length; rest++) out += ` ${inspect(ins, args[rest], 0)}`;
    return out;
  }

  // A program string, cut to `cap` and what is left of the line's budget.
  function read(ins, s, cap) {
    const text = s.length > Math.min(cap, ins.left) ? s.slice(0, Math.min(cap, ins.left)) : s;
    ins.left = Math.max(0, ins.left - text.length);
    return text;
  }
  function spend(ins, text) {
    ins.left = Math.max(0, ins.left - text.length);
    return text;
  }

  // `Number(v)` for primitives; an object would run its own `valueOf`, so it is NaN.
  function number(v) {
    switch (typeof v) {
      case "number": case "boolean": case "undefined": case "string": return Number(v);
      case "bigint": {
        const text = bigint(v);
        if (!text.startsWith("[")) return Number(text);
        return text.includes("negative") ? -Infinity : Infinity;
      }
      default: return v === null ? 0 : NaN;
    }
  }

  // A BigInt as Node shows it (`10n`), or its size when it is too large to print.
  function bigintText(v) {
    const text = bigint(v);
    return text.startsWith("[") ? text : `${text}n`;
  }

  function json(ins, v) {
    if (v === undefined || typeof v === "function" || typeof v === "symbol") return "undefined";
    try {
      return JSON.stringify(toJson(v, Math.min(MAX_JSON, ins.left), true).json);
    } catch {
      return "[Circular]";
    }
  }

  function inspect(ins, v, depth) {
    if (ins.left === 0) return CUT;
    return spend(ins, inspectWithin(ins, v, depth));
  }

  function inspectWithin(ins, v, depth) {
    switch (typeof v) {
      case "string": {
        if (depth === 0) return v.length > ins.left ? v.slice(0, ins.left) : v;
        const cap = Math.min(MAX_STRING, ins.left);
        return v.length > cap ? quote(`${v.slice(0, cap)}...`) : quote(v);
      }
      case "number": return Object.is(v, -0) ? "-0" : String(v);
      case "bigint": return bigintText(v);
      case "boolean": case "undefined": return String(v);
      case "symbol": return `Symbol(${Reflect.apply(symbolDescription, v, []) ?? ""})`;
      case "function": if (!util.types.isProxy(v)) return functionText(v);
    }
    if (v === null) return "null";
    return object(ins, v, depth);
  }

  function object(ins, v, depth) {
    if (util.types.isProxy(v)) {
      // Node's own reading of the target, which runs none of its traps.
      const cap = Math.min(MAX_STRING, ins.left);
      const text = util.inspect(v, { depth: Math.max(0, MAX_INSPECT_DEPTH - depth), maxArrayLength: MAX_ITEMS, maxStringLength: cap, customInspect: false, getters: false, showProxy: false });
      return text.length > ins.left ? text.slice(0, ins.left) + CUT : text;
    }
    if (ins.seen.includes(v)) return "[Circular *]";
    if (util.types.isNativeError(v)) return errorText(ins, v);
    if (util.types.isDate(v)) {
      try {
        return Reflect.apply(ins.builtins.dateToISOString, v, []);
      } catch {
        return "Invalid Date";
      }
    }
    // Reads `source` and `flags` as any engine does: program code, if it replaced them.
    if (util.types.isRegExp(v) && ins.builtins !== null) {
      const text = Reflect.apply(ins.builtins.regexpToString, v, []);
      if (typeof text === "string") return text;
    }
    if (util.types.isPromise(v)) return "Promise { <pending> }";
    const array = Array.isArray(v);
    if (depth > MAX_INSPECT_DEPTH) return array ? "[Array]" : "[Object]";
    ins.seen.push(v);
    let parts;
    try {
      parts = entries(ins, v, array, depth);
    } finally {
      ins.seen.pop();
    }
    const prefix = array ? "" : prefixOf(v);
    const [open, close] = array ? ["[", "]"] : ["{", "}"];
    if (parts.length === 0) return `${prefix}${open}${close}`;
    const oneLine = parts.join(", ");
    // Node's rule (util.inspect, breakLength 80): one line when the entries, their separators
    // and the indentation fit.
    if (oneLine.length + 2 + 11 + 2 * depth <= 80 && !oneLine.includes("\n")) return `${prefix}${open} ${oneLine} ${close}`;
    return `${prefix}${open}\n  ${parts.join(",\n").replaceAll("\n", "\n  ")}\n${close}`;
  }

  // The formatted entries; once the line's budget is spent, one `…` stands for the rest.
  function entries(ins, v, array, depth) {
    const parts = [];
    const keys = Reflect.ownKeys(v).filter((k) => typeof k === "string");
    let at = 0;
    if (array) {
      // An array's index keys come first, in ascending order: walking them, not 0..length,
      // keeps a sparse array from costing billions of steps. Holes in a row are one entry.
      const d = Object.getOwnPropertyDescriptor(v, "length");
      const len = d && typeof d.value === "number" ? d.value : 0;
      let next = 0;
      for (; at < keys.length && isIndex(keys[at]); at++) {
        if (parts.length >= MAX_ITEMS) break;
        if (ins.left === 0) return [...parts, CUT];
        const index = Number(keys[at]);
        if (index > next) {
          parts.push(emptyItems(index - next));
          next = index;
          if (parts.length >= MAX_ITEMS) break;
        }
        const text = property(ins, v, keys[at], depth);
        if (text !== undefined) parts.push(text);
        next += 1;
      }
      while (at < keys.length && isIndex(keys[at])) at++;
      const remaining = len - next;
      if (remaining > 0) parts.push(parts.length < MAX_ITEMS ? emptyItems(remaining) : moreItems(remaining));
    }
    let shown = 0, more = 0;
    for (; at < keys.length; at++) {
      const d = Object.getOwnPropertyDescriptor(v, keys[at]);
      if (d === undefined || !d.enumerable) continue;
      if (shown >= MAX_ITEMS) {
        more += 1;
        continue;
      }
      if (ins.left === 0) return [...parts, CUT];
      const text = property(ins, v, keys[at], depth);
      if (text !== undefined) {
        parts.push(`${isIdentifier(keys[at]) ? keys[at] : quote(keys[at])}: ${text}`);
        shown += 1;
      }
    }
    if (more > 0) parts.push(moreItems(more));
    return parts;
  }

  // An own property's value as text, without running a getter; `undefined` if it is gone.
  function property(ins, v, key, depth) {
    const d = Object.getOwnPropertyDescriptor(v, key);
    if (d === undefined) return undefined;
    if ("value" in d) return inspect(ins, d.value, depth + 1);
    if (d.get !== undefined) return d.set !== undefined ? "[Getter/Setter]" : "[Getter]";
    return "[Setter]";
  }

  // `ClassName ` for instances of classes, `[Object: null prototype] ` without a prototype.
  function prefixOf(v) {
    const proto = Object.getPrototypeOf(v);
    if (proto === null) return "[Object: null prototype] ";
    if (proto === exec?.sandbox.objectPrototype) return "";
    const c = Object.getOwnPropertyDescriptor(proto, "constructor");
    const n = c && typeof c.value === "function" ? Object.getOwnPropertyDescriptor(c.value, "name") : undefined;
    const name = n && typeof n.value === "string" ? n.value : "";
    return name === "" || name === "Object" ? "" : `${name} `;
  }

  // `Name: message`, then the program's frames.
  function errorText(ins, v) {
    const name = read(ins, dataString(v, "name") ?? "", Infinity);
    const message = read(ins, dataString(v, "message") ?? "", Infinity);
    const head = name === "" ? message : message === "" ? name : `${name}: ${message}`;
    const { text } = stackOf(v);
    if (text === undefined) return head;
    // V8's stack starts with its own heading; the host's frames are left out, as in errors.
    const lines = text.replace(/\n$/, "").split("\n").filter((l) => !HOST_FRAME.test(l));
    const stack = read(ins, lines.map(anonymousFrame).join("\n"), Infinity);
    if (stack.startsWith(head) && head !== "") return stack;
    return stack === "" ? head : `${head}\n${stack}`;
  }

  function emptyItems(n) {
    return `<${n} empty item${n > 1 ? "s" : ""}>`;
  }
  function moreItems(n) {
    return `... ${n} more item${n > 1 ? "s" : ""}`;
  }

  // A string in quotes, as Node picks them: single, else double or backtick when that avoids
  // escaping, else single with escapes.
  function quote(s) {
    const q = !s.includes("'") ? "'" : !s.includes('"') ? '"' : !s.includes("`") && !s.includes("${") ? "`" : "'";
    let out = q;
    for (const c of s) {
      if (c === "\\") out += "\\\\";
      else if (c === "\n") out += "\\n";
      else if (c === "\r") out += "\\r";
      else if (c === "\t") out += "\\t";
      else if (c === q) out += `\\${c}`;
      else out += c;
    }
    return out + q;
  }

  function functionText(f) {
    const d = Object.getOwnPropertyDescriptor(f, "name");
    const name = d && typeof d.value === "string" ? d.value : "";
    const kind = util.types.isAsyncFunction(f) ? "AsyncFunction" : "Function";
    return name === "" ? `[${kind} (anonymous)]` : `[${kind}: ${name}]`;
  }

  // A console line within what the log and the output can still take.
  function format(args, exec) {
    const budget = Math.max(0, Math.min(exec.limits.max_log_bytes - exec.logBytes, exec.limits.max_output_bytes - exec.attempted)) + 1;
    let text;
    try {
      // Copied by index: the program may have replaced its arrays' iterator and methods.
      const list = [];
      for (let i = 0; i < args.length; i++) list.push(args[i]);
      text = line(list, budget);
    } catch {
      text = "a value that could not be shown";
    }
    return text.length > budget ? `${text.slice(0, budget)}…` : text;
  }

  // -- unhandled rejections -----------------------------------------------------------------

  // Tracked here as the QuickJS sandboxes track them, through V8's own hook (Node's, which
  // this isolate replaces, keeps every reason until the program yields: 100,000 rejections in
  // one loop would fill the program's heap): the first 64 kept, the rest counted, and one
  // handled later taken off. What is left when the run ends is reported.
  const MAX_UNHANDLED = 64;
  const SHOWN_UNHANDLED = 10;
  const { internalBinding } = require("internal/test/binding");
  const { setPromiseRejectCallback, promiseRejectEvents } = internalBinding("task_queue");
  setPromiseRejectCallback((type, promise, reason) => {
    if (exec === null) return;
    if (type === promiseRejectEvents.kPromiseRejectWithNoHandler) {
      if (exec.unhandled.length < MAX_UNHANDLED) exec.unhandled.push([promise, reason]);
      else exec.unhandledMore += 1;
    } else if (type === promiseRejectEvents.kPromiseHandlerAddedAfterReject) {
      const at = exec.unhandled.findIndex(([p]) => p === promise);
      if (at >= 0) exec.unhandled.splice(at, 1);
      else if (exec.unhandledMore > 0) exec.unhandledMore -= 1;
    }
  });

  // Runs the isolate's own queue of ticks (promise jobs of the host's realm, which only an
  // `import()` refused makes: a run without one skips this), then the context's jobs they
  // queued. Node settles a refused `import()` through an async function of its own: a few
  // rounds. Whether there was anything to run.
  function tick(exec) {
    if (!exec.imported) return false;
    for (let round = 0; round < 3; round++) {
      try {
        process._tickCallback();
      } catch {
        // A job of the host's realm that failed is not the program's.
      }
      EMPTY.runInContext(exec.sandbox.context);
    }
    return true;
  }

  function unhandledLines(exec, logs) {
    const PREFIX = "Unhandled promise rejection: ";
    tick(exec);
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
      return cut(line([reason], max));
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

  // A string data property of `v` or of its prototypes (no getter runs).
  function dataString(v, key) {
    for (let o = v; o !== null; o = Object.getPrototypeOf(o)) {
      const d = Object.getOwnPropertyDescriptor(o, key);
      if (d) return "value" in d && typeof d.value === "string" ? d.value : undefined;
    }
    return undefined;
  }

  // An error's stack: through V8's own accessor (which runs no program code; it returns what
  // the program assigned, if it did), or a string the program defined.
  function stackOf(v) {
    const d = Object.getOwnPropertyDescriptor(v, "stack");
    if (d !== undefined && exec !== null && d.get === exec.sandbox.stack) {
      try {
        const text = Reflect.apply(d.get, v, []);
        return { text: typeof text === "string" ? text : undefined };
      } catch {
        return { text: undefined };
      }
    }
    return { text: dataString(v, "stack") };
  }

  // A frame of the host's (Node's, this script's, the prelude's), which means nothing to the
  // agent.
  const HOST_FRAME = /^\s+at (?:.*\()?(?:node:|\[worker eval\]|codemode:prelude)/;
  // An anonymous frame is written as QuickJS writes it, so stacks read alike whatever the
  // engine: `at <anonymous> (agent.ts:3:7)`.
  const anonymousFrame = (l) => l.replace(/^(\s+at )((?:agent\.ts|skills\/[^:]*):\d+:\d+)$/, "$1<anonymous> ($2)");

  // Frames only, and only the program's (V8 starts with `Name: message`).
  function programFrames(stack) {
    const lines = stack.split("\n");
    const first = lines.findIndex((l) => /^\s+at /.test(l));
    return first < 0 ? "" : lines.slice(first)
      .filter((l) => l.includes("agent.ts:") || l.includes("skills/"))
      .map(anonymousFrame)
      .join("\n");
  }

  function errorOf(reason, kind) {
    const max = exec === null ? 1 << 20 : exec.limits.max_result_bytes;
    if (reason === null || (typeof reason !== "object" && typeof reason !== "function")) {
      let text;
      try { text = line([reason], max); } catch { text = "a value"; }
      return { kind, message: `Uncaught ${text}`, name: "Error" };
    }
    if (util.types.isProxy(reason)) return { kind, message: "Uncaught Proxy (its traps are not run)", name: "Error" };
    const ownString = (key) => {
      const d = Object.getOwnPropertyDescriptor(reason, key);
      return d && typeof d.value === "string" ? d.value.slice(0, 1024) : undefined;
    };
    const cut = (text) => (text.length > max ? `${text.slice(0, max)}… [${text.length - max} more characters]` : text);
    const e = { kind, message: cut(dataString(reason, "message") ?? ""), name: cut(dataString(reason, "name") ?? "Error") };
    const { text } = stackOf(reason);
    if (text !== undefined) {
      const stack = programFrames(text.slice(0, max + 4096));
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
    // Filled in by the isolate that read the run, if the host sent none (they had not changed).
    names = spec.names;
    let sandbox = contexts.get(spec.sandbox);
    if (sandbox === undefined && spec.ran) {
      return finish(null, { kind: "internal", message: "the V8 isolate that held this session's sandbox ended, and its state with it" });
    }
    if (sandbox === undefined) {
      // The spare has the tools of its day: a registry changed since gets a context of its own.
      sandbox = spare !== null && spare.names === names ? spare : build();
      spare = null;
    }
    if (spec.session !== null) contexts.set(spec.sandbox, sandbox);
    if (sandbox.runs > 0) sandbox.exports.reset();
    sandbox.runs += 1;
    exec = {
      sandbox, spec, limits: spec.limits, logs: [], logBytes: 0, dropped: 0, lineCut: false, attempted: 0,
      nextId: 1, calls: 0, resolvers: new Map(), redact: spec.redact, stream: spec.stream,
      unhandled: [], unhandledMore: 0, imported: false, ticked: false,
    };
    logsFrom(exec);
    const compiled = spec.compiled;
    let main;
    try {
      if (sandbox.names !== names) install(sandbox);
      // The program is a module for QuickJS; here a strict script whose completion value is
      // the default export, at the same positions ("use strict"; takes the place of
      // `export default `).
      const js = compiled.js.startsWith("export default ") ? `"use strict";  ${compiled.js.slice(15)}` : `"use strict";${compiled.js}`;
      let program;
      try {
        program = script(js);
      } catch (e) {
        return finish(null, errorOf(e, "syntax"));
      }
      main = sandbox.exports.start(program.runInContext(sandbox.context), compiled.call_default);
    } catch (e) {
      return finish(null, errorOf(e, "exception"));
    }
    return drive(sandbox.watch(main));
  }

  // The tool names, sent by the host when they change (to the process: an isolate started
  // later gets them from the main thread).
  let names = workerData.names;

  // The tools as globals, by the names this isolate has now.
  function install(sandbox) {
    let first = 0;
    for (const [js, tools] of names) {
      if (js === "skills") sandbox.exports.installSkills(js, tools);
      else sandbox.exports.install(js, tools, first);
      first += tools.length;
    }
    sandbox.names = names;
  }

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
      if (!exec.ticked && tick(exec)) {
        exec.ticked = true;
        continue;
      }
      exec.ticked = false;
      const { header, body } = question({ t: "next" });
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
  // isolate and says so itself). An isolate other than the home one gives the socket back.
  function end(frame) {
    const run = Atomics.load(state, RUN);
    if (run <= 0 || Atomics.compareExchange(state, RUN, run, 0) !== run) halt();
    Atomics.store(shared, RUNNING, 0);
    const session = exec && exec.spec.session !== null;
    if (exec && !frame.paused && !session) contexts.delete(exec.spec.sandbox);
    exec = null;
    send(frame);
    // Building the spare follows at once: the host's thread is let go first (NAP in
    // src/sandbox/wire.rs says why).
    if (warm && spare === null) Atomics.wait(nap, 0, 0, 0.05);
    const home = Atomics.load(shared, HOME);
    if (home !== id) handOver(shared, home);
  }

  // A run begins (or goes on after a pause): the main thread can now stop it.
  let runs = 0;
  const begun = begunOf(state);
  function begin() {
    runs += 1;
    begun[0] = process.hrtime.bigint();
    Atomics.store(state, RUN, runs);
    Atomics.store(shared, RUNNING, id);
  }

  function resume(header) {
    const sandbox = contexts.get(header.sandbox);
    if (!sandbox || !sandbox.paused) return finish(null, { kind: "internal", message: "no execution is paused in this sandbox" });
    exec = sandbox.paused.exec;
    const watch = sandbox.paused.watch;
    sandbox.paused = null;
    logsFrom(exec);
    return drive(watch);
  }

  // The lines of the run so far are the ones it keeps from now (a paused run sent its own).
  function logsFrom(exec) {
    state[LOG_BYTES] = 0;
    state[LOG_DROPPED] = exec.dropped;
    state[LOG_CUT] = exec.lineCut ? 1 : 0;
    state[LOG_MAX_LINES] = Math.min(exec.limits.max_log_lines, 2 ** 31 - 1);
    state[LOG_MAX_BYTES] = Math.min(exec.limits.max_log_bytes, 2 ** 31 - 1);
  }

  // A frame the main thread placed here: this isolate now reads the socket for its run.
  function serve(header) {
    begin();
    if (header.t === "run") start(header);
    else resume(header);
  }

  // A frame read from the socket by the home isolate: served here, or passed to the main
  // thread (a session's isolate, a new heap limit), which places it and the socket with it.
  function route(header) {
    switch (header.t) {
      case "run":
        // The host sends the tool names when they change; an isolate started later (another
        // home, a session's) gets them from the main thread, or with the run placed in it.
        if (header.names === null) header.names = names;
        else parentPort.postMessage({ t: "names", names: header.names });
        if (header.session !== null || header.limits.memory_bytes !== memoryBytes) return forward(header, true);
        return serve(header);
      case "resume":
        if (!contexts.has(header.sandbox)) return forward(header, true);
        return serve(header);
      case "drop":
        if (contexts.has(header.sandbox)) return void contexts.delete(header.sandbox);
        return forward(header, false);
    }
    // Anything else answers a question nobody asks any more.
  }

  function forward(header, release) {
    if (release) Atomics.store(shared, HOLDER, 0);
    parentPort.postMessage(header);
  }

  // A home isolate makes its spare before it reads the first frame (the first one before the
  // process says hello: the engine's start pays for it), and again after each run, while the
  // host reads its outcome.
  const refill = () => {
    if (warm && spare === null) spare = build();
  };
  refill();
  if (id === 1) {
    // What sealed the process was done before it started: the host knows it already.
    const seal = { seccomp: false, namespaces: [], namespaces_refused: null, landlock: "", rlimits: [] };
    send({ t: "hello", seal });
  }

  // The loop: a frame the main thread placed here, or, while this isolate holds the socket,
  // the host's next frame.
  // A placed frame is served only once the socket is this isolate's: a run that ended before
  // the main thread handed it over would give it back first, and the hand-over would then
  // leave it here.
  for (;;) {
    const epoch = Atomics.load(shared, EPOCH);
    if (Atomics.load(shared, HOLDER) !== id) {
      Atomics.wait(shared, EPOCH, epoch);
      continue;
    }
    const placed = receiveMessageOnPort(port);
    if (placed !== undefined) serve(placed.message);
    else route(readFrame(Infinity, false).header);
    refill();
  }
}

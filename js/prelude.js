// The sandbox's own JavaScript. It runs once per sandbox, before any agent code. build.rs wraps
// it in a strict-mode function returning `init` and compiles that to bytecode, so agent code
// can neither see nor replace its names.
//
// Everything it needs from the built-ins is captured here, before agent code can patch a
// prototype: a program that redefines `Array.prototype.join` or `Map.prototype.set` changes its
// own behaviour, not the bridge's.

const { freeze, create, defineProperty, getOwnPropertyDescriptor } = Object;
const { apply } = Reflect;
const ErrorCtor = Error;
const TypeErrorCtor = TypeError;
const NumberCtor = Number;

// Built-ins the host calls when it formats console arguments and reads results and errors
// (console formatting itself is in src/sandbox/inspect.rs, on the host).
const builtins = freeze({
  __proto__: null,
  dateToISOString: Date.prototype.toISOString,
  regexpToString: RegExp.prototype.toString,
  stackGetter: getOwnPropertyDescriptor(ErrorCtor.prototype, "stack")?.get,
});

// -- the bridge -----------------------------------------------------------------------------

function init(host) {
  // `call(target, args)` returns the call's promise; the host keeps its resolving functions
  // and settles it. `target` is a tool's position in the registry, or a built-in's name.
  const { call, log, timer, clearTimer } = host;
  // Timer id → callback.
  const timers = create(null);

  const toolError = (spec) => {
    const e = spec.name === "TypeError" ? new TypeErrorCtor(spec.message) : new ErrorCtor(spec.message);
    if (spec.name !== "TypeError") e.name = spec.name;
    e.tool = spec.tool;
    if (spec.code !== undefined) e.code = spec.code;
    if (spec.path !== undefined) e.path = spec.path;
    return e;
  };

  // Set when the host reports the output limit passed. The program is being stopped; the
  // throw ends it now unless it catches, and later lines are not even formatted.
  let closed = false;
  const emit = (level, args) => {
    if (closed || !log(level, args, builtins)) {
      closed = true;
      throw new ErrorCtor("the output limit is reached");
    }
  };
  // Literals, frozen: each property ends enumerable, read-only and fixed, as defineProperty
  // would leave it, for less work per sandbox. Methods carry their names and no prototype.
  const consoleObject = freeze({
    __proto__: null,
    log(...args) { emit("log", args); },
    info(...args) { emit("info", args); },
    warn(...args) { emit("warn", args); },
    error(...args) { emit("error", args); },
    debug(...args) { emit("debug", args); },
  });

  const timerFunctions = {
    setTimeout(callback, ms, ...args) {
      if (typeof callback !== "function") throw new TypeErrorCtor("setTimeout: callback must be a function");
      const delay = NumberCtor(ms);
      const id = timer(delay > 0 ? delay : 0);
      timers[id] = () => apply(callback, undefined, args);
      return id;
    },
    clearTimeout(id) {
      if (typeof id === "number" && timers[id] !== undefined) {
        delete timers[id];
        clearTimer(id);
      }
    },
  };

  // Discovery, answered by the host from the registry (see `builtin` in src/bridge.rs).
  const codemode = freeze({
    __proto__: null,
    version: host.version,
    list() {
      return call("list", {});
    },
    search(query, options) {
      const o = options === undefined || options === null ? {} : options;
      return call("search", { query, detail: o.detail, limit: o.limit });
    },
    describe(names) {
      return call("describe", { names });
    },
  });

  const global = (name, value) => defineProperty(globalThis, name, { value, writable: true, configurable: true });
  global("console", consoleObject);
  global("setTimeout", timerFunctions.setTimeout);
  global("clearTimeout", timerFunctions.clearTimeout);
  global("codemode", codemode);

  return {
    // Installs `globalThis[namespace]` with one function per tool; the tools are the
    // registry's, from position `first` on.
    install(namespace, tools, first) {
      const ns = create(null);
      for (let i = 0; i < tools.length; i++) {
        const name = tools[i];
        const target = first + i;
        // A plain assignment: `ns` has no prototype, and freezing leaves each tool read-only.
        ns[name] = { [name](args) { return call(target, args); } }[name];
      }
      global(namespace, freeze(ns));
    },
    // Runs a due timer's callback.
    fire(id) {
      const callback = timers[id];
      if (callback === undefined) return;
      delete timers[id];
      callback();
    },
    // The error a failed tool call rejects with.
    toolError,
    // The program's promise: awaits the module's default export, calling it first when the
    // agent sent a function expression.
    start(value, callIt) {
      return (async () => (callIt ? await value() : await value))();
    },
    builtins,
  };
}

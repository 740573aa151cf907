// The sandbox's own JavaScript. It runs once per sandbox, before any agent code. build.rs wraps
// it in a strict-mode function returning `init` and compiles that to bytecode, so agent code
// can neither see nor replace its names.
//
// Everything it needs from the built-ins is captured here, before agent code can patch a
// prototype: a program that redefines `Array.prototype.join` or `Map.prototype.set` changes its
// own behaviour, not the bridge's.

const { freeze, create, defineProperty, getOwnPropertyDescriptor, setPrototypeOf } = Object;
const { apply } = Reflect;
const ErrorCtor = Error;
const TypeErrorCtor = TypeError;
const NumberCtor = Number;
const ProxyCtor = Proxy;

// Built-ins the host calls when it formats console arguments and reads results and errors
// (console formatting itself is in src/sandbox/inspect.rs, on the host).
const builtins = freeze({
  __proto__: null,
  dateToISOString: Date.prototype.toISOString,
  regexpToString: RegExp.prototype.toString,
  stackGetter: getOwnPropertyDescriptor(ErrorCtor.prototype, "stack")?.get,
  // Reads a bounded start of a long string, so the host never copies more than it keeps.
  stringSlice: String.prototype.slice,
  // Measures a BigInt in linear time (radix 16) before it is printed in decimal (quadratic).
  bigintToString: BigInt.prototype.toString,
});

// -- the bridge -----------------------------------------------------------------------------

function init(host) {
  // `call(target, args, site)` returns the call's promise; the host keeps its resolving
  // functions and settles it. `target` is a tool's position in the registry, or a built-in's
  // name. `site` is an error made at the call, so that a failed call's error carries the
  // agent's line and stack; it becomes that error.
  const { call, log, timer, clearTimer, unknownTool, skill } = host;
  // Timer id → callback.
  const timers = create(null);

  const toolError = (spec, site) => {
    const e = site instanceof ErrorCtor ? site : new ErrorCtor();
    if (spec.name === "TypeError") setPrototypeOf(e, TypeErrorCtor.prototype);
    else e.name = spec.name;
    e.message = spec.message;
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
      return call("list", {}, new ErrorCtor());
    },
    search(query, options) {
      const o = options === undefined || options === null ? {} : options;
      return call("search", { query, detail: o.detail, limit: o.limit }, new ErrorCtor());
    },
    describe(names) {
      return call("describe", { names }, new ErrorCtor());
    },
    readResource(server, uri) {
      return call("readResource", { server, uri }, new ErrorCtor());
    },
    // A session's values, kept by the host: they outlive the sandbox. `undefined` removes one.
    async store(key, value) {
      await call("store", value === undefined ? { key } : { key, value }, new ErrorCtor());
    },
    async load(key) {
      const found = await call("load", { key }, new ErrorCtor());
      return found.found ? found.value : undefined;
    },
  });

  const global = (name, value) => defineProperty(globalThis, name, { value, writable: true, configurable: true });
  global("console", consoleObject);
  global("setTimeout", timerFunctions.setTimeout);
  global("clearTimeout", timerFunctions.clearTimeout);
  global("codemode", codemode);

  // Names a program may probe on any object without meaning a tool (`await ns`, `JSON.stringify`).
  const probes = freeze({
    __proto__: null, then: true, toJSON: true, constructor: true, valueOf: true, toString: true,
    toLocaleString: true,
  });
  // The prototype of every namespace: reached only for names that are not its tools, so a
  // call of a tool pays nothing for it, and a misspelt tool says what it is and what was meant
  // instead of "not a function". One handler for all; each target holds its namespace's name.
  const namespaceOf = Symbol();
  const missingHandler = freeze({
    __proto__: null,
    get(target, key) {
      if (typeof key !== "string" || probes[key] === true || key === "__proto__") return undefined;
      throw new TypeErrorCtor(unknownTool(target[namespaceOf], key));
    },
  });
  const missing = (namespace) => new ProxyCtor({ __proto__: null, [namespaceOf]: namespace }, missingHandler);

  return {
    // Installs `globalThis[namespace]` with one function per tool; the tools are the
    // registry's, from position `first` on.
    install(namespace, tools, first) {
      const ns = create(null);
      for (let i = 0; i < tools.length; i++) {
        const name = tools[i];
        const target = first + i;
        // A plain assignment: `ns` has no prototype yet, and freezing leaves each tool read-only.
        ns[name] = { [name](args) { return call(target, args, new ErrorCtor()); } }[name];
      }
      setPrototypeOf(ns, missing(namespace));
      global(namespace, freeze(ns));
    },
    // Installs `globalThis.skills`: each saved program is compiled by the host the first time
    // this program calls it, and then runs here, as a function of this program.
    installSkills(namespace, names) {
      const ns = create(null);
      const compiled = create(null);
      for (let i = 0; i < names.length; i++) {
        const name = names[i];
        ns[name] = { [name](input) {
          let run = compiled[name];
          if (run === undefined) run = compiled[name] = skill(name);
          return run(input);
        } }[name];
      }
      setPrototypeOf(ns, missing(namespace));
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
    // Before the next execution of a session: the last one's timers died with its bridge.
    reset() {
      for (const id in timers) delete timers[id];
    },
    // The program's promise: awaits the module's default export, calling it first when the
    // agent sent a function expression.
    start(value, callIt) {
      return (async () => (callIt ? await value() : await value))();
    },
    builtins,
  };
}

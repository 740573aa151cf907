// The sandbox's own JavaScript. It runs once per sandbox, before any agent code, as a module
// (compiled to bytecode once per engine), so agent code can neither see nor replace it.
//
// Everything it needs from the built-ins is captured here, before agent code can patch a
// prototype: a program that redefines `Array.prototype.join` or `Map.prototype.set` changes its
// own behaviour, not the bridge's.

const { freeze, create, defineProperty, getOwnPropertyDescriptor, getPrototypeOf, keys } = Object;
const { isArray } = Array;
const { apply } = Reflect;
const PromiseCtor = Promise;
const ErrorCtor = Error;
const TypeErrorCtor = TypeError;
const StringCtor = String;
const NumberCtor = Number;
const stringify = JSON.stringify;
const objectToString = Object.prototype.toString;
const dateToISOString = Date.prototype.toISOString;
const errorToString = Error.prototype.toString;
const arrayJoin = Array.prototype.join;
const arrayPush = Array.prototype.push;
const arrayPop = Array.prototype.pop;
const arrayIndexOf = Array.prototype.indexOf;
const stringReplace = String.prototype.replace;
const stringSlice = String.prototype.slice;
const stringIndexOf = String.prototype.indexOf;
const mathFloor = Math.floor;
const symbolToString = Symbol.prototype.toString;
const isNaNFn = NumberCtor.isNaN;
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const regexpTest = RegExp.prototype.test;
const regexpToString = RegExp.prototype.toString;

const join = (arr, sep) => apply(arrayJoin, arr, [sep]);
const push = (arr, v) => apply(arrayPush, arr, [v]);

// -- console formatting, close to Node's util.inspect for plain data ------------------------

const MAX_DEPTH = 2;
const MAX_ITEMS = 100;
const MAX_STRING = 10000;

function quote(s) {
  return "'" + apply(stringReplace, s, [/[\\'\n\r\t]/g, (c) => ({ "\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t" })[c]]) + "'";
}

function keyText(k) {
  return apply(regexpTest, IDENT, [k]) ? k : quote(k);
}

function inspect(v, depth, seen) {
  switch (typeof v) {
    case "string":
      return depth === 0 ? v : quote(v.length > MAX_STRING ? apply(stringSlice, v, [0, MAX_STRING]) + "..." : v);
    case "number":
      return v === 0 && 1 / v < 0 ? "-0" : StringCtor(v);
    case "bigint":
      return StringCtor(v) + "n";
    case "boolean":
    case "undefined":
      return StringCtor(v);
    case "symbol":
      return apply(symbolToString, v, []);
    case "function":
      return v.name ? "[Function: " + v.name + "]" : "[Function (anonymous)]";
  }
  if (v === null) return "null";
  if (apply(arrayIndexOf, seen, [v]) !== -1) return "[Circular *]";
  const tag = apply(objectToString, v, []);
  if (tag === "[object Error]") {
    let stack;
    try { stack = v.stack; } catch { stack = undefined; }
    const head = apply(errorToString, v, []);
    return typeof stack === "string" && stack !== "" ? head + "\n" + apply(stringReplace, stack, [/\n$/, ""]) : head;
  }
  if (tag === "[object Date]") {
    try { return apply(dateToISOString, v, []); } catch { return "Invalid Date"; }
  }
  if (tag === "[object RegExp]") return apply(regexpToString, v, []);
  if (tag === "[object Promise]") return "Promise { <pending> }";
  const array = isArray(v);
  if (depth > MAX_DEPTH) return array ? "[Array]" : "[Object]";
  push(seen, v);
  const parts = [];
  let count = 0;
  let more = 0;
  const own = keys(v);
  if (array) {
    for (let i = 0; i < v.length; i++) {
      if (count >= MAX_ITEMS) { more = v.length - i; break; }
      const d = getOwnPropertyDescriptor(v, i);
      push(parts, d === undefined ? "<empty>" : d.get || d.set ? "[Getter/Setter]" : inspect(d.value, depth + 1, seen));
      count++;
    }
  }
  for (let i = 0; i < own.length; i++) {
    const k = own[i];
    if (array && StringCtor(NumberCtor(k) >>> 0) === k) continue;
    if (count >= MAX_ITEMS) { more += 1; continue; }
    const d = getOwnPropertyDescriptor(v, k);
    const text = d.get ? (d.set ? "[Getter/Setter]" : "[Getter]") : d.set ? "[Setter]" : inspect(d.value, depth + 1, seen);
    push(parts, keyText(k) + ": " + text);
    count++;
  }
  apply(arrayPop, seen, []);
  if (more > 0) push(parts, "... " + more + " more item" + (more > 1 ? "s" : ""));
  const proto = getPrototypeOf(v);
  let prefix = "";
  if (!array && proto !== null && proto !== Object.prototype) {
    const ctor = getOwnPropertyDescriptor(proto, "constructor");
    const name = ctor && typeof ctor.value === "function" ? ctor.value.name : "";
    if (name && name !== "Object") prefix = name + " ";
  } else if (proto === null && !array) {
    prefix = "[Object: null prototype] ";
  }
  if (parts.length === 0) return prefix + (array ? "[]" : "{}");
  const oneLine = join(parts, ", ");
  // Node's rule (util.inspect, breakLength 80): one line when the entries, their separators
  // and the indentation fit.
  if (oneLine.length - 2 * (parts.length - 1) + 2 * parts.length + 11 + 2 * depth <= 80 && apply(stringIndexOf, oneLine, ["\n"]) === -1) {
    return prefix + (array ? "[ " + oneLine + " ]" : "{ " + oneLine + " }");
  }
  const pad = "  ";
  const inner = join(parts, ",\n");
  const indented = apply(stringReplace, inner, [/\n/g, "\n" + pad]);
  return prefix + (array ? "[\n" + pad + indented + "\n]" : "{\n" + pad + indented + "\n}");
}

function format(args) {
  let out = "";
  let i = 0;
  const first = args[0];
  if (typeof first === "string" && args.length > 1 && apply(stringIndexOf, first, ["%"]) !== -1) {
    i = 1;
    out = apply(stringReplace, first, [/%[sdifjoOc%]/g, (spec) => {
      if (spec === "%%") return "%";
      if (i >= args.length) return spec;
      const a = args[i++];
      switch (spec) {
        case "%s": return typeof a === "string" ? a : inspect(a, 1, []);
        case "%d": case "%i": { const n = NumberCtor(a); return spec === "%i" && !isNaNFn(n) ? StringCtor(n < 0 ? -mathFloor(-n) : mathFloor(n)) : StringCtor(n); }
        case "%f": return StringCtor(NumberCtor(a));
        case "%j": try { return stringify(a); } catch { return "[Circular]"; }
        case "%c": return "";
        default: return inspect(a, 1, []);
      }
    }]);
  } else if (args.length > 0) {
    out = inspect(first, 0, []);
    i = 1;
  }
  for (; i < args.length; i++) out += " " + inspect(args[i], 0, []);
  return out;
}

// -- the bridge -----------------------------------------------------------------------------

export function init(host) {
  const { call, log, timer, clearTimer } = host;
  // id → [resolve, reject] for tool calls, [callback] for timers.
  const pending = create(null);

  function toolError(spec) {
    const e = spec.name === "TypeError" ? new TypeErrorCtor(spec.message) : new ErrorCtor(spec.message);
    if (spec.name !== "TypeError") e.name = spec.name;
    e.tool = spec.tool;
    if (spec.code !== undefined) e.code = spec.code;
    if (spec.path !== undefined) e.path = spec.path;
    return e;
  }

  function callTool(namespace, name, args) {
    return new PromiseCtor((resolve, reject) => {
      pending[call(namespace, name, args)] = [resolve, reject];
    });
  }

  const consoleObject = create(null);
  // Set when the host reports the output limit passed. The program is being stopped; the
  // throw ends it now unless it catches, and later lines are not even formatted.
  let closed = false;
  for (const level of ["log", "info", "warn", "error", "debug"]) {
    const method = {
      [level](...args) {
        if (closed || !log(level, format(args))) {
          closed = true;
          throw new ErrorCtor("the output limit is reached");
        }
      },
    }[level];
    defineProperty(consoleObject, level, { value: method, enumerable: true });
  }
  defineProperty(globalThis, "console", { value: freeze(consoleObject), writable: true, configurable: true });

  function setTimeout(callback, ms, ...args) {
    if (typeof callback !== "function") throw new TypeErrorCtor("setTimeout: callback must be a function");
    const delay = NumberCtor(ms);
    const id = timer(delay > 0 ? delay : 0);
    pending[id] = [() => apply(callback, undefined, args)];
    return id;
  }
  function clearTimeout(id) {
    if (typeof id === "number" && pending[id] !== undefined && pending[id].length === 1) {
      delete pending[id];
      clearTimer(id);
    }
  }
  defineProperty(globalThis, "setTimeout", { value: setTimeout, writable: true, configurable: true });
  defineProperty(globalThis, "clearTimeout", { value: clearTimeout, writable: true, configurable: true });

  const codemode = create(null);
  defineProperty(codemode, "version", { value: host.version, enumerable: true });
  // Discovery, answered by the host from the registry (see `builtin` in src/bridge.rs).
  const discovery = {
    list() {
      return callTool("codemode", "list", {});
    },
    search(query, options) {
      const o = options === undefined || options === null ? {} : options;
      return callTool("codemode", "search", { query, detail: o.detail, limit: o.limit });
    },
    describe(names) {
      return callTool("codemode", "describe", { names });
    },
  };
  for (const name of ["list", "search", "describe"]) {
    defineProperty(codemode, name, { value: discovery[name], enumerable: true });
  }
  defineProperty(globalThis, "codemode", { value: freeze(codemode), writable: true, configurable: true });

  return {
    // Installs `globalThis[namespace]` with one function per tool.
    install(namespace, tools) {
      const ns = create(null);
      for (let i = 0; i < tools.length; i++) {
        const name = tools[i];
        const fn = { [name](args) { return callTool(namespace, name, args); } }[name];
        defineProperty(ns, name, { value: fn, enumerable: true });
      }
      defineProperty(globalThis, namespace, { value: freeze(ns), writable: true, configurable: true });
    },
    // Delivers a tool result (ok), a tool error (!ok) or a due timer.
    settle(id, ok, value) {
      const entry = pending[id];
      if (entry === undefined) return;
      delete pending[id];
      if (entry.length === 1) entry[0]();
      else if (ok) entry[0](value);
      else entry[1](toolError(value));
    },
    // The program's promise: awaits the module's default export, calling it first when the
    // agent sent a function expression.
    start(value, callIt) {
      return (async () => (callIt ? await value() : await value))();
    },
    format,
    // Built-ins the host calls when it reads results and errors.
    dateToISOString,
    stackGetter: getOwnPropertyDescriptor(ErrorCtor.prototype, "stack")?.get,
  };
}

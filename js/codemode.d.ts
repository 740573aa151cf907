// The sandbox's own globals, besides the standard ECMAScript built-ins and one namespace per
// tool source. Programs are checked against these together with the tools' declarations.

/** Console output is captured and returned with the result; nothing is printed host-side. */
declare const console: Console;
interface Console {
  log(...data: unknown[]): void;
  info(...data: unknown[]): void;
  warn(...data: unknown[]): void;
  error(...data: unknown[]): void;
  debug(...data: unknown[]): void;
}

/** Runs `callback` after `ms` milliseconds; bounded by the execution's deadline. */
declare function setTimeout(callback: (...args: any[]) => void, ms?: number, ...args: any[]): number;
declare function clearTimeout(id: number | undefined): void;
/** Runs `callback` once the current job ends, before any timer or tool result. */
declare function queueMicrotask(callback: () => void): void;

/** A clock for measuring durations within the execution. */
declare const performance: {
  /** Milliseconds since an arbitrary start, with sub-millisecond precision. */
  now(): number;
};

/** QuickJS's error for engine limits, such as a regular expression too large to compile. */
declare var InternalError: ErrorConstructor;

/** The runtime: its version, tool discovery (not counted as tool calls) and MCP resources. */
declare namespace codemode {
  /** The codemode version. */
  const version: string;

  interface NamespaceInfo {
    /** The name programs use: `await <namespace>.<tool>(args)`. */
    namespace: string;
    /** The name it was registered under. */
    name: string;
    description: string;
    /** How many tools it holds. */
    tools: number;
  }

  interface SearchHit {
    /** `namespace.tool`, as a program calls it. */
    path: string;
    /** The name the tool was registered under. */
    name: string;
    /** Relevance; only the order is meaningful. */
    score: number;
    /** With detail "summary" or "full": `tool(args: Input): Promise<Output>`. */
    signature?: string;
    /** With detail "summary" or "full": the first sentence of the description. */
    summary?: string;
    /** With detail "full": the tool's complete declarations. */
    declarations?: string;
  }

  /** The tool namespaces, with tool counts and descriptions. */
  function list(): Promise<NamespaceInfo[]>;

  /**
   * Tools ranked for `query` (names, descriptions and parameter names).
   *
   * @param options.detail "name", "summary" (default) or "full"
   * @param options.limit 1 to 100, default 10
   */
  function search(
    query: string,
    options?: { detail?: "name" | "summary" | "full"; limit?: number },
  ): Promise<SearchHit[]>;

  /** TypeScript declarations of the named tools (`"ns.tool"`) or whole namespaces (`"ns"`). */
  function describe(names: string | string[]): Promise<string>;

  /**
   * Reads a resource of an MCP server (its namespace) by URI: how a `ResourceLink` in a result
   * is followed. Counts as a tool call; fails with code `unknown_server` for a namespace that
   * is not an MCP server.
   */
  function readResource(server: string, uri: string): Promise<ResourceContents[]>;

  /**
   * Keeps a JSON value under `key` for the later executions of this session; it outlives the
   * session's sandbox (a `memory_limit` or `timeout` that replaces it). `undefined` removes the
   * key. Fails outside a session, and past the session's `store_bytes`.
   */
  function store(key: string, value: unknown): Promise<void>;

  /** The value stored under `key` in this session, or `undefined`. */
  function load<T = any>(key: string): Promise<T | undefined>;

  /**
   * What a tool of an MCP server returns when the server declares no output schema (until
   * results have taught codemode its type): the one text block as a `string`, several text
   * blocks as `string[]`, content with anything besides text (images, audio, resources) as the
   * blocks themselves, and no content as `null`.
   */
  type ToolResult = string | string[] | ContentBlock[] | null;

  /** One block of MCP tool content, as the server sent it. */
  type ContentBlock = TextContent | ImageContent | AudioContent | ResourceLink | EmbeddedResource;

  interface TextContent {
    type: "text";
    text: string;
    annotations?: Annotations;
  }
  interface ImageContent {
    type: "image";
    /** Base64. */
    data: string;
    mimeType: string;
    annotations?: Annotations;
  }
  interface AudioContent {
    type: "audio";
    /** Base64. */
    data: string;
    mimeType: string;
    annotations?: Annotations;
  }
  /** A resource the server offers to read. */
  interface ResourceLink {
    type: "resource_link";
    uri: string;
    name: string;
    title?: string;
    description?: string;
    mimeType?: string;
    size?: number;
    annotations?: Annotations;
  }
  /** A resource's contents, sent inline. */
  interface EmbeddedResource {
    type: "resource";
    resource: ResourceContents;
    annotations?: Annotations;
  }
  /** A resource's contents: `text`, or `blob` (base64) for binary data. */
  type ResourceContents =
    | { uri: string; mimeType?: string; text: string }
    | { uri: string; mimeType?: string; blob: string };
  interface Annotations {
    audience?: ("user" | "assistant")[];
    priority?: number;
    lastModified?: string;
  }
}

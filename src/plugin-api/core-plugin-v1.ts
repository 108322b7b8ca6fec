/**
 * The contract an agent core implements. A core receives the run's input and narrow
 * capabilities bound to the run's principal — never a database handle, a provider key or
 * another user's data (DESIGN.md invariant 4). Versioned: breaking changes get `core-v2`.
 */

/** Where a piece of content came from; untrusted provenances are spotlighted in prompts. */
export type ProvenanceV1 =
  | 'user'
  | 'system'
  | 'assistant'
  | `tool:${string}`
  | 'retrieved'
  | 'file'
  | 'web'
  | `agent:${string}`;

/** A part of a message's content. */
export type ContentPartV1 =
  | { readonly type: 'text'; readonly text: string }
  | {
      readonly type: 'tool-call';
      readonly toolCallId: string;
      readonly toolName: string;
      readonly input: unknown;
    }
  | {
      readonly type: 'tool-result';
      readonly toolCallId: string;
      readonly toolName: string;
      readonly output: unknown;
      readonly isError?: boolean;
    };

/** A message as a core sees it. */
export interface MessageV1 {
  readonly role: 'system' | 'user' | 'assistant' | 'tool';
  readonly content: readonly ContentPartV1[];
  readonly provenance: ProvenanceV1;
}

/** A tool the model may call, as described to the model. */
export interface ToolDescriptionV1 {
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments. */
  readonly inputSchema: Readonly<Record<string, unknown>>;
}

/** What the model returned for one call. */
export interface ModelResultV1 {
  readonly text: string;
  readonly toolCalls: readonly {
    readonly toolCallId: string;
    readonly toolName: string;
    readonly input: unknown;
  }[];
  readonly finishReason: 'stop' | 'tool-calls' | 'length' | 'content-filter' | 'error' | 'other';
  readonly usage: {
    readonly inputTokens: number;
    readonly outputTokens: number;
    /** Of `inputTokens`, those the provider served from its prompt cache (billed less). */
    readonly cachedInputTokens?: number;
    readonly estimated: boolean;
  };
}

/** The model capability: every call passes the gateway (invariant 5) and is checkpointed. */
export interface ModelCapabilityV1 {
  generate(request: {
    readonly messages: readonly MessageV1[];
    readonly tools: readonly ToolDescriptionV1[];
    /** Called with each text delta as it streams. */
    readonly onTextDelta?: (delta: string) => void;
  }): Promise<ModelResultV1>;
}

/**
 * The outcome of one tool call through the tool gate. An error may carry a stable `code`
 * (e.g. `credential_reauthorization_required`) and whether trying again later may succeed.
 */
export type ToolOutcomeV1 =
  | { readonly status: 'ok'; readonly output: unknown }
  | {
      readonly status: 'error';
      readonly message: string;
      readonly code?: string;
      readonly retryable?: boolean;
    };

/** The tool capability: permission, validation, approval, timeout and audit happen behind it. */
export interface ToolsCapabilityV1 {
  /** The tools this run may use. */
  readonly available: readonly ToolDescriptionV1[];
  call(request: {
    readonly toolCallId: string;
    readonly toolName: string;
    readonly input: unknown;
  }): Promise<ToolOutcomeV1>;
}

/** Events a core may emit; the harness adds run lifecycle events itself. */
export type CoreEventV1 =
  | { readonly type: 'message-delta'; readonly text: string }
  | { readonly type: 'step-started'; readonly step: number }
  | { readonly type: 'step-finished'; readonly step: number };

/** Logger handed to a core; lines carry the run's ids and pass through redaction. */
export interface CoreLoggerV1 {
  info(message: string, fields?: Readonly<Record<string, unknown>>): void;
  warn(message: string, fields?: Readonly<Record<string, unknown>>): void;
}

/** A JSON value: what memory stores (no `undefined`, functions, `NaN` or class instances). */
export type JsonValueV1 =
  | null
  | boolean
  | number
  | string
  | readonly JsonValueV1[]
  | { readonly [key: string]: JsonValueV1 };

/** One memory entry as {@link MemoryNamespaceV1.list} returns it. */
export interface MemoryEntryV1 {
  readonly key: string;
  readonly value: JsonValueV1;
  /** When the entry was last written (ISO 8601). */
  readonly updatedAt: string;
}

/**
 * A key-value memory of the run's user, scoped by the harness (a core never names a user or a
 * thread). Keys match `^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$` (else `memory_key_invalid`);
 * a value is JSON of at most 16 KiB (else `memory_value_invalid` / `memory_value_too_large`);
 * a user holds at most `memory.maxEntriesPerUser` entries across both namespaces (else
 * `memory_limit_exceeded`). Reads are not checkpointed: a resumed run reads current values.
 * Writes are idempotent (`set` of the same value, `delete`), so a replay after a crash is safe.
 */
export interface MemoryNamespaceV1 {
  /** The value under `key`, or undefined when there is none. */
  get(key: string): Promise<JsonValueV1 | undefined>;
  /** Stores `value` under `key`, replacing any value there. */
  set(key: string, value: JsonValueV1): Promise<void>;
  /** Removes `key`; true when there was an entry. */
  delete(key: string): Promise<boolean>;
  /** Entries in key order, optionally those whose key starts with `prefix` (limit 1–1000, default 100). */
  list(options?: {
    readonly prefix?: string;
    readonly limit?: number;
  }): Promise<readonly MemoryEntryV1[]>;
}

/**
 * The memory capability: `thread` is the run's thread's memory (deleted with the thread);
 * `user` is the user's long-term memory, across threads, usable only while the user has
 * granted the `long_term_memory` consent (else every call throws `consent_required`).
 */
export interface MemoryCapabilityV1 {
  readonly thread: MemoryNamespaceV1;
  readonly user: MemoryNamespaceV1;
}

/** Everything a core gets for one run. */
export interface CoreContextV1 {
  readonly runId: string;
  readonly instructions: string;
  readonly messages: readonly MessageV1[];
  readonly maxSteps: number;
  readonly model: ModelCapabilityV1;
  readonly tools: ToolsCapabilityV1;
  /**
   * Thread and long-term memory of the run's user (see {@link MemoryCapabilityV1}). Brigade
   * always provides it; it is optional in the type only so that contexts built by hand for a
   * `core-v1` core before it existed (unit tests, benchmarks) stay valid, which keeps the
   * addition within `core-v1`.
   */
  readonly memory?: MemoryCapabilityV1;
  emit(event: CoreEventV1): void;
  /** Aborted on cancel, interrupt or timeout; pass it on and stop promptly. */
  readonly signal: AbortSignal;
  readonly logger: CoreLoggerV1;
}

/** What a core returns: the final assistant text, or a reason it stopped early. */
export interface CoreResultV1 {
  readonly text: string;
  readonly finishReason: 'stop' | 'max-steps' | 'length' | 'content-filter';
}

/** An agent core plugin. */
export interface CorePluginV1 {
  readonly specificationVersion: 'core-v1';
  /** Stable id agents refer to (`coreId`). */
  readonly id: string;
  run(context: CoreContextV1): Promise<CoreResultV1>;
}

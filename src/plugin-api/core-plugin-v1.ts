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

/** Everything a core gets for one run. */
export interface CoreContextV1 {
  readonly runId: string;
  readonly instructions: string;
  readonly messages: readonly MessageV1[];
  readonly maxSteps: number;
  readonly model: ModelCapabilityV1;
  readonly tools: ToolsCapabilityV1;
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

/** Why a scripted completion stopped, as the OpenAI Chat Completions API spells it. */
export type MockFinishReason = 'stop' | 'tool_calls' | 'length' | 'content_filter';

/** One function call the mock model makes. */
export interface MockToolCall {
  readonly name: string;
  /**
   * The arguments, sent as JSON; a string is sent as written (arguments that are not JSON, as
   * in an answer cut off at its output limit).
   */
  readonly arguments: Readonly<Record<string, unknown>> | string;
  /** The tool-call id; `call_mock_<n>` (unique per server) when omitted. */
  readonly id?: string;
}

/** Token counts to report instead of the whitespace word counts the server computes. */
export interface MockUsage {
  readonly promptTokens?: number;
  readonly completionTokens?: number;
  /** Prompt tokens served from the provider's prompt cache (`prompt_tokens_details`). */
  readonly cachedTokens?: number;
}

/**
 * What goes wrong with one request. Every field is independent and optional, so effects combine
 * (`{ latencyMs: 50, status: 503 }` waits, then fails). Precedence when several apply to a
 * request: hang, reset, status, then the streaming faults on an otherwise good reply.
 */
export interface MockFaultEffects {
  /** Milliseconds to wait before sending anything (headers included). */
  readonly latencyMs?: number;
  /** Answer with this HTTP error status (429, 500, 502, 503…) and an OpenAI-shaped error body. */
  readonly status?: number;
  /** Sent as `retry-after` (whole seconds) with a status fault. */
  readonly retryAfterSeconds?: number;
  /** Sent as `retry-after-ms`, which the official `openai` client prefers over `retry-after`. */
  readonly retryAfterMs?: number;
  /** Overrides the error message of a status fault. */
  readonly errorMessage?: string;
  /** Never answer; the request stays open until the client aborts or the server closes. */
  readonly hang?: boolean;
  /** Destroy the socket without writing a response. */
  readonly reset?: boolean;
  /** Streaming only: destroy the socket after this many `data:` events. */
  readonly resetAfterChunks?: number;
  /** Streaming only: send one `data:` line that is not JSON right after the role chunk. */
  readonly malformedChunk?: boolean;
  /** Streaming only: milliseconds between consecutive `data:` events. */
  readonly tokenDelayMs?: number;
  /**
   * Leave `usage` out of the answer, as some OpenAI-compatible servers do: no `usage` field in
   * a completion, no usage chunk in a stream (even with `stream_options.include_usage`).
   */
  readonly omitUsage?: boolean;
}

/** A fault that strikes each request with probability `failRate` (0–1), drawn from the seeded PRNG. */
export interface MockProbabilisticFault {
  readonly failRate: number;
  readonly fault: MockFaultEffects;
}

/** A fault to inject: always, or with a probability. */
export type MockFault = MockFaultEffects | MockProbabilisticFault;

/**
 * One scripted model turn. An empty reply is an empty assistant message. `fault` applies to the
 * request that consumed this reply, on top of the server-wide and header faults.
 */
export interface MockReply {
  readonly text?: string;
  readonly toolCalls?: readonly MockToolCall[];
  /** Defaults to `tool_calls` when there are tool calls, else `stop`. */
  readonly finishReason?: MockFinishReason;
  readonly usage?: MockUsage;
  readonly fault?: MockFault | readonly MockFault[];
}

/** One message of a chat request as the client sent it (unvalidated beyond `role`). */
export interface MockChatMessage {
  readonly role: string;
  readonly content?: unknown;
  readonly tool_calls?: unknown;
  readonly tool_call_id?: unknown;
  readonly name?: unknown;
}

/** A parsed `POST /v1/chat/completions` request, as a script sees it. */
export interface MockChatRequest {
  readonly model: string;
  readonly messages: readonly MockChatMessage[];
  /** Names of the function tools offered in `tools`. */
  readonly toolNames: readonly string[];
  readonly stream: boolean;
  /** The whole JSON body, for fields the other properties do not surface. */
  readonly body: Readonly<Record<string, unknown>>;
  /** Request headers, lower-cased, credentials removed (as in {@link MockModelCall}). */
  readonly headers: Readonly<Record<string, string>>;
  /** Zero-based position of this chat request among those the server has received since reset. */
  readonly chatIndex: number;
}

/** Produces the reply to one chat request; may be async. */
export type MockScriptFunction = (request: MockChatRequest) => MockReply | Promise<MockReply>;

/**
 * How the server answers chat requests: a function, or a queue of replies consumed one per
 * request (an exhausted queue answers 400 `mock_script_exhausted`).
 */
export type MockScript = MockScriptFunction | readonly MockReply[];

/** How a recorded call ended. */
export type MockCallOutcome =
  | 'pending'
  | 'completed'
  | 'http-error'
  | 'socket-reset'
  | 'client-aborted'
  | 'server-closed';

/** What the authorization header looked like, without its secret. */
export interface MockAuthorization {
  readonly present: boolean;
  /** The scheme word, e.g. `Bearer`, when present. */
  readonly scheme?: string;
}

/** One HTTP request the server received, updated in place as it finishes. */
export interface MockModelCall {
  readonly method: string;
  /** The path without the query string, e.g. `/v1/chat/completions`. */
  readonly path: string;
  /** Lower-cased headers; `authorization` is left out and other credential headers redacted. */
  readonly headers: Readonly<Record<string, string>>;
  readonly authorization: MockAuthorization;
  /** Parsed JSON body, or `undefined` when there was none or it was not JSON. */
  readonly body: unknown;
  /** Milliseconds since the epoch, from the server's clock. */
  readonly startedAt: number;
  finishedAt: number | undefined;
  outcome: MockCallOutcome;
  /** The HTTP status sent, once headers went out. */
  status: number | undefined;
  /** The fault effects applied to this request after failRate draws, if any. */
  fault: MockFaultEffects | undefined;
  /** The reply the script produced, if it was consulted. */
  reply: MockReply | undefined;
  /**
   * Server-sent events handed to the socket so far (streaming only). It lags behind a slow reader,
   * since the server waits for 'drain' before writing more.
   */
  eventsWritten: number;
}

/** Options of {@link createMockModelServer}. */
export interface MockModelServerOptions {
  /** Defaults to `127.0.0.1`. */
  readonly host?: string;
  /** Defaults to 0: an ephemeral port. */
  readonly port?: number;
  /** When set, every request must carry `Authorization: Bearer <apiKey>` or gets a 401. */
  readonly apiKey?: string;
  /** Model ids listed by `GET /v1/models`; defaults to `['mock-model']`. */
  readonly models?: readonly string[];
  readonly script?: MockScript;
  /** Faults applied to every chat request (see {@link MockFault}). */
  readonly faults?: MockFault | readonly MockFault[];
  /** Seed of the PRNG behind `failRate`; defaults to 1, so runs are repeatable out of the box. */
  readonly seed?: number;
  /** Replaces the seeded PRNG: returns numbers in [0, 1). */
  readonly random?: () => number;
  /** Milliseconds since the epoch; defaults to `Date.now`. */
  readonly clock?: () => number;
  /** Largest accepted request body in bytes (413 beyond it); defaults to 10 MiB. */
  readonly maxBodyBytes?: number;
}

/** A running mock OpenAI-compatible model server. */
export interface MockModelServer {
  /** Base URL to hand to clients as `baseURL`, ending in `/v1`. */
  readonly url: string;
  readonly port: number;
  /** Every request received since start or the last reset, oldest first. */
  readonly calls: readonly MockModelCall[];
  /** Replaces the script (`undefined`: the default script) and rewinds a queue. */
  setScript(script: MockScript | undefined): void;
  /** Replaces the server-wide faults (`undefined`: none). */
  setFaults(faults: MockFault | readonly MockFault[] | undefined): void;
  /** Back to the options given at creation: script, faults, PRNG seed, counters; calls cleared. */
  reset(): void;
  /** Ends open connections (hanging requests included) and stops listening. */
  close(): Promise<void>;
}

import type { RouteDeployment } from '../gateway/model-routes.ts';
import { contextWindowOf } from '../gateway/pricing.ts';
import type { MessageV1, ToolDescriptionV1 } from '../plugin-api/index.ts';

/**
 * Bytes of JSON per token when estimating what fits a context window. Tokenizers average about
 * four bytes of English per token, fewer for code, JSON and non-Latin scripts (three bytes of
 * UTF-8 per CJK character, about one token each); three errs towards leaving a message out
 * rather than sending a prompt the provider refuses.
 */
export const bytesPerToken = 3;

/** Estimated tokens of `value` as JSON (see {@link bytesPerToken}). */
export function estimatedTokens(value: unknown): number {
  return Math.ceil(Buffer.byteLength(JSON.stringify(value) ?? '') / bytesPerToken);
}

/**
 * The context window a run's prompt must fit: the largest of its model's deployments (the
 * gateway refuses a prompt only when it exceeds every one, and a routed call may fall over to
 * any), or undefined when one of them has no known window (nothing is then cut to fit).
 */
export function contextWindowFor(deployments: readonly RouteDeployment[]): number | undefined {
  let largest: number | undefined;
  for (const deployment of deployments) {
    const window = deployment.contextTokens ?? contextWindowOf(deployment.model);
    if (window === undefined) return undefined;
    largest = Math.max(largest ?? 0, window);
  }
  return largest;
}

/** What {@link windowHistory} is given. */
export interface HistoryWindowInput {
  /** The thread's earlier messages, oldest first (the agent's count limit already applied). */
  readonly earlier: readonly MessageV1[];
  /** The run's own messages (its input): always sent. */
  readonly own: readonly MessageV1[];
  /** The agent's limit on earlier messages (null: none). */
  readonly maxMessages: number | null;
  /** The model's context window in tokens, when known. */
  readonly contextTokens: number | undefined;
  /** Tokens the prompt leaves for the answer (the agent's maxOutputTokens). */
  readonly outputTokens: number;
  readonly instructions: string;
  readonly tools: readonly ToolDescriptionV1[];
}

/** The messages a run sends, and how many earlier ones it left out. */
export interface HistoryWindow {
  readonly messages: MessageV1[];
  readonly dropped: number;
}

/**
 * The newest earlier messages that fit, then the run's own. Earlier messages are left out,
 * oldest first, beyond the agent's count limit and while the estimated prompt (instructions,
 * tool descriptions, messages, and room for the answer) exceeds the model's context window; a
 * window that had to cut starts at a user message, so it never opens with a tool result whose
 * call was cut or with an answer to a question that was. Nothing is cut from a history that
 * fits, and the run's own messages are always sent (a prompt too long even so is refused by
 * the gateway as `context_length_exceeded`).
 */
export function windowHistory(input: HistoryWindowInput): HistoryWindow {
  const { earlier, own } = input;
  let start = input.maxMessages === null ? 0 : Math.max(0, earlier.length - input.maxMessages);
  if (input.contextTokens !== undefined) {
    let room =
      input.contextTokens -
      input.outputTokens -
      estimatedTokens(input.instructions) -
      (input.tools.length === 0 ? 0 : estimatedTokens(input.tools)) -
      own.reduce((sum, message) => sum + estimatedTokens(message.content), 0);
    let fits = earlier.length;
    while (fits > start) {
      const cost = estimatedTokens((earlier[fits - 1] as MessageV1).content);
      if (cost > room) break;
      room -= cost;
      fits -= 1;
    }
    start = fits;
  }
  if (start > 0) {
    while (start < earlier.length && (earlier[start] as MessageV1).role !== 'user') start += 1;
  }
  return { messages: [...earlier.slice(start), ...own], dropped: start };
}

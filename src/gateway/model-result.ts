import type { ModelResultV1 } from '../plugin-api/index.ts';
import { fromProviderToolName } from './call-settings.ts';
import {
  countAnswerTokens,
  createPromptTokens,
  type Prompt,
  type PromptTokens,
  tokenizerOf,
} from './token-count.ts';

type SdkFinishReason = 'stop' | 'length' | 'content-filter' | 'tool-calls' | 'error' | 'other';

/** What {@link toResult} needs of the request: the prompt, to count it when usage is missing. */
export interface ResultRequest extends Prompt {
  /** The model that answered (its id, with or without the provider): picks the encoding. */
  readonly modelId: string;
  /** The prompt's counts made already (the gateway's context check), reused when usable. */
  readonly promptTokens?: PromptTokens | undefined;
}

/**
 * The usage, finish reason and tool calls of a finished call, as Brigade reports them. Token
 * counts the provider left out are counted with a tokenizer (token-count.ts: the model's own
 * encoding for OpenAI families, o200k_base for others) and the usage is marked `estimated`.
 */
export async function toResult(
  request: ResultRequest,
  answer: {
    readonly text: string;
    readonly toolCalls: readonly { toolCallId: string; toolName: string; input: unknown }[];
    readonly finishReason: string;
    readonly usage: {
      inputTokens: number | undefined;
      outputTokens: number | undefined;
      /** Prompt tokens read from the provider's cache, when it says. */
      cachedInputTokens?: number | undefined;
    };
  },
): Promise<ModelResultV1> {
  const { text, finishReason, usage } = answer;
  const cached = usage.cachedInputTokens;
  const toolCalls = answer.toolCalls.map((call) => ({
    toolCallId: call.toolCallId,
    toolName: fromProviderToolName(call.toolName, request.tools),
    input: call.input,
  }));
  const { encoding } = tokenizerOf(request.modelId);
  return {
    text,
    toolCalls,
    finishReason: (
      ['tool-calls', 'stop', 'length', 'content-filter', 'error'] as readonly string[]
    ).includes(finishReason)
      ? (finishReason as SdkFinishReason)
      : 'other',
    usage: {
      inputTokens:
        usage.inputTokens ??
        (await (request.promptTokens ?? createPromptTokens(request)).count(encoding)),
      outputTokens: usage.outputTokens ?? (await countAnswerTokens({ text, toolCalls }, encoding)),
      ...(cached !== undefined && Number.isInteger(cached) && cached > 0
        ? { cachedInputTokens: Math.min(cached, usage.inputTokens ?? cached) }
        : {}),
      estimated: usage.inputTokens === undefined || usage.outputTokens === undefined,
    },
  };
}

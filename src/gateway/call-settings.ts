import type { ToolDescriptionV1 } from '../plugin-api/index.ts';
import type { Sampling, ToolChoice } from './model-gateway.ts';

/**
 * A tool name providers accept: OpenAI and Anthropic allow only `[A-Za-z0-9_-]`, so
 * `mcp:<server>:<tool>` goes out as `mcp__<server>__<tool>` (other characters become `_`).
 * Valid names are unchanged.
 */
export function toProviderToolName(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, (character) => (character === ':' ? '__' : '_'));
}

/** The offered tool a provider's tool name stands for (an exact name wins); else the name. */
export function fromProviderToolName(name: string, tools: readonly ToolDescriptionV1[]): string {
  if (tools.some((candidate) => candidate.name === name)) return name;
  return tools.find((candidate) => toProviderToolName(candidate.name) === name)?.name ?? name;
}

/** What a call asks of the model beyond its messages: sampling and tool choice. */
interface CallSettings {
  readonly tools: readonly unknown[];
  readonly sampling?: Sampling | undefined;
  readonly toolChoice?: ToolChoice | undefined;
}

/** The settings under OpenAI's chat completion names, only those given. */
export function openAiCallSettings(request: CallSettings): Record<string, unknown> {
  const { sampling, toolChoice } = request;
  const fields: Record<string, unknown> = {
    temperature: sampling?.temperature,
    top_p: sampling?.topP,
    stop: sampling?.stop === undefined ? undefined : [...sampling.stop],
    seed: sampling?.seed,
    presence_penalty: sampling?.presencePenalty,
    frequency_penalty: sampling?.frequencyPenalty,
    tool_choice:
      toolChoice === undefined || request.tools.length === 0
        ? undefined
        : toolChoice === 'required'
          ? 'required'
          : { type: 'function', function: { name: toProviderToolName(toolChoice.toolName) } },
  };
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

/** The settings under the AI SDK's names (`generateText` / `streamText`), only those given. */
export function sdkCallSettings(request: CallSettings) {
  const { sampling, toolChoice } = request;
  return {
    ...(sampling?.temperature === undefined ? {} : { temperature: sampling.temperature }),
    ...(sampling?.topP === undefined ? {} : { topP: sampling.topP }),
    ...(sampling?.stop === undefined ? {} : { stopSequences: [...sampling.stop] }),
    ...(sampling?.seed === undefined ? {} : { seed: sampling.seed }),
    ...(sampling?.presencePenalty === undefined
      ? {}
      : { presencePenalty: sampling.presencePenalty }),
    ...(sampling?.frequencyPenalty === undefined
      ? {}
      : { frequencyPenalty: sampling.frequencyPenalty }),
    ...(toolChoice === undefined || request.tools.length === 0
      ? {}
      : {
          toolChoice:
            toolChoice === 'required'
              ? ('required' as const)
              : { type: 'tool' as const, toolName: toProviderToolName(toolChoice.toolName) },
        }),
  };
}

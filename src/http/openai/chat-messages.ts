import { parseBoundedJson } from '../../domain/json-depth.ts';
import type {
  ContentPartV1,
  MessageV1,
  ModelResultV1,
  ToolDescriptionV1,
} from '../../plugin-api/index.ts';
import { invalidRequest } from './openai-error.ts';
import type { ChatCompletionRequest, ChatMessage } from './openai-schemas.ts';

/** The text of a message's content (a string, or text parts joined). */
export function textOf(content: ChatMessage['content']): string {
  if (content === null || content === undefined) return '';
  return typeof content === 'string' ? content : content.map((part) => part.text).join('');
}

function parseArguments(text: string, param: string): unknown {
  try {
    return text.trim() === '' ? {} : parseBoundedJson(text);
  } catch {
    throw invalidRequest(param, `${param} is not valid JSON.`);
  }
}

/**
 * Converts OpenAI messages to Brigade's {@link MessageV1}: `system` and `developer` become
 * system messages, assistant `tool_calls` become tool-call parts (arguments parsed), and each
 * run of consecutive `tool` messages becomes one tool message whose results name the tool the
 * matching call asked for. A tool message answering no earlier call is refused.
 */
export function toGatewayMessages(messages: ChatCompletionRequest['messages']): MessageV1[] {
  const toolNames = new Map<string, string>();
  const converted: MessageV1[] = [];
  messages.forEach((message, index) => {
    switch (message.role) {
      case 'system':
      case 'developer':
        converted.push({
          role: 'system',
          content: [{ type: 'text', text: textOf(message.content) }],
          provenance: 'system',
        });
        return;
      case 'user':
        converted.push({
          role: 'user',
          content: [{ type: 'text', text: textOf(message.content) }],
          provenance: 'user',
        });
        return;
      case 'assistant': {
        const text = textOf(message.content);
        const parts: ContentPartV1[] = text === '' ? [] : [{ type: 'text', text }];
        (message.tool_calls ?? []).forEach((call, callIndex) => {
          toolNames.set(call.id, call.function.name);
          parts.push({
            type: 'tool-call',
            toolCallId: call.id,
            toolName: call.function.name,
            input: parseArguments(
              call.function.arguments,
              `messages[${index}].tool_calls[${callIndex}].function.arguments`,
            ),
          });
        });
        converted.push({ role: 'assistant', content: parts, provenance: 'assistant' });
        return;
      }
      case 'tool': {
        const toolName = toolNames.get(message.tool_call_id);
        if (toolName === undefined) {
          throw invalidRequest(
            `messages[${index}].tool_call_id`,
            `messages[${index}].tool_call_id answers no tool call of an earlier assistant message.`,
          );
        }
        const part: ContentPartV1 = {
          type: 'tool-result',
          toolCallId: message.tool_call_id,
          toolName,
          output: textOf(message.content),
        };
        const previous = converted.at(-1);
        if (previous?.role === 'tool') {
          converted[converted.length - 1] = {
            ...previous,
            content: [...previous.content, part],
          };
        } else {
          converted.push({ role: 'tool', content: [part], provenance: `tool:${toolName}` });
        }
        return;
      }
    }
  });
  return converted;
}

/** Converts the request's function tools (none when `tool_choice` is `none`). */
export function toGatewayTools(request: ChatCompletionRequest): ToolDescriptionV1[] {
  if (request.tool_choice === 'none') return [];
  return (request.tools ?? []).map((tool) => ({
    name: tool.function.name,
    description: tool.function.description ?? '',
    inputSchema: tool.function.parameters ?? { type: 'object', properties: {} },
  }));
}

/** OpenAI's `finish_reason` for a gateway finish reason. */
export function toFinishReason(
  reason: ModelResultV1['finishReason'],
): 'stop' | 'length' | 'tool_calls' | 'content_filter' {
  switch (reason) {
    case 'tool-calls':
      return 'tool_calls';
    case 'length':
      return 'length';
    case 'content-filter':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/**
 * OpenAI `tool_calls`: parsed arguments written as JSON, and arguments the provider wrote that
 * are not JSON (an answer cut off mid-call, say) as it wrote them. The gateway hands those over
 * as their text (the tool gate refuses them in runs), so a string input is that text, passed on
 * rather than encoded a second time into a JSON string literal.
 */
export function toToolCalls(result: Pick<ModelResultV1, 'toolCalls'>) {
  return result.toolCalls.map((call) => ({
    id: call.toolCallId,
    type: 'function' as const,
    function: {
      name: call.toolName,
      arguments: typeof call.input === 'string' ? call.input : JSON.stringify(call.input ?? {}),
    },
  }));
}

/** OpenAI `usage` from gateway usage. */
export function toUsage(usage: ModelResultV1['usage']) {
  return {
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens,
    ...(usage.cachedInputTokens === undefined
      ? {}
      : { prompt_tokens_details: { cached_tokens: usage.cachedInputTokens } }),
  };
}

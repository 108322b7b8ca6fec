import type { MockChatMessage, MockChatRequest, MockReply } from './mock-model-types.ts';

const callPattern = /\bcall\s+([A-Za-z0-9_-]+)\s+(\{[\s\S]*\})/;

/**
 * The text of a message's `content`: the string itself, or the `text` of its text parts joined.
 * Anything else (images, absent content) counts as empty.
 */
export function textOfContent(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) =>
      typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string'
        ? part.text
        : '',
    )
    .join('');
}

/** Whitespace-separated words in `text`: the mock's notion of a token. */
export function countWords(text: string): number {
  const words = text.trim();
  return words === '' ? 0 : words.split(/\s+/).length;
}

/** Prompt tokens of a request: the words of every message's text content. */
export function countPromptWords(messages: readonly MockChatMessage[]): number {
  return messages.reduce((sum, message) => sum + countWords(textOfContent(message.content)), 0);
}

/**
 * The reply of the default script: after a tool result, `tool said: <content>`; when the last
 * user message says `call <tool> {json}` and `<tool>` is offered, that tool call; otherwise
 * `echo: <last user text>`.
 */
export function defaultMockReply(request: MockChatRequest): MockReply {
  const last = request.messages.at(-1);
  if (last?.role === 'tool') return { text: `tool said: ${textOfContent(last.content)}` };
  const lastUser = request.messages.findLast((message) => message.role === 'user');
  const userText = lastUser === undefined ? '' : textOfContent(lastUser.content);
  const match = callPattern.exec(userText);
  const toolName = match?.[1];
  const json = match?.[2];
  if (toolName !== undefined && json !== undefined && request.toolNames.includes(toolName)) {
    const parsed = parseObject(json);
    if (parsed !== undefined) return { toolCalls: [{ name: toolName, arguments: parsed }] };
  }
  return { text: `echo: ${userText}` };
}

function parseObject(json: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(json);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

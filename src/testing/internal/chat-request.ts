import type { IncomingMessage } from 'node:http';
import type { MockChatMessage, MockChatRequest, MockModelCall } from './mock-model-types.ts';

/** One request header as a single string (repeated headers joined with `, `). */
export function headerValue(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The parsed JSON of `text`, or `undefined` when it is empty or not JSON. */
export function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Whether `value` is a plain JSON object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates the parts of a chat body the mock relies on; a string is the 400 message. */
export function toChatRequest(call: MockModelCall, chatIndex: number): MockChatRequest | string {
  const body = call.body;
  if (!isRecord(body)) return 'The request body must be a JSON object.';
  const { model, messages, tools, stream } = body;
  if (typeof model !== 'string' || model === '') return "'model' is required.";
  if (!Array.isArray(messages) || messages.length === 0)
    return "'messages' must be a non-empty array.";
  if (!messages.every((message) => isRecord(message) && typeof message['role'] === 'string')) {
    return "Every message needs a 'role'.";
  }
  const toolNames = (Array.isArray(tools) ? tools : []).flatMap((tool: unknown) =>
    isRecord(tool) && isRecord(tool['function']) && typeof tool['function']['name'] === 'string'
      ? [tool['function']['name']]
      : [],
  );
  return {
    model,
    messages: messages as MockChatMessage[],
    toolNames,
    stream: stream === true,
    body,
    headers: call.headers,
    chatIndex,
  };
}

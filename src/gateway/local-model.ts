import { parseBoundedJson } from '../domain/json-depth.ts';
import type { MessageV1, ModelResultV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { delay } from './abortable-delay.ts';
import type { ResponseFormat, Sampling, ToolChoice } from './model-gateway.ts';
import { toolResultText } from './tool-result-text.ts';

/** A request to the built-in local model. */
export interface LocalModelRequest {
  readonly messages: readonly MessageV1[];
  readonly tools: readonly ToolDescriptionV1[];
  readonly maxOutputTokens: number;
  readonly signal: AbortSignal;
  readonly onTextDelta?: ((delta: string) => void) | undefined;
  /** Pause between streamed tokens, in milliseconds (0 streams at once). */
  readonly tokenDelayMs: number;
  /** JSON output: the answer becomes a JSON object (see {@link generateLocal}). */
  readonly responseFormat?: ResponseFormat | undefined;
  /** Only `stop` applies: the model is deterministic. */
  readonly sampling?: Sampling | undefined;
  /** A tool call the model must make (see {@link generateLocal}). */
  readonly toolChoice?: ToolChoice | undefined;
}

/** `text` up to the first of the `stop` sequences. */
function beforeStop(text: string, stop: readonly string[] | undefined): string {
  let end = text.length;
  for (const sequence of stop ?? []) {
    const at = sequence.length === 0 ? -1 : text.indexOf(sequence);
    if (at >= 0) end = Math.min(end, at);
  }
  return text.slice(0, end);
}

/**
 * The tool call the local model makes, if any: the one a `call <tool> {json}` user message asks
 * for, or with a `toolChoice` always one — the named tool (the requested arguments when the
 * message named it too, else arguments shaped like its schema from the last user message), or
 * for `required` the requested tool or the first one offered.
 */
function toolCallOf(
  request: LocalModelRequest,
): { readonly toolName: string; readonly input: unknown } | undefined {
  const last = request.messages[request.messages.length - 1];
  const match = last?.role === 'user' ? requestedCall(textOf(last)) : undefined;
  const asked = match?.tool;
  const requested =
    asked !== undefined && request.tools.some((tool) => tool.name === asked) ? asked : undefined;
  const choice = request.toolChoice;
  const toolName =
    choice === undefined
      ? requested
      : choice === 'required'
        ? (requested ?? request.tools[0]?.name)
        : choice.toolName;
  const tool = request.tools.find((candidate) => candidate.name === toolName);
  if (tool === undefined) return undefined;
  if (tool.name === requested) {
    try {
      return {
        toolName: tool.name,
        input: match?.json === undefined ? {} : parseBoundedJson(match.json),
      };
    } catch {
      return { toolName: tool.name, input: { raw: match?.json } };
    }
  }
  const lastUser = [...request.messages].reverse().find((message) => message.role === 'user');
  return { toolName: tool.name, input: exampleOf(tool.inputSchema, textOf(lastUser)) };
}

/**
 * A value shaped like `schema` (a JSON Schema subset: `type`, `properties`, `items`, `enum`,
 * `const`, `minimum`, `anyOf`/`oneOf`), with `answer` in every string. Depth-limited.
 */
function exampleOf(schema: unknown, answer: string, depth = 0): unknown {
  if (typeof schema !== 'object' || schema === null || depth > 8) return answer;
  const node = schema as Record<string, unknown>;
  if ('const' in node) return node['const'];
  const choices = node['enum'];
  if (Array.isArray(choices) && choices.length > 0) return choices[0];
  const alternatives = node['anyOf'] ?? node['oneOf'];
  if (Array.isArray(alternatives) && alternatives.length > 0)
    return exampleOf(alternatives[0], answer, depth + 1);
  const declared = node['type'];
  const type = Array.isArray(declared) ? declared[0] : declared;
  switch (type) {
    case 'object': {
      const properties = node['properties'];
      const entries =
        typeof properties === 'object' && properties !== null ? Object.entries(properties) : [];
      return Object.fromEntries(
        entries.map(([name, property]) => [name, exampleOf(property, answer, depth + 1)]),
      );
    }
    case 'array':
      return [exampleOf(node['items'], answer, depth + 1)];
    case 'integer':
    case 'number':
      return typeof node['minimum'] === 'number' ? node['minimum'] : 0;
    case 'boolean':
      return true;
    case 'null':
      return null;
    default:
      return answer;
  }
}

/** The answer as the JSON text `format` asks for, or the answer itself for plain text. */
function formatted(answer: string, format: ResponseFormat | undefined): string {
  if (format === undefined || format.type === 'text') return answer;
  if (format.schema === undefined) return JSON.stringify({ answer });
  return JSON.stringify(exampleOf(format.schema, answer));
}

/** `call <tool>` as a word of its own: at the start or after white space. */
const callWordPattern = /(?<=^|\s)call\s+([a-z][a-z0-9_]*(?::[A-Za-z0-9_.-]+)*)/gi;

/**
 * The call a (trimmed) user message ends with: `call <tool>` alone, or followed by a JSON
 * object that closes the message (`please call calculator {"expression":"6*7"}`); the first
 * such `call` wins, so a JSON argument may itself mention one. A scan, not one regular
 * expression, so a long message with many `call`s costs linear time.
 */
function requestedCall(text: string): { tool: string; json?: string } | undefined {
  for (const match of text.matchAll(callWordPattern)) {
    let index = match.index + match[0].length;
    while (index < text.length && /\s/.test(text.charAt(index))) index += 1;
    const tool = match[1] ?? '';
    if (index === text.length) return { tool };
    if (text.charAt(index) === '{' && text.endsWith('}')) return { tool, json: text.slice(index) };
    // Text after the tool's name that is not its arguments: not a call (a name followed
    // directly by more letters matched a shorter name, which this refuses too).
  }
  return undefined;
}

function textOf(message: MessageV1 | undefined): string {
  return (message?.content ?? [])
    .map((part) => (part.type === 'text' ? part.text : ''))
    .join('')
    .trim();
}

function countTokens(text: string): number {
  return text.split(/\s+/).filter((word) => word.length > 0).length;
}

/**
 * The built-in `local` model: offline, deterministic, no weights. It is not a language model;
 * it exists so Brigade can be demonstrated and tested with nothing installed:
 * - a user message ending in `call <tool> {json}` makes it call that tool (if the agent has it),
 *   wherever the `call` starts (`please call calculator {"expression":"6*7"}`);
 * - after a tool result it answers `<tool> returned: <output>`;
 * - otherwise it answers `You said: <the last user message>`.
 * A `toolChoice` makes it call a tool every time (see `toolCallOf`); `stop` sequences end the
 * answer before the first of them; other sampling settings change nothing.
 * With a JSON `responseFormat` the answer is a JSON object instead: `{"answer": "You said: …"}`
 * without a schema (`json_object`), or a value built from the schema (`json_schema`): every
 * declared property present, strings holding the answer, numbers 0 (or their `minimum`),
 * booleans true, arrays of one item, the first `enum` / `anyOf` choice. It is sent as one delta.
 * Tokens are whitespace-separated words; usage is counted exactly that way.
 */
export async function generateLocal(request: LocalModelRequest): Promise<ModelResultV1> {
  request.signal.throwIfAborted();
  const messages = request.messages;
  const last = messages[messages.length - 1];
  const inputTokens = messages.reduce(
    (total, message) => total + countTokens(JSON.stringify(message.content)),
    0,
  );
  const call = toolCallOf(request);
  if (call !== undefined) {
    const { toolName, input } = call;
    const callIndex = messages.filter((message) => message.role === 'assistant').length;
    return {
      text: '',
      toolCalls: [{ toolCallId: `call_${callIndex}_${toolName}`, toolName, input }],
      finishReason: 'tool-calls',
      usage: {
        inputTokens,
        outputTokens: 1 + countTokens(JSON.stringify(input)),
        estimated: false,
      },
    };
  }
  let answer: string;
  if (last?.role === 'tool') {
    answer = last.content
      .map((part) =>
        part.type === 'tool-result'
          ? `${part.toolName} ${part.isError === true ? 'failed' : 'returned'}: ${toolResultText(part.output)}`
          : '',
      )
      .filter((line) => line.length > 0)
      .join('\n');
  } else {
    const lastUser = [...messages].reverse().find((message) => message.role === 'user');
    answer = `You said: ${textOf(lastUser)}`;
  }
  answer = beforeStop(answer, request.sampling?.stop);
  if (request.responseFormat !== undefined && request.responseFormat.type !== 'text') {
    // A JSON answer is not truncated (that would break it), and is sent as one delta.
    const json = formatted(answer, request.responseFormat);
    if (request.tokenDelayMs > 0) await delay(request.tokenDelayMs, request.signal);
    request.signal.throwIfAborted();
    request.onTextDelta?.(json);
    return {
      text: json,
      toolCalls: [],
      finishReason: 'stop',
      usage: { inputTokens, outputTokens: countTokens(json), estimated: false },
    };
  }
  const words = answer.split(/(\s+)/).filter((piece) => piece.length > 0);
  let emitted = '';
  let tokens = 0;
  for (const piece of words) {
    if (piece.trim().length > 0) {
      if (tokens >= request.maxOutputTokens) break;
      tokens += 1;
      if (request.tokenDelayMs > 0) await delay(request.tokenDelayMs, request.signal);
    }
    request.signal.throwIfAborted();
    emitted += piece;
    request.onTextDelta?.(piece);
  }
  return {
    text: emitted,
    toolCalls: [],
    finishReason:
      tokens >= request.maxOutputTokens && emitted.length < answer.length ? 'length' : 'stop',
    usage: { inputTokens, outputTokens: tokens, estimated: false },
  };
}

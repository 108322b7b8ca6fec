import type { MessageV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { toolResultText } from './tool-result-text.ts';

/** A byte-pair encoding Brigade counts tokens with (OpenAI's, from the `gpt-tokenizer` package). */
export type TokenEncoding = 'o200k_base' | 'cl100k_base';

/** How a model's tokens are counted. */
export interface ModelTokenizer {
  readonly encoding: TokenEncoding;
  /**
   * True for the OpenAI families that use `encoding`; false for every other model (Llama,
   * Claude, Mistral, Qwen…), whose own tokenizer Brigade does not have: those are counted with
   * o200k_base, an approximation, and judged with {@link approximateCountMargin}.
   */
  readonly exact: boolean;
}

/**
 * How far (a fraction) a count with another model's encoding may be off in that model's
 * favour: a prompt counted approximately is taken not to fit a window only when its count
 * exceeds the window by more than this. Tokenizers of other families differ from o200k_base by
 * up to about this much (some, for some scripts, need fewer tokens); refusing a prompt that
 * would have fit is the worse error, since a provider's own context error still falls over.
 */
export const approximateCountMargin = 0.25;

const o200kFamilies = /^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o[134](-|$)|codex-)/;
const cl100kFamilies = /^(gpt-4(-|$)|gpt-35-turbo|gpt-3\.5-turbo)/;

/**
 * How to count tokens of `model` (`<provider>:<id>`, a bare id, or `<provider>:<vendor>/<id>`):
 * the encoding of its OpenAI family, exactly, or o200k_base approximately for any other model.
 */
export function tokenizerOf(model: string): ModelTokenizer {
  const afterProvider = model.slice(model.indexOf(':') + 1);
  const id = afterProvider
    .slice(afterProvider.lastIndexOf('/') + 1)
    .replace(/^ft:/, '')
    .toLowerCase();
  if (o200kFamilies.test(id)) return { encoding: 'o200k_base', exact: true };
  if (cl100kFamilies.test(id)) return { encoding: 'cl100k_base', exact: true };
  return { encoding: 'o200k_base', exact: false };
}

type CountText = (text: string) => number;

/**
 * Encodings, loaded on first use only (o200k_base takes ~0.25 s and ~35 MB of heap to load):
 * most calls never need one, their byte measures being enough.
 */
const encodings = new Map<TokenEncoding, Promise<CountText>>();
/** Special-token markers (`<|endoftext|>`) in a prompt are text to a provider, and so here. */
const asText = { disallowedSpecial: new Set<string>() };

function counterOf(encoding: TokenEncoding): Promise<CountText> {
  let counter = encodings.get(encoding);
  if (counter === undefined) {
    const api =
      encoding === 'o200k_base'
        ? import('gpt-tokenizer/encoding/o200k_base')
        : import('gpt-tokenizer/encoding/cl100k_base');
    counter = api.then(
      (loaded): CountText =>
        (text) =>
          countInPieces(text, (piece) => loaded.countTokens(piece, asText)),
    );
    // A failed load is tried again by the next caller.
    counter.catch(() => encodings.delete(encoding));
    encodings.set(encoding, counter);
  }
  return counter;
}

/** Longest piece of text counted in one go (cut before white space, so words stay whole). */
const maxPieceChars = 2_048;
/** Longest run without white space counted in one go. */
const maxRunChars = 128;

/**
 * Counts `text` piece by piece. Byte-pair encoding is quadratic in the length of a run without
 * white space (`aaaa…`, base64, minified code, a CJK paragraph): 132 KB of one letter took 14 s
 * in one go, blocking the event loop for every tenant. Pieces end before white space (where
 * the encodings' pre-tokenizer splits anyway, a space going with the word after it), and a run
 * longer than 128 characters is cut every 128: at most one more token per cut, counting high.
 * Linear in the text's length.
 */
export function countInPieces(text: string, count: (piece: string) => number): number {
  if (text.length === 0) return 0;
  if (text.length <= maxRunChars) return count(text);
  let total = 0;
  let pieceStart = 0;
  let runStart = 0;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    const white = code === 32 || code === 10 || code === 9 || code === 13;
    if (white) {
      runStart = index + 1;
      if (index - pieceStart >= maxPieceChars) {
        total += count(text.slice(pieceStart, index));
        pieceStart = index;
      }
    } else if (index - runStart >= maxRunChars) {
      total += count(text.slice(pieceStart, index));
      pieceStart = index;
      runStart = index;
    }
  }
  return total + (pieceStart < text.length ? count(text.slice(pieceStart)) : 0);
}

/** What a provider reads as a call's input. */
export interface Prompt {
  readonly messages: readonly MessageV1[];
  readonly tools: readonly ToolDescriptionV1[];
  readonly responseFormat?: { readonly type: string; readonly schema?: unknown } | undefined;
}

/** Tokens OpenAI's chat format adds per message (its role markers) and to prime the answer. */
const perMessage = 3;
const answerPriming = 3;
/** Tokens OpenAI adds around the rendered function definitions. */
const perToolBlock = 9;

/**
 * The tokens of `prompt` in `encoding`, counted as OpenAI's chat format does: per message its
 * role, its text and 3 tokens of markers, 3 to prime the answer, tool calls as their name and
 * JSON arguments, tool results as their text, and tool definitions (and a response format's
 * schema) as the TypeScript-like declarations OpenAI renders them to. Exact for the messages;
 * the definitions' rendering is OpenAI's published approximation.
 */
export async function countPromptTokens(prompt: Prompt, encoding: TokenEncoding): Promise<number> {
  const count = await counterOf(encoding);
  let total = answerPriming;
  for (const message of prompt.messages) {
    total += perMessage + count(message.role);
    for (const part of message.content) {
      if (part.type === 'text') total += count(part.text);
      else if (part.type === 'tool-call')
        total += perMessage + count(part.toolName) + count(JSON.stringify(part.input ?? {}));
      else total += count(toolResultText(part.output));
    }
  }
  if (prompt.tools.length > 0) total += perToolBlock + count(renderTools(prompt.tools));
  const format = prompt.responseFormat;
  if (format?.type === 'json' && format.schema !== undefined)
    total += perToolBlock + count(`type response = ${renderType(format.schema, 0)};`);
  return total;
}

/** The tokens of an answer (its text, and each tool call's name and JSON arguments). */
export async function countAnswerTokens(
  answer: {
    readonly text: string;
    readonly toolCalls: readonly { readonly toolName: string; readonly input: unknown }[];
  },
  encoding: TokenEncoding,
): Promise<number> {
  const count = await counterOf(encoding);
  let total = count(answer.text);
  for (const call of answer.toolCalls)
    total += perMessage + count(call.toolName) + count(JSON.stringify(call.input ?? {}));
  return total;
}

/** A prompt's token counts, each made once, when first asked for. */
export interface PromptTokens {
  count(encoding: TokenEncoding): Promise<number>;
  /** The count in `encoding` if it has been made (synchronous callers). */
  counted(encoding: TokenEncoding): number | undefined;
}

/** Creates the {@link PromptTokens} of `prompt`. */
export function createPromptTokens(prompt: Prompt): PromptTokens {
  const pending = new Map<TokenEncoding, Promise<number>>();
  const done = new Map<TokenEncoding, number>();
  return {
    count(encoding) {
      let counting = pending.get(encoding);
      if (counting === undefined) {
        counting = countPromptTokens(prompt, encoding).then((tokens) => {
          done.set(encoding, tokens);
          return tokens;
        });
        pending.set(encoding, counting);
      }
      return counting;
    },
    counted: (encoding) => done.get(encoding),
  };
}

/** OpenAI's rendering of function definitions (a `functions` namespace of TypeScript types). */
function renderTools(tools: readonly ToolDescriptionV1[]): string {
  const lines = ['namespace functions {', ''];
  for (const tool of tools) {
    if (tool.description.length > 0) lines.push(`// ${tool.description}`);
    lines.push(`type ${tool.name} = (_: ${renderType(tool.inputSchema, 0)}) => any;`, '');
  }
  lines.push('} // namespace functions');
  return lines.join('\n');
}

/** A JSON schema as a TypeScript type, as OpenAI renders parameters (nested up to 8 deep). */
function renderType(schema: unknown, depth: number): string {
  if (typeof schema !== 'object' || schema === null || depth > 8) return 'any';
  const node = schema as Record<string, unknown>;
  const choices = node['enum'] ?? node['anyOf'] ?? node['oneOf'];
  if (Array.isArray(choices))
    return choices
      .map((choice) =>
        node['enum'] === undefined ? renderType(choice, depth + 1) : JSON.stringify(choice),
      )
      .join(' | ');
  switch (node['type']) {
    case 'string':
      return 'string';
    case 'number':
    case 'integer':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'null':
      return 'null';
    case 'array':
      return `${renderType(node['items'], depth + 1)}[]`;
    case 'object': {
      const properties = node['properties'];
      if (typeof properties !== 'object' || properties === null) return 'object';
      const required = new Set(Array.isArray(node['required']) ? node['required'] : []);
      const indent = ' '.repeat(2 * (depth + 1));
      const lines = Object.entries(properties).flatMap(([name, property]) => {
        const description = (property as { description?: unknown } | null)?.description;
        return [
          ...(typeof description === 'string' ? [`${indent}// ${description}`] : []),
          `${indent}${name}${required.has(name) ? '' : '?'}: ${renderType(property, depth + 1)},`,
        ];
      });
      return `{\n${lines.join('\n')}\n${' '.repeat(2 * depth)}}`;
    }
    default:
      return 'any';
  }
}

import { z } from 'zod';
import type { MockFault, MockFaultEffects } from './mock-model-types.ts';

/** The request header through which a single request asks for a fault (a JSON {@link MockFault}). */
export const faultHeader = 'x-mock-fault';

/**
 * A small seeded PRNG (mulberry32): the same seed gives the same sequence in [0, 1), so
 * `failRate` tests are repeatable. Not for anything but tests.
 */
export function createSeededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Normalizes the one-or-many form of a fault setting. */
export function toFaultList(
  faults: MockFault | readonly MockFault[] | undefined,
): readonly MockFault[] {
  if (faults === undefined) return [];
  return isFaultList(faults) ? faults : [faults];
}

function isFaultList(faults: MockFault | readonly MockFault[]): faults is readonly MockFault[] {
  return Array.isArray(faults);
}

/**
 * Merges the faults that strike this request into one set of effects, later faults overriding
 * earlier fields. Each probabilistic fault draws once from `random`, in list order.
 */
export function resolveFaults(
  faults: readonly MockFault[],
  random: () => number,
): MockFaultEffects | undefined {
  let merged: MockFaultEffects | undefined;
  for (const fault of faults) {
    const effects = 'failRate' in fault ? (random() < fault.failRate ? fault.fault : {}) : fault;
    if (Object.keys(effects).length > 0) merged = { ...merged, ...effects };
  }
  return merged;
}

const faultEffectsSchema = z.strictObject({
  latencyMs: z.number().min(0).optional(),
  status: z.int().min(400).max(599).optional(),
  retryAfterSeconds: z.number().min(0).optional(),
  retryAfterMs: z.number().min(0).optional(),
  errorMessage: z.string().optional(),
  hang: z.boolean().optional(),
  reset: z.boolean().optional(),
  resetAfterChunks: z.int().min(0).optional(),
  malformedChunk: z.boolean().optional(),
  tokenDelayMs: z.number().min(0).optional(),
  omitUsage: z.boolean().optional(),
});

const probabilisticFaultSchema = z.strictObject({
  failRate: z.number().min(0).max(1),
  fault: faultEffectsSchema,
});

/** One fault: probabilistic when it has `failRate`, else effects applied to every request. */
function parseFault(value: unknown, where: string): MockFault | Error {
  const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
  if (!isObject) return new Error(`${where}must be an object`);
  const schema = 'failRate' in value ? probabilisticFaultSchema : faultEffectsSchema;
  const result = schema.safeParse(value);
  if (result.success) return result.data as MockFault;
  const issue = result.error.issues[0];
  const path = [where.replace(/: $/, ''), ...(issue?.path ?? []).map(String)].filter(Boolean);
  return new Error(`${path.join('.')}${path.length > 0 ? ': ' : ''}${issue?.message ?? 'invalid'}`);
}

/**
 * Checks a {@link MockFault} or a list of them written as JSON (the `x-mock-fault` header, the
 * CLI's `--fault`): known fields with their types, an error status 400–599. A fault the server
 * cannot apply would otherwise fail every request with a 500 of its own.
 */
export function parseMockFaults(text: string): readonly MockFault[] | Error {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return new Error('must be JSON: a fault object or an array of them');
  }
  const items = Array.isArray(parsed) ? parsed : [parsed];
  const faults: MockFault[] = [];
  for (const [index, item] of items.entries()) {
    const fault = parseFault(item, Array.isArray(parsed) ? `[${index}]: ` : '');
    if (fault instanceof Error) return fault;
    faults.push(fault);
  }
  return faults;
}

/**
 * Reads the `x-mock-fault` header: absent gives no faults, a valid fault (or array of them)
 * gives those, anything else is an error the server reports as a 400.
 */
export function parseFaultHeader(value: string | undefined): readonly MockFault[] | Error {
  if (value === undefined) return [];
  const faults = parseMockFaults(value);
  return faults instanceof Error ? new Error(`${faultHeader}: ${faults.message}`) : faults;
}

/** An OpenAI-shaped error body: `{ error: { message, type, param, code } }`. */
export interface OpenAiErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: null;
    readonly code: string | null;
  };
}

/** Options of {@link openAiError}. */
export interface OpenAiErrorOptions {
  readonly message?: string | undefined;
  readonly code?: string | null | undefined;
  readonly type?: string | undefined;
}

/** The error body OpenAI sends for `status`, with its usual `type` and `code`. */
export function openAiError(status: number, options: OpenAiErrorOptions = {}): OpenAiErrorBody {
  const defaults = errorDefaults(status);
  return {
    error: {
      message: options.message ?? defaults.message,
      type: options.type ?? defaults.type,
      param: null,
      code: options.code === undefined ? defaults.code : options.code,
    },
  };
}

function errorDefaults(status: number): { message: string; type: string; code: string | null } {
  if (status === 401) {
    return {
      message: 'Incorrect API key provided.',
      type: 'invalid_request_error',
      code: 'invalid_api_key',
    };
  }
  if (status === 429) {
    return {
      message: 'Rate limit reached for requests (mock). Please try again later.',
      type: 'requests',
      code: 'rate_limit_exceeded',
    };
  }
  if (status >= 500) {
    return {
      message: 'The server had an error while processing your request. Sorry about that! (mock)',
      type: 'server_error',
      code: null,
    };
  }
  return {
    message: `Request failed with status ${status} (mock).`,
    type: 'invalid_request_error',
    code: null,
  };
}

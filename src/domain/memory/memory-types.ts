import type { JsonValueV1 } from '../../plugin-api/index.ts';
import { AppError } from '../errors.ts';
import type { Page } from '../identity/identity-ports.ts';
import type { UserPrincipal } from '../identity/principal.ts';

/** `user`: a user's long-term memory (across threads); `thread`: one thread's memory. */
export type MemoryScope = 'user' | 'thread';

/** What a memory key must look like (the same check is in the `memories` table). */
export const memoryKeyPattern = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/;

/** What a `list` prefix may hold: the characters of a key, at most as many. */
export const memoryPrefixPattern = /^[A-Za-z0-9_.:/-]{0,128}$/;

/** The most bytes a value may take as UTF-8 JSON (`JSON.stringify`). */
export const memoryValueMaxBytes = 16_384;

/** How deeply a value may nest arrays and objects. */
export const memoryValueMaxDepth = 64;

/** A memory entry as its user sees it over the API. */
export interface MemoryEntry {
  readonly id: string;
  readonly scope: MemoryScope;
  /** The thread of a thread memory; null for long-term memory. */
  readonly threadId: string | null;
  readonly key: string;
  readonly value: JsonValueV1;
  /** The run that last wrote the entry (null when it has since been deleted). */
  readonly runId: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** The namespace a run's memory call works in: its user, and its thread or none (long-term). */
export interface MemorySubject {
  readonly tenantId: string;
  readonly userId: string;
  /** Null for the user's long-term memory. */
  readonly threadId: string | null;
}

/** Which of the caller's memories a list or a clear covers. */
export interface MemoryFilter {
  readonly scope?: MemoryScope | 'all' | undefined;
  readonly threadId?: string | undefined;
}

/** Persistence of memories (implemented in storage/); row-level security scopes every call. */
export interface MemoryStore {
  get(subject: MemorySubject, key: string): Promise<MemoryEntry | undefined>;
  /**
   * Writes `json` (a checked, serialised value) under `key` for `runId`. Throws
   * `memory_limit_exceeded` when the key is new and the user already holds `maxEntries`.
   */
  set(
    subject: MemorySubject,
    entry: { readonly key: string; readonly json: string; readonly runId: string },
    maxEntries: number,
  ): Promise<void>;
  delete(subject: MemorySubject, key: string): Promise<boolean>;
  /** Entries in key order whose key starts with `prefix`. */
  list(
    subject: MemorySubject,
    options: { readonly prefix: string; readonly limit: number },
  ): Promise<MemoryEntry[]>;
  /** The caller's own entries in id order (cursor `after` is an id). */
  listOwn(
    principal: UserPrincipal,
    query: MemoryFilter & { readonly limit: number; readonly after?: string | undefined },
  ): Promise<Page<MemoryEntry>>;
  /** Deletes one of the caller's entries; false when the caller has none with this id. */
  deleteOwn(principal: UserPrincipal, memoryId: string): Promise<boolean>;
  /** Deletes the caller's entries the filter covers; the number deleted. */
  clearOwn(principal: UserPrincipal, filter: MemoryFilter): Promise<number>;
}

/** Throws `memory_key_invalid` unless `key` is a valid memory key. */
export function checkMemoryKey(key: unknown): string {
  if (typeof key !== 'string' || !memoryKeyPattern.test(key))
    throw new AppError(
      'memory_key_invalid',
      'A memory key is 1–128 characters of letters, digits and _ . : / -, starting with a letter or digit.',
    );
  return key;
}

/** Why `value` is not a storable JSON value, or undefined when it is one. */
function problemOf(value: unknown, depth: number, seen: Set<object>): string | undefined {
  if (value === null || typeof value === 'boolean') return undefined;
  if (typeof value === 'number')
    return Number.isFinite(value) ? undefined : 'holds a number JSON cannot represent';
  if (typeof value === 'string') return textProblem(value);
  if (typeof value !== 'object') return `holds a ${typeof value}, which is not JSON`;
  if (depth >= memoryValueMaxDepth) return `nests deeper than ${memoryValueMaxDepth} levels`;
  if (seen.has(value)) return 'is circular';
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      for (const item of value) {
        const problem = problemOf(item, depth + 1, seen);
        if (problem !== undefined) return problem;
      }
      return undefined;
    }
    const prototype = Object.getPrototypeOf(value) as unknown;
    if (prototype !== Object.prototype && prototype !== null)
      return 'holds an object that is not a plain object';
    for (const [name, item] of Object.entries(value)) {
      const problem = textProblem(name) ?? problemOf(item, depth + 1, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  } finally {
    seen.delete(value);
  }
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** PostgreSQL's `jsonb` refuses NUL and unpaired surrogates; refused here, not rewritten. */
function textProblem(text: string): string | undefined {
  return text.includes('\u0000') || loneSurrogate.test(text)
    ? 'holds a NUL character or an unpaired surrogate'
    : undefined;
}

/**
 * The JSON text of `value` after checking it: throws `memory_value_invalid` for anything that
 * is not plain JSON (undefined, functions, bigints, non-finite numbers, class instances,
 * cycles, NUL characters) and `memory_value_too_large` past {@link memoryValueMaxBytes}.
 */
export function serialiseMemoryValue(value: unknown): string {
  const problem = problemOf(value, 0, new Set());
  if (problem !== undefined)
    throw new AppError(
      'memory_value_invalid',
      `A memory value must be plain JSON; this ${problem}.`,
    );
  const json = JSON.stringify(value);
  const bytes = new TextEncoder().encode(json).length;
  if (bytes > memoryValueMaxBytes)
    throw new AppError(
      'memory_value_too_large',
      `A memory value is at most ${memoryValueMaxBytes} bytes of JSON; this one is ${bytes}.`,
      { details: { limitBytes: memoryValueMaxBytes, bytes } },
    );
  return json;
}

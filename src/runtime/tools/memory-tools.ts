import { AppError } from '../../domain/errors.ts';
import type { MemoryCapabilityV1, MemoryNamespaceV1 } from '../../plugin-api/index.ts';
import type { ToolDefinition, ToolExecutionContext } from './tool-registry.ts';

/** Longest note `memory_save` stores (characters); the store's own cap is 16 KiB of JSON. */
const maxNoteChars = 4_000;
/** Most entries `memory_list` returns to the model at once. */
const maxListed = 50;

const scopeProperty = {
  type: 'string',
  enum: ['thread', 'user'],
  description:
    "'thread' (default): this conversation only. 'user': the user's long-term memory, shared by all their conversations; needs the user's consent to long-term memory.",
};

const keyProperty = {
  type: 'string',
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$',
  description: 'A short name for the note, e.g. preferences/language (letters, digits, _ . : / -).',
};

/** The namespace a call names (its run's thread, or the user's long-term memory). */
function namespaceOf(
  context: ToolExecutionContext,
  input: Record<string, unknown>,
): MemoryNamespaceV1 {
  const memory: MemoryCapabilityV1 | undefined = context.memory;
  if (memory === undefined) throw new AppError('internal', 'Memory is not available to this run.');
  return input['scope'] === 'user' ? memory.user : memory.thread;
}

/**
 * Built-in tools over the run's memory capability (the one cores get as `context.memory`,
 * run-memory.ts): the run's user and thread are the harness's, never the model's to name, and
 * every call passes the tool gate (audit, kill switches, approvals, quotas) like any tool.
 * Values are notes (text); long-term memory needs the user's `long_term_memory` consent, and a
 * call without it fails with the reason, which the model can tell the user.
 */
export const memoryTools: readonly ToolDefinition[] = [
  {
    name: 'memory_save',
    description:
      'Saves a note under a key, replacing any note there, so it can be recalled later with memory_list.',
    inputSchema: {
      type: 'object',
      properties: {
        key: keyProperty,
        note: { type: 'string', minLength: 1, maxLength: maxNoteChars },
        scope: scopeProperty,
      },
      required: ['key', 'note'],
      additionalProperties: false,
    },
    risk: 'write',
    async execute(input, context) {
      const key = String(input['key']);
      await namespaceOf(context, input).set(key, String(input['note']));
      return { saved: key, scope: input['scope'] ?? 'thread' };
    },
  },
  {
    name: 'memory_list',
    description: `Lists saved notes (key and note), optionally those whose key starts with a prefix; at most ${maxListed}.`,
    inputSchema: {
      type: 'object',
      properties: {
        prefix: { type: 'string', pattern: '^[A-Za-z0-9_.:/-]{0,128}$' },
        scope: scopeProperty,
      },
      additionalProperties: false,
    },
    risk: 'read',
    async execute(input, context) {
      const prefix = typeof input['prefix'] === 'string' ? input['prefix'] : '';
      const entries = await namespaceOf(context, input).list({ prefix, limit: maxListed + 1 });
      return {
        notes: entries.slice(0, maxListed).map((entry) => ({
          key: entry.key,
          note: entry.value,
          updatedAt: entry.updatedAt,
        })),
        more: entries.length > maxListed,
      };
    },
  },
  {
    name: 'memory_delete',
    description: 'Deletes the note saved under a key.',
    inputSchema: {
      type: 'object',
      properties: { key: keyProperty, scope: scopeProperty },
      required: ['key'],
      additionalProperties: false,
    },
    risk: 'write',
    async execute(input, context) {
      const key = String(input['key']);
      return { deleted: await namespaceOf(context, input).delete(key), key };
    },
  },
];

import type { CorePluginV1, JsonValueV1, MemoryNamespaceV1 } from '../../src/plugin-api/index.ts';
import { type ApiClient, type Created, waitForRun } from './api-client.ts';

/** One memory call the script core makes, in the run's input (a JSON array of these). */
export type MemoryOp =
  | { readonly ns: 'thread' | 'user'; readonly op: 'get' | 'delete'; readonly key: string }
  | {
      readonly ns: 'thread' | 'user';
      readonly op: 'set';
      readonly key: string;
      readonly value: unknown;
    }
  | {
      readonly ns: 'thread' | 'user';
      readonly op: 'list';
      readonly prefix?: string;
      readonly limit?: number;
    }
  /** Sets a string value of `bytes` characters, built by the core (inputs stay small). */
  | {
      readonly ns: 'thread' | 'user';
      readonly op: 'set-large';
      readonly key: string;
      readonly bytes: number;
    }
  /** Sets a value JSON cannot carry, built by the core. */
  | {
      readonly ns: 'thread' | 'user';
      readonly op: 'set-weird';
      readonly key: string;
      readonly weird: 'undefined' | 'nan' | 'date' | 'cycle' | 'nul' | 'bigint' | 'function';
    };

function weirdValue(kind: string): unknown {
  switch (kind) {
    case 'undefined':
      return { a: undefined };
    case 'nan':
      return [Number.NaN];
    case 'date':
      return { at: new Date(0) };
    case 'cycle': {
      const cycle: Record<string, unknown> = {};
      cycle['self'] = cycle;
      return cycle;
    }
    case 'nul':
      return 'a\u0000b';
    case 'bigint':
      return 1n;
    default:
      return () => 1;
  }
}

async function apply(namespace: MemoryNamespaceV1, op: MemoryOp): Promise<unknown> {
  switch (op.op) {
    case 'get': {
      const value = await namespace.get(op.key);
      return value === undefined ? { found: false } : { found: true, value };
    }
    case 'set':
      await namespace.set(op.key, op.value as JsonValueV1);
      return 'ok';
    case 'set-large':
      await namespace.set(op.key, 'x'.repeat(op.bytes));
      return 'ok';
    case 'set-weird':
      await namespace.set(op.key, weirdValue(op.weird) as JsonValueV1);
      return 'ok';
    case 'delete':
      return namespace.delete(op.key);
    case 'list':
      return (
        await namespace.list({
          ...(op.prefix === undefined ? {} : { prefix: op.prefix }),
          ...(op.limit === undefined ? {} : { limit: op.limit }),
        })
      ).map((entry) => ({ key: entry.key, value: entry.value }));
  }
}

/**
 * A core that makes the memory calls its input lists, in order, and answers with their
 * results as JSON: tests drive `context.memory` through POST runs like any user would.
 */
export const memoryScriptCore: CorePluginV1 = {
  specificationVersion: 'core-v1',
  id: 'memory-script',
  async run(context) {
    const memory = context.memory;
    if (memory === undefined) throw new Error('no memory capability');
    const last = context.messages.at(-1)?.content[0];
    const ops = JSON.parse(last?.type === 'text' ? last.text : '[]') as MemoryOp[];
    const results: unknown[] = [];
    for (const op of ops) results.push(await apply(memory[op.ns], op));
    return { text: JSON.stringify(results), finishReason: 'stop' };
  },
};

/** The outcome of one scripted run. */
export interface ScriptOutcome {
  readonly status: string;
  readonly errorCode: string | null;
  readonly results: unknown[] | undefined;
}

/** Runs `ops` on `threadId` with the script agent and returns the run's end and answer. */
export async function runOps(
  client: ApiClient,
  target: { readonly threadId: string; readonly agentId: string },
  ops: readonly MemoryOp[],
): Promise<ScriptOutcome> {
  const run = await client.post<Created>(`/v1/threads/${target.threadId}/runs`, {
    agentId: target.agentId,
    input: JSON.stringify(ops),
  });
  if (run.status !== 201) throw new Error(`run refused: ${run.status} ${JSON.stringify(run.body)}`);
  const ended = await waitForRun(client, { threadId: target.threadId, runId: run.body.id });
  if (ended.status !== 'completed')
    return { status: ended.status, errorCode: ended.errorCode, results: undefined };
  const messages = await client.get<{ data: { role: string; content: { text?: string }[] }[] }>(
    `/v1/threads/${target.threadId}/messages?limit=100`,
  );
  const answer = messages.body.data.filter((message) => message.role === 'assistant').at(-1);
  return {
    status: ended.status,
    errorCode: ended.errorCode,
    results: JSON.parse(answer?.content[0]?.text ?? 'null') as unknown[],
  };
}

/** A memory entry as `listMemories` returns it. */
export interface MemoryBody {
  readonly id: string;
  readonly scope: 'user' | 'thread';
  readonly threadId: string | null;
  readonly key: string;
  readonly value: unknown;
  readonly runId: string | null;
}

/** Every memory `client` can list (all pages), optionally filtered by a query string. */
export async function listAllMemories(client: ApiClient, query = ''): Promise<MemoryBody[]> {
  const all: MemoryBody[] = [];
  let after: string | null = null;
  do {
    const cursor: string = after === null ? '' : `&after=${after}`;
    const page = await client.get<{ data: MemoryBody[]; nextCursor: string | null }>(
      `/v1/me/memories?limit=100${query}${cursor}`,
    );
    if (page.status !== 200) throw new Error(`listMemories: ${page.status}`);
    all.push(...page.body.data);
    after = page.body.nextCursor;
  } while (after !== null);
  return all;
}

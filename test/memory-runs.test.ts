import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CorePluginV1 } from '../src/plugin-api/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import {
  listAllMemories,
  type MemoryOp,
  memoryScriptCore,
  runOps,
} from './support/memory-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * `context.memory` through the public API: a core (registered like any user's) writes thread
 * and long-term memory in runs created with POST; the harness scopes it to the run's user and
 * thread, asks for `long_term_memory` consent, enforces the limits with their codes, and
 * commits the run's pending steps before a memory call.
 */

/** The example core of docs/writing-a-core.md, verbatim. */
const rememberingCore: CorePluginV1 = {
  specificationVersion: 'core-v1',
  id: 'remembering',
  async run(context) {
    const memory = context.memory;
    if (memory === undefined) throw new Error('This core needs a harness with memory.');
    // Thread memory: how many turns this conversation has had (no consent needed).
    const turns = Number((await memory.thread.get('turns')) ?? 0) + 1;
    await memory.thread.set('turns', turns);
    // Long-term memory: the user's first words to this agent, in any thread. It needs the
    // user's long_term_memory consent; without it this core goes on without remembering.
    let firstWords: string | undefined;
    try {
      firstWords = (await memory.user.get('first-words')) as string | undefined;
      const input = context.messages.at(-1)?.content[0];
      if (firstWords === undefined && input?.type === 'text') {
        firstWords = input.text;
        await memory.user.set('first-words', firstWords);
      }
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'consent_required') throw error;
    }
    return {
      text: `turn ${turns}; you first said: ${firstWords ?? '(not remembered)'}`,
      finishReason: 'stop',
    };
  },
};

/** Releases the durability core's run once the test has looked at it mid-run. */
const gates = new Map<string, () => void>();

/** Calls the model, writes memory, then waits for the test: a run caught in between. */
const modelThenMemoryCore: CorePluginV1 = {
  specificationVersion: 'core-v1',
  id: 'model-then-memory',
  async run(context) {
    const result = await context.model.generate({ messages: context.messages, tools: [] });
    await context.memory?.thread.set('answer', result.text);
    await new Promise<void>((resolve) => gates.set(context.runId, resolve));
    return { text: result.text, finishReason: 'stop' };
  },
};

/** Writes long-term memory in a loop until refused (the consent-revocation race). */
const loopingCore: CorePluginV1 = {
  specificationVersion: 'core-v1',
  id: 'memory-loop',
  async run(context) {
    const memory = context.memory;
    if (memory === undefined) throw new Error('no memory capability');
    for (let index = 0; index < 5_000; index += 1) {
      try {
        await memory.user.set(`k${index % 3}`, index);
      } catch (error) {
        return { text: `refused: ${(error as { code?: string }).code}`, finishReason: 'stop' };
      }
    }
    return { text: 'never refused', finishReason: 'stop' };
  },
};

const maxEntries = 6;
let server: TestServer;
let operator: ApiClient;
let tenantId: string;

beforeAll(async () => {
  server = await startTestServer(
    {
      runs: { pollIntervalMs: 50 },
      memory: { maxEntriesPerUser: maxEntries },
      // The property test polls its runs' states: hundreds of requests a minute on one key,
      // which the default 600 a minute refused on a fast machine (a 429 is not what it tests).
      limits: { requestsPerMinute: { key: 100_000, user: 100_000, tenant: 100_000 } },
    },
    { cores: [memoryScriptCore, rememberingCore, modelThenMemoryCore, loopingCore] },
  );
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'memory-runs');
});

afterAll(async () => {
  for (const release of gates.values()) release();
  await server?.stop();
});

/** A fresh member with a script agent (created by a fresh admin) and a thread. */
async function member(options: { consent: boolean }) {
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  const agent = await admin.post<Created>('/v1/agents', {
    name: `script-${Math.random().toString(36).slice(2, 10)}`,
    coreId: 'memory-script',
  });
  const seeded = await seedUser(operator, { tenantId, role: 'member' });
  const client = apiClient(server.url, seeded.secret);
  let consentId: string | undefined;
  if (options.consent) {
    const consent = await client.post<Created>('/v1/me/consents', {
      purpose: 'long_term_memory',
      version: '1',
    });
    consentId = consent.body.id;
  }
  const thread = (await client.post<Created>('/v1/threads', {})).body.id;
  return { client, admin, agentId: agent.body.id, threadId: thread, consentId };
}

describe('memory of a core', () => {
  it('keeps thread memory per thread and long-term memory across threads (the docs example)', async () => {
    const user = await member({ consent: true });
    const agent = await user.admin.post<Created>('/v1/agents', {
      name: `remembering-${Math.random().toString(36).slice(2, 8)}`,
      coreId: 'remembering',
    });
    const answer = async (threadId: string, input: string) => {
      const run = await user.client.post<Created>(`/v1/threads/${threadId}/runs`, {
        agentId: agent.body.id,
        input,
      });
      expect((await waitForRun(user.client, { threadId, runId: run.body.id })).status).toBe(
        'completed',
      );
      const messages = await user.client.get<{ data: { content: { text?: string }[] }[] }>(
        `/v1/threads/${threadId}/messages`,
      );
      return messages.body.data.at(-1)?.content[0]?.text;
    };
    expect(await answer(user.threadId, 'hello there')).toBe('turn 1; you first said: hello there');
    expect(await answer(user.threadId, 'again')).toBe('turn 2; you first said: hello there');
    const other = (await user.client.post<Created>('/v1/threads', {})).body.id;
    expect(await answer(other, 'new topic')).toBe('turn 1; you first said: hello there');
  });

  it('reads a thread’s memory in its next run, never in another thread; long-term memory in both', async () => {
    const user = await member({ consent: true });
    const first = await runOps(user.client, user, [
      { ns: 'thread', op: 'set', key: 'topic', value: { name: 'gardening', depth: [1, 2] } },
      { ns: 'user', op: 'set', key: 'prefs/lang', value: 'fr' },
    ]);
    expect(first).toMatchObject({ status: 'completed', results: ['ok', 'ok'] });
    const again = await runOps(user.client, user, [
      { ns: 'thread', op: 'get', key: 'topic' },
      { ns: 'thread', op: 'list', prefix: 'to' },
    ]);
    expect(again.results).toEqual([
      { found: true, value: { name: 'gardening', depth: [1, 2] } },
      [{ key: 'topic', value: { name: 'gardening', depth: [1, 2] } }],
    ]);
    const otherThread = (await user.client.post<Created>('/v1/threads', {})).body.id;
    const elsewhere = await runOps(user.client, { ...user, threadId: otherThread }, [
      { ns: 'thread', op: 'get', key: 'topic' },
      { ns: 'thread', op: 'list' },
      { ns: 'user', op: 'get', key: 'prefs/lang' },
    ]);
    expect(elsewhere.results).toEqual([{ found: false }, [], { found: true, value: 'fr' }]);
    const listed = await listAllMemories(user.client);
    expect(listed.map((entry) => [entry.scope, entry.threadId, entry.key]).sort()).toEqual([
      ['thread', user.threadId, 'topic'],
      ['user', null, 'prefs/lang'],
    ]);
    expect(listed.every((entry) => entry.runId !== null)).toBe(true);
  });

  it('refuses long-term memory without consent, allows it once granted, refuses it again (and erases it) after revocation', async () => {
    const user = await member({ consent: false });
    const refused = await runOps(user.client, user, [
      { ns: 'thread', op: 'set', key: 'kept', value: 1 },
      { ns: 'user', op: 'set', key: 'secret', value: 'x' },
    ]);
    expect(refused).toMatchObject({ status: 'failed', errorCode: 'consent_required' });
    expect((await listAllMemories(user.client, '&scope=user')).length).toBe(0);
    const reading = await runOps(user.client, user, [{ ns: 'user', op: 'get', key: 'secret' }]);
    expect(reading.errorCode).toBe('consent_required');
    const consent = await user.client.post<Created>('/v1/me/consents', {
      purpose: 'long_term_memory',
      version: '1',
    });
    const allowed = await runOps(user.client, user, [
      { ns: 'user', op: 'set', key: 'secret', value: 'x' },
      { ns: 'user', op: 'get', key: 'secret' },
    ]);
    expect(allowed.results).toEqual(['ok', { found: true, value: 'x' }]);
    expect((await user.client.post(`/v1/me/consents/${consent.body.id}/revoke`)).status).toBe(200);
    const after = await runOps(user.client, user, [{ ns: 'user', op: 'list' }]);
    expect(after).toMatchObject({ status: 'failed', errorCode: 'consent_required' });
    // Revocation erased the long-term memory; the thread's memory needs no consent and stays.
    const left = await listAllMemories(user.client);
    expect(left.map((entry) => [entry.scope, entry.key])).toEqual([['thread', 'kept']]);
  });

  it('fails the run with the limit’s code and writes nothing of the refused call', async () => {
    const user = await member({ consent: true });
    const cases: [MemoryOp, string][] = [
      [{ ns: 'thread', op: 'set', key: '../etc', value: 1 }, 'memory_key_invalid'],
      [{ ns: 'user', op: 'get', key: '' }, 'memory_key_invalid'],
      [{ ns: 'thread', op: 'set', key: `k${'x'.repeat(128)}`, value: 1 }, 'memory_key_invalid'],
      [{ ns: 'thread', op: 'list', prefix: 'a b' }, 'memory_key_invalid'],
      [{ ns: 'thread', op: 'set-large', key: 'big', bytes: 16_384 }, 'memory_value_too_large'],
      [{ ns: 'user', op: 'set-large', key: 'big', bytes: 20_000 }, 'memory_value_too_large'],
      [{ ns: 'thread', op: 'list', limit: 0 }, 'validation_failed'],
    ];
    for (const weird of ['undefined', 'nan', 'date', 'cycle', 'nul', 'bigint', 'function'] as const)
      cases.push([{ ns: 'thread', op: 'set-weird', key: 'weird', weird }, 'memory_value_invalid']);
    for (const [op, code] of cases) {
      const outcome = await runOps(user.client, user, [op]);
      expect({ op, status: outcome.status, code: outcome.errorCode }).toEqual({
        op,
        status: 'failed',
        code,
      });
    }
    // Just under the limit is fine (16,384 bytes of JSON: the string and its two quotes).
    const fits = await runOps(user.client, user, [
      { ns: 'thread', op: 'set-large', key: 'big', bytes: 16_382 },
    ]);
    expect(fits.status).toBe('completed');
    expect((await listAllMemories(user.client)).map((entry) => entry.key)).toEqual(['big']);
  });

  it('caps a user’s entries across both namespaces, still letting existing keys change', async () => {
    const user = await member({ consent: true });
    const fill: MemoryOp[] = Array.from({ length: maxEntries }, (_, index) => ({
      ns: index % 2 === 0 ? 'thread' : 'user',
      op: 'set',
      key: `k${index}`,
      value: index,
    }));
    expect((await runOps(user.client, user, fill)).status).toBe('completed');
    const over = await runOps(user.client, user, [
      { ns: 'thread', op: 'set', key: 'k1', value: 'thread k1 is new' },
    ]);
    expect(over).toMatchObject({ status: 'failed', errorCode: 'memory_limit_exceeded' });
    const otherThread = (await user.client.post<Created>('/v1/threads', {})).body.id;
    const elsewhere = await runOps(user.client, { ...user, threadId: otherThread }, [
      { ns: 'thread', op: 'set', key: 'x', value: 1 },
    ]);
    expect(elsewhere.errorCode).toBe('memory_limit_exceeded');
    const overwrite = await runOps(user.client, user, [
      { ns: 'user', op: 'set', key: 'k1', value: 'changed' },
      { ns: 'thread', op: 'delete', key: 'k0' },
      { ns: 'thread', op: 'set', key: 'fresh', value: true },
    ]);
    expect(overwrite.results).toEqual(['ok', true, 'ok']);
    const listed = await listAllMemories(user.client);
    expect(listed.length).toBe(maxEntries);
    expect(listed.find((entry) => entry.key === 'k1')?.value).toBe('changed');
  });

  it('commits the model step before the memory write it led to', async () => {
    const user = await member({ consent: false });
    const agent = await user.admin.post<Created>('/v1/agents', {
      name: `durable-${Math.random().toString(36).slice(2, 8)}`,
      coreId: 'model-then-memory',
    });
    const run = await user.client.post<Created>(`/v1/threads/${user.threadId}/runs`, {
      agentId: agent.body.id,
      input: 'remember this',
    });
    const runId = run.body.id;
    for (let attempt = 0; attempt < 400 && !gates.has(runId); attempt += 1)
      await new Promise((resolve) => setTimeout(resolve, 25));
    // The run is still going: its model step is already checkpointed, with the memory after it.
    const steps = await user.client.get<{ data: { stepKey?: string; key?: string }[] }>(
      `/v1/threads/${user.threadId}/runs/${runId}/steps`,
    );
    expect(steps.status).toBe(200);
    expect(JSON.stringify(steps.body.data)).toContain('model:0');
    expect((await listAllMemories(user.client)).map((entry) => entry.key)).toEqual(['answer']);
    gates.get(runId)?.();
    expect((await waitForRun(user.client, { threadId: user.threadId, runId })).status).toBe(
      'completed',
    );
  });

  it('round-trips any key and JSON value, or fails the run with the right code (never an internal error)', async () => {
    const user = await member({ consent: true });
    const keyPattern = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.stringMatching(keyPattern), fc.string({ maxLength: 140 })),
        fc.jsonValue({ maxDepth: 3 }),
        fc.constantFrom<'thread' | 'user'>('thread', 'user'),
        async (key, value, ns) => {
          const threadId = (await user.client.post<Created>('/v1/threads', {})).body.id;
          const outcome = await runOps(user.client, { ...user, threadId }, [
            { ns, op: 'set', key, value },
            { ns, op: 'get', key },
            { ns, op: 'delete', key },
          ]);
          if (!keyPattern.test(key)) {
            expect(outcome.errorCode).toBe('memory_key_invalid');
            return;
          }
          expect(outcome.status).toBe('completed');
          expect(outcome.results).toEqual([
            'ok',
            { found: true, value: JSON.parse(JSON.stringify(value)) },
            true,
          ]);
        },
      ),
      { numRuns: 20 },
    );
  });
});

describe('memory under races and odd values', () => {
  it('leaves no long-term memory behind a revocation that lands mid-write', async () => {
    for (let attempt = 0; attempt < 6; attempt += 1) {
      const user = await member({ consent: true });
      const agent = await user.admin.post<Created>('/v1/agents', {
        name: `loop-${Math.random().toString(36).slice(2, 10)}`,
        coreId: 'memory-loop',
      });
      const run = await user.client.post<Created>(`/v1/threads/${user.threadId}/runs`, {
        agentId: agent.body.id,
        input: 'go',
      });
      for (let wait = 0; wait < 400; wait += 1) {
        if ((await listAllMemories(user.client, '&scope=user')).length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await new Promise((resolve) => setTimeout(resolve, 10 + attempt * 7));
      const revoked = await user.client.post(`/v1/me/consents/${user.consentId}/revoke`);
      expect(revoked.status).toBe(200);
      const ended = await waitForRun(user.client, { threadId: user.threadId, runId: run.body.id });
      expect(ended.status).toBe('completed');
      expect(await listAllMemories(user.client, '&scope=user'), `attempt ${attempt}`).toEqual([]);
    }
  });

  it('stores a small value whose numbers PostgreSQL spells out at length', async () => {
    const user = await member({ consent: false });
    const value = Array.from({ length: 2_300 }, () => 1e300);
    const outcome = await runOps(user.client, user, [
      { ns: 'thread', op: 'set', key: 'big-numbers', value },
      { ns: 'thread', op: 'get', key: 'big-numbers' },
    ]);
    expect(outcome.status).toBe('completed');
    const got = outcome.results?.[1] as { found: boolean; value: number[] } | undefined;
    expect(got?.found).toBe(true);
    expect(got?.value).toHaveLength(2_300);
    expect(got?.value[0]).toBe(1e300);
  });
});

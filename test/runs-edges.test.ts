import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { ownerQuery } from './support/budget-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Runs at their edges, attacked through the API: a thread deleted while a run is being created
 * on it or while one runs, event streams resumed at or past their end or with a malformed
 * Last-Event-ID, a run cut off by its step limit, an approval decided with arguments it would
 * ignore, and metadata nested deep enough to exhaust a recursive check.
 */
let server: TestServer;
let tenantId: string;
let owner: ApiClient;
let member: ApiClient;
let memberSecret: string;
let agentId: string;

const ids = (threadId: string, runId: string) => ({ threadId, runId });

async function newThread(client = member): Promise<string> {
  return (await client.post<Created>('/v1/threads', {})).body.id;
}

/** The text of an event stream, read to its end (or until `ms` pass). */
async function streamText(path: string, headers: Record<string, string> = {}, ms = 20_000) {
  const response = await fetch(`${server.url}${path}`, {
    headers: { authorization: `Bearer ${memberSecret}`, ...headers },
    signal: AbortSignal.timeout(ms),
  });
  return { status: response.status, text: await response.text() };
}

beforeAll(async () => {
  server = await startTestServer({
    models: { local: { tokenDelayMs: 40 } },
    runs: { pollIntervalMs: 50, maxConcurrentPerUser: 1, staleAfterMs: 2_000 },
  });
  const operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'run-edges');
  owner = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'owner' })).secret);
  memberSecret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  member = apiClient(server.url, memberSecret);
  agentId = (
    await owner.post<Created>('/v1/agents', { name: 'edges', maxSteps: 1, tools: ['calculator'] })
  ).body.id;
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

describe('a thread deleted under its runs', () => {
  it('leaves no queue entry behind when deleted while a run is being created on it', async () => {
    for (let round = 0; round < 25; round += 1) {
      const threadId = await newThread();
      await Promise.all([
        member.post(`/v1/threads/${threadId}/runs`, { agentId, input: `race ${round}` }),
        member.request('DELETE', `/v1/threads/${threadId}`),
      ]);
    }
    const database = new pg.Client({ connectionString: server.database.url });
    await database.connect();
    try {
      const orphans = await ownerQuery<{ count: string }>(database, tenantId, {
        text: `select count(*) from brigade.run_queue q
                where not exists (select 1 from brigade.runs r where r.id = q.run_id)`,
      });
      expect(Number(orphans[0]?.count)).toBe(0);
    } finally {
      await database.end();
    }
    // The user's one run slot is free: a new run starts and finishes.
    const threadId = await newThread();
    const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId,
      input: 'hi',
    });
    expect((await waitForRun(member, ids(threadId, run.body.id))).status).toBe('completed');
  });

  it('stops a running run and ends its open streams with an error event', async () => {
    const threadId = await newThread();
    const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId,
      input: 'word '.repeat(400),
    });
    await waitForRun(member, ids(threadId, run.body.id), ['running']);
    const stream = streamText(`/v1/threads/${threadId}/runs/${run.body.id}/events`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await member.request('DELETE', `/v1/threads/${threadId}`)).status).toBe(204);
    const { text } = await stream;
    expect(text).toContain('event: error');
    expect(text).toContain('run_not_found');
    // Every event has an id: the error's is the last event delivered before it.
    const eventIds = [...text.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    expect(text).toMatch(/id: \d+\nevent: error\n/);
    expect(eventIds.at(-1)).toBe(Math.max(0, ...eventIds.slice(0, -1)));
    // The next run of this user (one slot) starts: the deleted one holds nothing.
    const next = await newThread();
    const again = await member.post<Created>(`/v1/threads/${next}/runs`, { agentId, input: 'hi' });
    expect((await waitForRun(member, ids(next, again.body.id))).status).toBe('completed');
  });
});

describe('a thread deleted while its approval is decided', () => {
  it('never deadlocks: every pair ends in success or a clean refusal', async () => {
    const gated = await owner.post<Created>('/v1/agents', {
      name: 'gated',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    });
    const pairs = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const threadId = await newThread();
        const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
          agentId: gated.body.id,
          input: 'call calculator {"expression":"2+2"}',
        });
        await waitForRun(member, ids(threadId, run.body.id), ['requires_action']);
        const pending = await member.get<{ data: { id: string; runId: string }[] }>(
          '/v1/approvals',
        );
        const approval = pending.body.data.find((item) => item.runId === run.body.id);
        return { threadId, approvalId: approval?.id ?? '' };
      }),
    );
    const statuses = await Promise.all(
      pairs.flatMap(({ threadId, approvalId }) => [
        member
          .post(`/v1/approvals/${approvalId}/decision`, { decision: 'approve' })
          .then((response) => response.status),
        member.request('DELETE', `/v1/threads/${threadId}`).then((response) => response.status),
      ]),
    );
    for (const status of statuses) expect([200, 204, 404, 409]).toContain(status);
  });
});

describe('resuming an event stream', () => {
  it('closes at once when resumed at or past a finished run’s last event', async () => {
    const threadId = await newThread();
    const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId,
      input: 'hi',
    });
    await waitForRun(member, ids(threadId, run.body.id));
    const path = `/v1/threads/${threadId}/runs/${run.body.id}/events`;
    const whole = await streamText(path);
    const lastId = Math.max(...[...whole.text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1])));
    expect(whole.text).toContain('event: run-completed');
    for (const resumed of [
      await streamText(path, { 'last-event-id': String(lastId) }, 5_000),
      await streamText(`${path}?after=${lastId + 50}`, {}, 5_000),
    ]) {
      expect(resumed.status).toBe(200);
      expect(resumed.text).not.toContain('event:');
    }
  });

  it('refuses a Last-Event-ID that is not an event id with 422, as for ?after', async () => {
    const threadId = await newThread();
    const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId,
      input: 'hi',
    });
    await waitForRun(member, ids(threadId, run.body.id));
    const path = `/v1/threads/${threadId}/runs/${run.body.id}/events`;
    for (const value of ['1e3', '5.5', '-1', 'abc', '99999999999999999999']) {
      const refused = await streamText(path, { 'last-event-id': value }, 5_000);
      expect({ value, status: refused.status }).toEqual({ value, status: 422 });
      expect(JSON.parse(refused.text)).toMatchObject({ code: 'validation_failed' });
    }
  });
  it('declares Last-Event-ID as an optional header of streamRunEvents, digits only', async () => {
    const document = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<
        string,
        Record<
          string,
          {
            operationId: string;
            parameters?: {
              name: string;
              in: string;
              required?: boolean;
              schema?: { pattern?: string };
            }[];
          }
        >
      >;
    };
    const operation = document.paths['/v1/threads/{threadId}/runs/{runId}/events']?.['get'];
    expect(operation?.operationId).toBe('streamRunEvents');
    const header = operation?.parameters?.find((parameter) => parameter.in === 'header');
    expect(header).toMatchObject({
      name: 'Last-Event-ID',
      required: false,
      schema: { type: 'string', pattern: expect.any(String) },
    });
    const pattern = new RegExp(header?.schema?.pattern ?? '');
    expect(['0', '17', '123456789012345'].every((value) => pattern.test(value))).toBe(true);
    for (const value of ['1e3', '5.5', '-1', 'abc', '9999999999999999'])
      expect({ value, matches: pattern.test(value) }).toEqual({ value, matches: false });
  });
});

describe('what a run and its approvals say', () => {
  it('marks an answer cut off by the step limit incomplete', async () => {
    const threadId = await newThread();
    const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId,
      input: 'call calculator {"expression":"1+2"}',
    });
    const finished = await waitForRun<{ status: string; incomplete: unknown }>(
      member,
      ids(threadId, run.body.id),
    );
    expect(finished).toMatchObject({ status: 'completed', incomplete: { reason: 'max-steps' } });
  });

  it('names the agent field that asks for a partial answer at the deadline', async () => {
    const text = await (await fetch(`${server.url}/openapi.json`)).text();
    const document = JSON.parse(text) as {
      components: { schemas: { Run: { properties: { incomplete: unknown } } } };
    };
    const incomplete = JSON.stringify(document.components.schemas.Run.properties.incomplete);
    expect(incomplete).toContain('`onDeadline: partial`');
    expect(text).not.toContain('timeoutBehavior');
  });

  it('refuses arguments with an approve or a reject (they would be ignored)', async () => {
    for (const decision of ['approve', 'reject']) {
      const refused = await member.post<{ code: string; errors: { path: string }[] }>(
        '/v1/approvals/00000000-0000-4000-8000-000000000000/decision',
        { decision, arguments: { expression: '999*999' } },
      );
      expect(refused.status).toBe(422);
      expect(refused.body.errors[0]?.path).toBe('body.arguments');
    }
  });
});

describe('request bodies', () => {
  it('refuses metadata nested thousands deep with 422, never 500', async () => {
    const deep = `{"metadata":{"a":${'['.repeat(5_000)}${']'.repeat(5_000)}}}`;
    for (const path of ['/v1/threads', '/v1/agents']) {
      const response = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${memberSecret}`, 'content-type': 'application/json' },
        body: deep,
      });
      expect({ path, status: response.status }).toEqual({ path, status: 422 });
    }
  });

  it('refuses JSON nested thousands deep inside a string field too, never 500', async () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${memberSecret}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'local',
        messages: [
          { role: 'user', content: 'hi' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'c1', type: 'function', function: { name: 'calculator', arguments: deep } },
            ],
          },
          { role: 'tool', tool_call_id: 'c1', content: '4' },
        ],
      }),
    });
    expect(response.status).toBe(400);
    // In a run's input, the local model hands such arguments to the tool gate, which refuses them.
    const threadId = await newThread();
    const run = await member.post<Created>(`/v1/threads/${threadId}/runs`, {
      agentId,
      input: `call calculator ${deep}`,
    });
    expect((await waitForRun(member, ids(threadId, run.body.id))).status).toBe('completed');
  });

  it('publishes id cursor patterns that real cursors match', async () => {
    const document = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<
        string,
        Record<string, { parameters?: { name: string; schema?: { pattern?: string } }[] }>
      >;
    };
    const patterns = Object.values(document.paths)
      .flatMap((operations) => Object.values(operations))
      .flatMap((operation) => operation.parameters ?? [])
      .filter((parameter) => parameter.name === 'after' && parameter.schema?.pattern !== undefined)
      .map((parameter) => parameter.schema?.pattern ?? '');
    expect(patterns.length).toBeGreaterThan(3);
    const cursor = (await member.get<{ data: { id: string }[] }>('/v1/threads?limit=1')).body
      .data[0]?.id;
    // Id cursors, `seq` numbers, and creation cursors (runs, approvals: microseconds and an id).
    const samples = [cursor ?? '', '17', `1733500000123456_${cursor ?? ''}`];
    for (const pattern of patterns)
      expect(
        samples.some((sample) => new RegExp(pattern).test(sample)),
        pattern,
      ).toBe(true);
  });
});

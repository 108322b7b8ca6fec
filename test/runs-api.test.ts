import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

let server: TestServer;
let admin: ApiClient;
let member: ApiClient;
let stranger: ApiClient;
let agentId: string;
let memberSecret: string;

interface SseEvent {
  readonly id: string;
  readonly event: string;
  readonly data: Record<string, unknown>;
}

/** Reads an SSE response until it ends or `stopAfter` events arrived. */
async function readSse(
  response: Response,
  stopAfter = Number.POSITIVE_INFINITY,
): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  const reader = response.body?.getReader();
  if (reader === undefined) return events;
  const decoder = new TextDecoder();
  let buffer = '';
  while (events.length < stopAfter) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let boundary = buffer.indexOf('\n\n');
    while (boundary >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      const fields = Object.fromEntries(
        block
          .split('\n')
          .filter((line) => !line.startsWith(':') && line.includes(':'))
          .map((line) => [
            line.slice(0, line.indexOf(':')),
            line.slice(line.indexOf(':') + 1).trim(),
          ]),
      );
      if (fields['event'] !== undefined) {
        events.push({
          id: fields['id'] ?? '',
          event: fields['event'],
          data: JSON.parse(fields['data'] ?? '{}'),
        });
      }
      boundary = buffer.indexOf('\n\n');
    }
  }
  await reader.cancel().catch(() => undefined);
  return events;
}

beforeAll(async () => {
  server = await startTestServer({
    models: { local: { tokenDelayMs: 0 } },
    runs: { pollIntervalMs: 50 },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'runs');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  memberSecret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  member = apiClient(server.url, memberSecret);
  stranger = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const agent = await admin.post<Created>('/v1/agents', {
    name: 'helper',
    tools: ['calculator', 'current_time'],
  });
  expect(agent.status).toBe(201);
  agentId = agent.body.id;
});

afterAll(async () => {
  await server?.stop();
});

describe('agents', () => {
  it('lets members use agents but not create them', async () => {
    expect((await member.post('/v1/agents', { name: 'mine' })).status).toBe(403);
    expect((await member.get(`/v1/agents/${agentId}`)).status).toBe(200);
  });

  it('refuses unknown models and tools at creation', async () => {
    const model = await admin.post('/v1/agents', { name: 'bad-model', model: 'nope:gpt' });
    expect(model.status).toBe(422);
    expect(model.body).toMatchObject({ code: 'unknown_model' });
    const tool = await admin.post('/v1/agents', { name: 'bad-tool', tools: ['rm_rf'] });
    expect(tool.body).toMatchObject({ code: 'unknown_tool' });
  });
});

describe('runs', () => {
  it('answers with the local model and stores both messages', async () => {
    const thread = await member.post<Created>('/v1/threads', { title: 'hello' });
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'hello there',
    });
    expect(run.status).toBe(201);
    const done = await waitForRun(member, { threadId: thread.body.id, runId: run.body.id });
    expect(done.status).toBe('completed');
    const messages = await member.get<{ data: { role: string; content: { text?: string }[] }[] }>(
      `/v1/threads/${thread.body.id}/messages`,
    );
    expect(messages.body.data.map((message) => message.role)).toEqual(['user', 'assistant']);
    expect(messages.body.data[1]?.content[0]?.text).toBe('You said: hello there');
  });

  it('calls a tool and answers from its result', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'call calculator {"expression":"2+3*4"}',
    });
    const done = await waitForRun(member, { threadId: thread.body.id, runId: run.body.id });
    expect(done.status).toBe('completed');
    const messages = await member.get<{ data: { content: { text?: string }[] }[] }>(
      `/v1/threads/${thread.body.id}/messages`,
    );
    expect(messages.body.data.at(-1)?.content[0]?.text).toBe('calculator returned: {"result":14}');
  });

  it('streams events with ids, and a reconnect with Last-Event-ID resumes without loss or duplicates', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const created = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'one two three four five',
    });
    const path = `/v1/threads/${thread.body.id}/runs/${created.body.id}/events`;
    const auth = { authorization: `Bearer ${memberSecret}` };
    const all = await readSse(await fetch(`${server.url}${path}`, { headers: auth }));
    expect(all[0]?.event).toBe('run-queued');
    expect(all.at(-1)?.event).toBe('run-completed');
    const ids = all.map((event) => Number(event.id));
    expect(ids).toEqual(ids.map((_, index) => index + 1));
    const text = all
      .filter((event) => event.event === 'message-delta')
      .map((event) => event.data['text'])
      .join('');
    expect(text).toBe('You said: one two three four five');
    const resumed = await readSse(
      await fetch(`${server.url}${path}`, { headers: { ...auth, 'last-event-id': '2' } }),
    );
    expect(resumed.map((event) => event.id)).toEqual(all.slice(2).map((event) => event.id));
  });

  it('creates a run and streams it in one request', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const response = await fetch(`${server.url}/v1/threads/${thread.body.id}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${memberSecret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ agentId, input: 'stream me', stream: true }),
    });
    expect(response.status).toBe(201);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const events = await readSse(response);
    expect(events.map((event) => event.event)).toContain('run-started');
    expect(events.at(-1)).toMatchObject({
      event: 'run-completed',
      data: { text: 'You said: stream me' },
    });
    // The stream began from the event its create committed, not a read-back: it must still be
    // exactly what the run's stored events are, from the first on.
    const runId = String(events[0]?.data['runId']);
    const stored = await readSse(
      await fetch(`${server.url}/v1/threads/${thread.body.id}/runs/${runId}/events?after=0`, {
        headers: { authorization: `Bearer ${memberSecret}` },
      }),
    );
    expect(events[0]?.event).toBe('run-queued');
    expect(events).toEqual(stored);
  });

  it('enqueues a run on a busy thread and runs it after the active one', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const base = `/v1/threads/${thread.body.id}/runs`;
    const first = await member.post<Created>(base, { agentId, input: 'first' });
    const queued = await member.post<Created>(base, {
      agentId,
      input: 'third',
      strategy: 'enqueue',
    });
    expect(queued.status).toBe(201);
    await waitForRun(member, { threadId: thread.body.id, runId: queued.body.id });
    const runs = await member.get<{ data: { id: string; status: string; completedAt: string }[] }>(
      base,
    );
    const firstRun = runs.body.data.find((run) => run.id === first.body.id);
    const thirdRun = runs.body.data.find((run) => run.id === queued.body.id);
    expect(firstRun?.status).toBe('completed');
    expect(thirdRun?.status).toBe('completed');
    expect(Date.parse(firstRun?.completedAt ?? '')).toBeLessThanOrEqual(
      Date.parse(thirdRun?.completedAt ?? ''),
    );
  });

  it('hides a thread and its runs from every other user', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'secret plans',
    });
    for (const client of [stranger, admin]) {
      expect((await client.get(`/v1/threads/${thread.body.id}`)).status).toBe(404);
      expect((await client.get(`/v1/threads/${thread.body.id}/messages`)).status).toBe(404);
      expect((await client.get(`/v1/threads/${thread.body.id}/runs/${run.body.id}`)).status).toBe(
        404,
      );
      expect(
        (await client.get(`/v1/threads/${thread.body.id}/runs/${run.body.id}/events`)).status,
      ).toBe(404);
      expect(
        (await client.post(`/v1/threads/${thread.body.id}/runs/${run.body.id}/cancel`)).status,
      ).toBe(404);
      expect(
        (await client.post(`/v1/threads/${thread.body.id}/runs`, { agentId, input: 'x' })).status,
      ).toBe(404);
      const list = await client.get<{ data: { id: string }[] }>('/v1/threads');
      expect(list.body.data.map((item) => item.id)).not.toContain(thread.body.id);
    }
  });

  it('rejects bad run requests with clear codes', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const base = `/v1/threads/${thread.body.id}/runs`;
    expect(
      (await member.post(base, { agentId: '00000000-0000-4000-8000-000000000000', input: 'x' }))
        .body,
    ).toMatchObject({
      code: 'agent_not_found',
    });
    expect((await member.post(base, { agentId, input: 'x', strategy: 'shout' })).status).toBe(422);
    expect(
      (
        await member.post('/v1/threads/00000000-0000-4000-8000-000000000000/runs', {
          agentId,
          input: 'x',
        })
      ).body,
    ).toMatchObject({
      code: 'thread_not_found',
    });
  });
});

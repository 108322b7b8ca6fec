import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  cleanUp,
  createWorkspace,
  operatorKeyPattern,
  startBrigade,
  stopBrigade,
} from './support/embedded-process.ts';

/**
 * Runs on the embedded database, through the real `brigade serve`: that mode has one server
 * process, so run signals (new events, cancel requests, queued work) never leave it — no
 * LISTEN connection, no NOTIFY. Streams must still see every event, and a cancel must still
 * stop a run mid-stream at once.
 */

afterEach(cleanUp, 30_000);
afterAll(cleanUp, 30_000);

interface SseEvent {
  readonly id: number;
  readonly type: string;
  readonly data: Record<string, unknown>;
}

async function call<T>(url: string, key: string, init: { method?: string; body?: unknown } = {}) {
  const response = await fetch(url, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${init.method ?? 'GET'} ${url}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

/** Reads an SSE response to its end (or until `onEvent` returns true), parsing each event. */
async function readEvents(
  response: Response,
  onEvent: (event: SseEvent) => void = () => undefined,
): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let end = buffered.indexOf('\n\n');
    while (end >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf('\n\n');
      const field = (name: string) =>
        block
          .split('\n')
          .find((line) => line.startsWith(`${name}: `))
          ?.slice(name.length + 2);
      const type = field('event');
      if (type === undefined) continue; // a keep-alive comment
      const event = {
        id: Number(field('id')),
        type,
        data: JSON.parse(field('data') ?? '{}') as Record<string, unknown>,
      };
      events.push(event);
      onEvent(event);
    }
  }
  return events;
}

describe('runs on the embedded database (one process: signals stay in it)', {
  timeout: 90_000,
}, () => {
  it('streams every event of a run in order and cancels a streaming run at once', async () => {
    // 80 ms between tokens: the second run's answer would stream for about 12 s.
    const workspace = await createWorkspace({ models: { local: { tokenDelayMs: 80 } } });
    const brigade = await startBrigade(workspace);
    const operator = brigade.stdout().match(operatorKeyPattern)?.[0] ?? '';
    const base = `${brigade.url}/v1`;
    const tenant = await call<{ id: string }>(`${base}/tenants`, operator, {
      method: 'POST',
      body: { slug: 'embedded-runs', name: 'Embedded runs' },
    });
    const user = await call<{ id: string }>(`${base}/tenants/${tenant.id}/users`, operator, {
      method: 'POST',
      body: { role: 'admin' },
    });
    const { secret: key } = await call<{ secret: string }>(
      `${base}/tenants/${tenant.id}/users/${user.id}/api-keys`,
      operator,
      { method: 'POST', body: { name: 'test' } },
    );
    const agent = await call<{ id: string }>(`${base}/agents`, key, {
      method: 'POST',
      body: { name: 'echo', model: 'local', tools: ['calculator'] },
    });

    // A run with a tool call, created and streamed in one request.
    const first = await call<{ id: string }>(`${base}/threads`, key, { method: 'POST', body: {} });
    const created = await fetch(`${base}/threads/${first.id}/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        agentId: agent.id,
        input: 'call calculator {"expression":"6*7"}',
        stream: true,
      }),
    });
    expect(created.status).toBe(201);
    const events = await readEvents(created);
    expect(events.map((event) => event.id)).toEqual(events.map((_, index) => index + 1));
    const types = events.map((event) => event.type);
    expect(types[0]).toBe('run-queued');
    expect(types).toContain('tool-call-finished');
    expect(types.at(-1)).toBe('run-completed');
    const runId = String(events[0]?.data['runId']);
    // What the stream sent is what the run stored.
    const stored = await fetch(`${base}/threads/${first.id}/runs/${runId}/events`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect((await readEvents(stored)).map((event) => [event.id, event.type])).toEqual(
      events.map((event) => [event.id, event.type]),
    );
    // With no configuration the tool call's arguments hash is keyed (the key is derived from
    // the tenant's vault data key, wrapped by the generated .brigade/master-key).
    const audit = await call<{ data: { action: string; data: Record<string, unknown> }[] }>(
      `${base}/tenants/${tenant.id}/audit-events?limit=500`,
      key,
    );
    const toolCalled = audit.data.find((event) => event.action === 'tool.called');
    expect(toolCalled?.data['argumentsHash']).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);

    // A slow answer, cancelled from another request once it streams.
    const second = await call<{ id: string }>(`${base}/threads`, key, { method: 'POST', body: {} });
    const words = Array.from({ length: 150 }, (_, index) => `word${index}`).join(' ');
    const run = await call<{ id: string }>(`${base}/threads/${second.id}/runs`, key, {
      method: 'POST',
      body: { agentId: agent.id, input: words },
    });
    const stream = await fetch(`${base}/threads/${second.id}/runs/${run.id}/events`, {
      headers: { authorization: `Bearer ${key}` },
    });
    let cancelledAt: number | undefined;
    let cancelling: Promise<unknown> | undefined;
    const streamed = await readEvents(stream, (event) => {
      if (event.type === 'message-delta' && cancelling === undefined) {
        cancelledAt = Date.now();
        cancelling = call(`${base}/threads/${second.id}/runs/${run.id}/cancel`, key, {
          method: 'POST',
        });
      }
    });
    await cancelling;
    expect(streamed.at(-1)?.type).toBe('run-cancelled');
    // The stream ended long before the rest of the answer (~150 tokens × 80 ms = 12 s) could
    // have streamed: the cancel reached the run in this process at once.
    expect(Date.now() - (cancelledAt ?? 0)).toBeLessThan(6_000);
    const final = await call<{ status: string }>(
      `${base}/threads/${second.id}/runs/${run.id}`,
      key,
    );
    expect(final.status).toBe('cancelled');
    expect(await stopBrigade(brigade)).toEqual({ code: 0, signal: null });
  });
});

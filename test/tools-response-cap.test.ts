import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, runOnce, startLoggedServer } from './support/tool-fixtures.ts';

/**
 * The response read cap: a tenant HTTP tool and `http_request` read at most their
 * `maxResponseChars` of a response and then close the connection, against a real server that
 * streams a 100 MB body (it stops there, so the test is bounded) of multi-byte UTF-8 written in
 * chunks that split characters.
 */
const totalBytes = 100 * 1024 * 1024;
const pattern = 'a€😀中';
const chunk = Buffer.from(pattern.repeat(20_000)).subarray(0, 65_537);

interface Served {
  sent: number;
  /** The client closed the connection before the body ended. */
  closedEarly: boolean;
  ended: boolean;
}

let upstream: Server;
let upstreamUrl: string;
const served: Served[] = [];
let server: LoggedServer;
let admin: ApiClient;
let member: ApiClient;

/** Streams chunks as fast as the client reads them, up to `totalBytes`. */
function streamHuge(response: import('node:http').ServerResponse, record: Served): void {
  const write = () => {
    while (record.sent < totalBytes && !response.destroyed) {
      record.sent += chunk.length;
      if (!response.write(chunk)) return;
    }
    if (record.sent >= totalBytes && !record.ended) {
      record.ended = true;
      response.end();
    }
  };
  response.on('drain', write);
  write();
}

beforeAll(async () => {
  upstream = createServer((request, response) => {
    const record: Served = { sent: 0, closedEarly: false, ended: false };
    served.push(record);
    response.on('close', () => {
      if (!response.writableFinished) record.closedEarly = true;
    });
    response.setHeader(
      'content-type',
      request.url?.startsWith('/json') ? 'application/json' : 'text/plain; charset=utf-8',
    );
    streamHuge(response, record);
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  server = await startLoggedServer({
    tools: {
      tenantHttp: { allowedHosts: ['127.0.0.1'] },
      httpRequest: {
        allowedHosts: [new URL(upstreamUrl).host],
        allowedMethods: ['GET'],
        maxResponseChars: 2_000,
      },
    },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'cap');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve));
});

/** Waits until the upstream saw its latest connection closed (or the body ended). */
async function lastServed(): Promise<Served> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const record = served.at(-1);
    if (record !== undefined && (record.closedEarly || record.ended)) return record;
    if (Date.now() > deadline) throw new Error('the upstream connection stayed open');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function expectPatternPrefix(text: string): void {
  expect(text).not.toContain('\uFFFD');
  expect(pattern.repeat(Math.ceil(text.length / pattern.length) + 1).startsWith(text)).toBe(true);
}

describe('the response read cap', () => {
  it('reads a tenant HTTP tool response only up to maxResponseChars and closes the connection', async () => {
    const created = await admin.post('/v1/tools', {
      name: 'firehose',
      description: 'Streams a lot.',
      risk: 'read',
      urlTemplate: `${upstreamUrl}/json`,
      inputSchema: { type: 'object', properties: {}, additionalProperties: false },
      maxResponseChars: 3_000,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const agent = await admin.post<Created>('/v1/agents', { name: 'drinker', tools: ['firehose'] });
    const started = Date.now();
    const result = await runOnce(member, { agentId: agent.body.id, input: 'call firehose {}' });
    expect(result.run.status).toBe('completed');
    expect(Date.now() - started).toBeLessThan(10_000);
    const output = JSON.parse(result.answer.replace(/^firehose returned: /, '')) as {
      truncated: boolean;
      preview: string;
    };
    expect(output.truncated).toBe(true);
    // 3,000 characters, or 2,999 where the cut would have split a surrogate pair.
    expect(output.preview.length).toBeGreaterThanOrEqual(2_999);
    expect(output.preview.length).toBeLessThanOrEqual(3_000);
    const body = /^\{"status":200,"body":"(.*)$/s.exec(output.preview)?.[1] ?? '';
    expect(body.length).toBeGreaterThan(2_900);
    expectPatternPrefix(body);
    const record = await lastServed();
    expect(record.closedEarly).toBe(true);
    expect(record.ended).toBe(false);
    // What sat in socket buffers when the connection closed: far below the 100 MB.
    expect(record.sent).toBeLessThan(totalBytes / 5);
  });

  it('reads http_request responses only up to its maxResponseChars and closes the connection', async () => {
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'sipper',
      tools: ['http_request'],
    });
    const started = Date.now();
    const result = await runOnce(member, {
      agentId: agent.body.id,
      input: `call http_request ${JSON.stringify({ url: `${upstreamUrl}/text` })}`,
    });
    expect(result.run.status).toBe('completed');
    expect(Date.now() - started).toBeLessThan(10_000);
    const output = JSON.parse(result.answer.replace(/^http_request returned: /, '')) as {
      status: number;
      body: string;
      truncated: boolean;
    };
    expect(output.status).toBe(200);
    expect(output.truncated).toBe(true);
    expect(output.body.endsWith('…')).toBe(true);
    const text = output.body.slice(0, -1);
    // 2,000 characters, or 1,999 where the cut would have split a surrogate pair.
    expect(text.length).toBeGreaterThanOrEqual(1_999);
    expect(text.length).toBeLessThanOrEqual(2_000);
    expectPatternPrefix(text);
    const record = await lastServed();
    expect(record.closedEarly).toBe(true);
    expect(record.sent).toBeLessThan(totalBytes / 5);
  });
});

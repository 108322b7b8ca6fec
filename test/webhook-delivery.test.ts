import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { ownerQuery } from './support/budget-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';
import { startWebhookReceiver, until, type WebhookReceiver } from './support/webhook-receiver.ts';

/**
 * Webhook receivers a tenant's admin controls are hostile: one that sends its status line and
 * then a body forever, or its headers a line at a time, must cost one attempt of at most
 * `webhooks.timeoutMs`, never the delivery worker that every tenant's webhooks share.
 */
let server: TestServer;
let owner: pg.Client;
let calm: WebhookReceiver;
let slow: Server;
let slowRequests = 0;
let silent: Server;
let silentRequests = 0;
const timeoutMs = 500;

interface Tenant {
  readonly tenantId: string;
  readonly admin: ApiClient;
}

async function tenant(operator: ApiClient, slug: string): Promise<Tenant> {
  const tenantId = await seedTenant(operator, slug);
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  return { tenantId, admin };
}

/** Queues a delivery for `endpointId` as the worker's outbox would after a budget alert. */
async function queue(tenantId: string, endpointId: string, marker: string): Promise<void> {
  await ownerQuery(owner, tenantId, {
    text: `insert into brigade.webhook_deliveries (tenant_id, endpoint_id, event_type, payload)
           values ($1, $2, 'budget.threshold', $3)`,
    values: [tenantId, endpointId, JSON.stringify({ marker })],
  });
}

type Deliveries = { data: { status: string; attempts: number; lastError: string | null }[] };

beforeAll(async () => {
  calm = await startWebhookReceiver();
  const trickles = new Set<NodeJS.Timeout>();
  slow = createServer((request, response: ServerResponse) => {
    slowRequests += 1;
    request.resume();
    const socket = response.socket;
    if (request.url === '/headers' && socket !== null) {
      // The status line, then a header line every 100 ms: never a complete head.
      socket.write('HTTP/1.1 200 OK\r\n');
      const timer = setInterval(() => socket.write('x-more: 1\r\n'), 100);
      trickles.add(timer);
      socket.on('close', () => clearInterval(timer));
      return;
    }
    // A 200 with a body that never ends, a byte every 100 ms.
    response.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => response.write('.'), 100);
    trickles.add(timer);
    response.on('close', () => clearInterval(timer));
  });
  slow.on('close', () => {
    for (const timer of trickles) clearInterval(timer);
  });
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  // Takes every delivery and never answers.
  silent = createServer((request) => {
    silentRequests += 1;
    request.resume();
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  server = await startTestServer({
    webhooks: { allowPrivateNetworks: true, retryDelaysMs: [60_000], pollMs: 100, timeoutMs },
  });
  owner = new pg.Client({ connectionString: server.database.url });
  await owner.connect();
});

afterAll(async () => {
  slow?.closeAllConnections();
  silent?.closeAllConnections();
  await new Promise<void>((resolve) =>
    silent === undefined ? resolve() : silent.close(() => resolve()),
  );
  await new Promise<void>((resolve) =>
    slow === undefined ? resolve() : slow.close(() => resolve()),
  );
  await owner?.end();
  await server?.stop();
  await calm?.close();
});

describe('webhook receivers that never finish', () => {
  it("bound each attempt and keep delivering other tenants' webhooks", async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const hostile = await tenant(operator, 'trickler');
    const victim = await tenant(operator, 'bystander');
    const port = (slow.address() as AddressInfo).port;
    const hooks: Created[] = [];
    for (const path of ['/body', '/headers']) {
      const hook = await hostile.admin.post<Created>('/v1/webhooks', {
        url: `http://127.0.0.1:${port}${path}`,
        events: ['budget.threshold'],
      });
      expect(hook.status).toBe(201);
      hooks.push(hook.body);
      await queue(hostile.tenantId, hook.body.id, `slow${path}`);
    }
    await until(() => slowRequests >= 2);

    const fine = await victim.admin.post<Created>('/v1/webhooks', {
      url: calm.url,
      events: ['budget.threshold'],
    });
    await queue(victim.tenantId, fine.body.id, 'calm');
    await until(() => calm.received.some((delivery) => delivery.body.includes('"calm"')), 10_000);

    // The status line is the answer: a 200 whose body never ends is delivered; a head that
    // never ends is a failed attempt after the timeout, to be retried.
    const [bodyHook, headersHook] = hooks;
    const outcome = async (hook: Created | undefined) =>
      (await hostile.admin.get<Deliveries>(`/v1/webhooks/${hook?.id}/deliveries`)).body.data[0];
    expect(await outcome(bodyHook)).toMatchObject({ status: 'delivered', attempts: 1 });
    expect(await outcome(headersHook)).toMatchObject({
      status: 'pending',
      attempts: 1,
      lastError: `no answer within ${timeoutMs} ms`,
    });
  });
});

describe('a tenant with a backlog of deliveries', () => {
  it("does not hold up another tenant's webhooks behind it", async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const flooder = await tenant(operator, 'flooder');
    const waiting = await tenant(operator, 'waiting');
    const port = (silent.address() as AddressInfo).port;
    const hook = await flooder.admin.post<Created>('/v1/webhooks', {
      url: `http://127.0.0.1:${port}/hooks`,
      events: ['budget.threshold'],
    });
    // Thirty deliveries to a receiver that never answers: three claims of ten, each taking
    // the whole timeout, if deliveries were sent oldest first whatever their tenant.
    for (let index = 0; index < 30; index += 1)
      await queue(flooder.tenantId, hook.body.id, `flood-${index}`);
    const fine = await waiting.admin.post<Created>('/v1/webhooks', {
      url: calm.url,
      events: ['budget.threshold'],
    });
    await queue(waiting.tenantId, fine.body.id, 'waited');
    await until(() => calm.received.some((delivery) => delivery.body.includes('"waited"')), 10_000);
    // Sent in the first claim after it was queued (the one before may have taken ten).
    expect(silentRequests).toBeLessThanOrEqual(20);
  });
});

describe('budget alerts while a backlog is being sent', () => {
  it('are announced without waiting for the backlog to drain', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const flooder = await tenant(operator, 'flooder-two');
    const waiting = await tenant(operator, 'alerted');
    const port = (silent.address() as AddressInfo).port;
    const hook = await flooder.admin.post<Created>('/v1/webhooks', {
      url: `http://127.0.0.1:${port}/hooks`,
      events: ['budget.threshold'],
    });
    const fine = await waiting.admin.post<Created>('/v1/webhooks', {
      url: calm.url,
      events: ['budget.threshold'],
    });
    const policy = await waiting.admin.post<Created>('/v1/policies', {
      level: 'tenant',
      limits: { budget: { amountUsd: 1, period: 'day' } },
    });
    expect([hook.status, fine.status, policy.status]).toEqual([201, 201, 201]);
    const queued = silentRequests;
    for (let index = 0; index < 30; index += 1)
      await queue(flooder.tenantId, hook.body.id, `backlog-${index}`);
    await until(() => silentRequests > queued);
    // A budget alert of another tenant, recorded while the worker sends the backlog.
    const before = silentRequests;
    await ownerQuery(owner, waiting.tenantId, {
      text: `insert into brigade.budget_alerts
               (tenant_id, policy_id, subject_id, period_start, threshold, used, limit_value)
             values ($1, $2, $1, date_trunc('day', now()), 80, 800000000, 1000000000)`,
      values: [waiting.tenantId, policy.body.id],
    });
    await until(
      () => calm.received.some((delivery) => delivery.body.includes(policy.body.id)),
      10_000,
    );
    expect(silentRequests - before).toBeLessThanOrEqual(20);
  });
});

describe('webhooks per tenant', () => {
  it('are capped at webhooks.maxPerTenant, also when created all at once', async () => {
    const operator = apiClient(server.url, testOperatorKey);
    const { admin } = await tenant(operator, 'many-hooks');
    const attempts = await Promise.all(
      Array.from({ length: 30 }, (_, index) =>
        admin.post<Created & { code?: string }>('/v1/webhooks', {
          url: `${calm.url}?n=${index}`,
          events: ['budget.threshold'],
        }),
      ),
    );
    const created = attempts.filter((attempt) => attempt.status === 201);
    const refused = attempts.filter((attempt) => attempt.status !== 201);
    expect(created).toHaveLength(25);
    expect(refused.map((attempt) => [attempt.status, attempt.body.code])).toEqual(
      Array(5).fill([409, 'webhook_limit_exceeded']),
    );
    const listed = await admin.get<{ data: unknown[] }>('/v1/webhooks');
    expect(listed.body.data).toHaveLength(25);
    // Deleting one makes room for one.
    expect((await admin.request('DELETE', `/v1/webhooks/${created[0]?.body.id}`)).status).toBe(204);
    const again = await admin.post('/v1/webhooks', {
      url: calm.url,
      events: ['budget.threshold'],
    });
    expect(again.status).toBe(201);
  });
});

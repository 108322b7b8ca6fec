import { createHmac, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type Created, seedTenant, seedUser } from './support/api-client.ts';
import { ownerQuery } from './support/budget-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';
import { startWebhookReceiver, until, type WebhookReceiver } from './support/webhook-receiver.ts';

/**
 * Webhook signing secrets at rest: sealed with the tenant's vault key when the process has a
 * master key (and still signing deliveries correctly), plain only when it has none; a sealed
 * secret moved to another endpoint's row does not open there, so nothing is signed with it.
 */
let receiver: WebhookReceiver;

type Hook = Created & { secret: string };

/** A server, an admin of a new tenant, and an owner connection to its database. */
async function world(env: Record<string, string>, slug: string) {
  const server = await startTestServer(
    { webhooks: { allowPrivateNetworks: true, retryDelaysMs: [200], pollMs: 100 } },
    { env },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, slug);
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  const owner = new pg.Client({ connectionString: server.database.url });
  await owner.connect();
  return { server, tenantId, admin, owner };
}

interface Stored {
  secret: string | null;
  sealed_secret: Buffer | null;
}

beforeAll(async () => {
  receiver = await startWebhookReceiver();
});

afterAll(async () => {
  await receiver?.close();
});

describe('with a vault master key', () => {
  let setup: Awaited<ReturnType<typeof world>>;
  let server: TestServer;
  beforeAll(async () => {
    setup = await world({ BRIGADE_MASTER_KEY: randomBytes(32).toString('base64') }, 'sealed');
    server = setup.server;
  });
  afterAll(async () => {
    await setup?.owner.end();
    await server?.stop();
  });

  /** Queues a delivery for `endpointId` as the worker's outbox would. */
  async function queue(endpointId: string, marker: string): Promise<void> {
    await ownerQuery(setup.owner, setup.tenantId, {
      text: `insert into brigade.webhook_deliveries (tenant_id, endpoint_id, event_type, payload)
             values ($1, $2, 'budget.threshold', $3)`,
      values: [setup.tenantId, endpointId, JSON.stringify({ marker })],
    });
  }

  it('stores the secret sealed, and signs deliveries with it', async () => {
    const hook = await setup.admin.post<Hook>('/v1/webhooks', {
      url: receiver.url,
      events: ['budget.threshold'],
    });
    expect(hook.status).toBe(201);
    const [row] = await ownerQuery<Stored>(setup.owner, setup.tenantId, {
      text: 'select secret, sealed_secret from brigade.webhook_endpoints where id = $1',
      values: [hook.body.id],
    });
    expect(row?.secret).toBeNull();
    expect(row?.sealed_secret).toBeInstanceOf(Buffer);
    const secretBytes = Buffer.from(hook.body.secret.slice(6), 'base64');
    expect(row?.sealed_secret?.includes(secretBytes)).toBe(false);
    expect(row?.sealed_secret?.includes(Buffer.from(hook.body.secret))).toBe(false);

    await queue(hook.body.id, 'sealed-delivery');
    await until(() =>
      receiver.received.some((delivery) => delivery.body.includes('sealed-delivery')),
    );
    const delivery = receiver.received.find((candidate) =>
      candidate.body.includes('sealed-delivery'),
    );
    const id = String(delivery?.headers['webhook-id']);
    const timestamp = String(delivery?.headers['webhook-timestamp']);
    const expected = createHmac('sha256', secretBytes)
      .update(`${id}.${timestamp}.${delivery?.body}`)
      .digest('base64');
    expect(delivery?.headers['webhook-signature']).toBe(`v1,${expected}`);
  });

  it('does not sign with a sealed secret moved to another endpoint', async () => {
    const [first, second] = await Promise.all(
      ['first', 'second'].map(() =>
        setup.admin.post<Hook>('/v1/webhooks', { url: receiver.url, events: ['budget.threshold'] }),
      ),
    );
    await ownerQuery(setup.owner, setup.tenantId, {
      text: `update brigade.webhook_endpoints
                set sealed_secret = (select sealed_secret from brigade.webhook_endpoints where id = $1)
              where id = $2`,
      values: [first?.body.id, second?.body.id],
    });
    await queue(String(second?.body.id), 'moved-secret');
    let attempts: { attempts: number; last_error: string | null; status: string }[] = [];
    const started = Date.now();
    while (Date.now() - started < 10_000) {
      attempts = await ownerQuery(setup.owner, setup.tenantId, {
        text: `select attempts, last_error, status from brigade.webhook_deliveries
                where endpoint_id = $1`,
        values: [second?.body.id],
      });
      if ((attempts[0]?.attempts ?? 0) >= 1 && attempts[0]?.last_error !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(attempts[0]?.last_error).toMatch(/signing secret/);
    expect(receiver.received.some((delivery) => delivery.body.includes('moved-secret'))).toBe(
      false,
    );
  });
});

describe('without a vault master key', () => {
  it('stores the secret as before (readable only in the admins’ and the worker’s scope)', async () => {
    const setup = await world({}, 'plain');
    try {
      const hook = await setup.admin.post<Hook>('/v1/webhooks', {
        url: receiver.url,
        events: ['budget.threshold'],
      });
      const [row] = await ownerQuery<Stored>(setup.owner, setup.tenantId, {
        text: 'select secret, sealed_secret from brigade.webhook_endpoints where id = $1',
        values: [hook.body.id],
      });
      expect(row).toEqual({ secret: hook.body.secret, sealed_secret: null });
    } finally {
      await setup.owner.end();
      await setup.server.stop();
    }
  });
});

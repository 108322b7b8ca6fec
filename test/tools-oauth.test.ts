import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMasterKey } from '../src/domain/tools/vault-crypto.ts';
import {
  createOAuthTokenClient,
  tokenUrlProblems,
} from '../src/runtime/tools/oauth-token-client.ts';
import { createCredentialStore } from '../src/storage/tools/credential-store.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startMcpAuthServer } from './support/mcp-auth-server.ts';
import { startTokenServer, type TokenServer, tokenMarker } from './support/oauth-token-server.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import {
  type LoggedServer,
  newMasterKey,
  runOnce,
  startLoggedServer,
  startUpstream,
} from './support/tool-fixtures.ts';

const masterKey = newMasterKey();
const clientSecret = `client-secret-${tokenMarker}-${'5'.repeat(16)}`;
const sharedClientSecret = `shared-client-secret-${tokenMarker}-${'6'.repeat(16)}`;
const config = {
  runs: { concurrency: 16, maxConcurrentPerUser: 0, maxConcurrentPerTenant: 0 },
};

let serverA: LoggedServer;
let serverB: LoggedServer;
let upstream: Awaited<ReturnType<typeof startUpstream>>;
let tokens: TokenServer;
let mcp: Awaited<ReturnType<typeof startMcpAuthServer>>;
let tenantId: string;
let agentId: string;
const users = new Map<string, { id: string; client: ApiClient; secret: string }>();
const seen: string[] = [];

/** The user's client; records every response body for the leak check at the end. */
function as(name: string): ApiClient {
  const user = users.get(name);
  if (user === undefined) throw new Error(`no user ${name}`);
  return user.client;
}

function keep<T>(response: T): T {
  seen.push(JSON.stringify(response));
  return response;
}

async function run(name: string, q: string, client = as(name)) {
  const result = await runOnce(client, { agentId, input: `call whoami {"q":"${q}"}` });
  seen.push(result.transcript, result.answer);
  return result;
}

/** The body of an oauth2 credential `svc` with tokens of `name`, its access token expired. */
function oauthBody(name: string, pair = tokens.authorize(name)) {
  return {
    name: 'svc',
    kind: 'oauth2',
    accessToken: pair.accessToken,
    refreshToken: pair.refreshToken,
    expiresIn: 0,
    tokenUrl: tokens.url,
    clientId: 'brigade',
  };
}

/** Puts an oauth2 credential `svc` for `name` whose access token has expired. */
async function putOAuth(name: string, extra: Record<string, unknown> = {}) {
  const pair = tokens.authorize(name);
  const body = { ...oauthBody(name, pair), clientSecret, ...extra };
  const put = keep(await as(name).post('/v1/me/credentials', body));
  expect(put.status, JSON.stringify(put.body)).toBe(201);
  return pair;
}

const authorizationsFor = (q: string) =>
  upstream.requests
    .filter((request) => request.url.startsWith(`/whoami/${q}`))
    .map((request) => request.headers.authorization);

beforeAll(async () => {
  upstream = await startUpstream();
  mcp = await startMcpAuthServer();
  tokens = await startTokenServer({ brigade: clientSecret, 'brigade-post': sharedClientSecret });
  serverA = await startLoggedServer(config, { BRIGADE_MASTER_KEY: masterKey });
  serverB = await startLoggedServer(
    config,
    { BRIGADE_MASTER_KEY: masterKey },
    { database: serverA.database },
  );
  const operator = apiClient(serverA.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'oauth');
  for (const [name, role] of [
    ['admin', 'admin'],
    ['alice', 'member'],
    ['bob', 'member'],
    ['carol', 'member'],
    ['dave', 'member'],
    ['erin', 'member'],
    ['frank', 'member'],
    ['gina', 'member'],
    ['hana', 'member'],
  ] as const) {
    const user = await seedUser(operator, { tenantId, role });
    users.set(name, {
      id: user.userId,
      secret: user.secret,
      client: apiClient(serverA.url, user.secret),
    });
  }
  const tool = await as('admin').post('/v1/tools', {
    name: 'whoami',
    description: 'Asks the service who the caller is.',
    risk: 'read',
    method: 'GET',
    urlTemplate: `${upstream.url}/whoami/{q}`,
    inputSchema: {
      type: 'object',
      properties: { q: { type: 'string', maxLength: 20 } },
      required: ['q'],
      additionalProperties: false,
    },
    auth: { credential: 'svc', scheme: 'bearer' },
  });
  expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  const agent = await as('admin').post<Created>('/v1/agents', { name: 'oauth', tools: ['whoami'] });
  agentId = agent.body.id;
}, 120_000);

afterAll(async () => {
  await serverB?.stop();
  await serverA?.stop();
  await upstream?.close();
  await tokens?.close();
  await mcp?.close();
});

describe('OAuth 2.0 credentials', () => {
  it('refuses incomplete oauth2 bodies and token URLs the egress rules refuse', async () => {
    const base = {
      name: 'bad',
      kind: 'oauth2',
      accessToken: 'a'.repeat(20),
      refreshToken: 'r'.repeat(20),
      expiresIn: 60,
      tokenUrl: tokens.url,
      clientId: 'brigade',
    };
    const cases: Record<string, unknown>[] = [
      { ...base, refreshToken: undefined },
      { ...base, expiresAt: new Date().toISOString() },
      { ...base, secret: 'x' },
      { ...base, clientSecret: 'x', clientSecretCredential: 'y' },
      { ...base, tokenUrl: 'ftp://127.0.0.1/token' },
      { ...base, tokenUrl: 'http://user:pw@127.0.0.1/token' },
      { name: 'plain', secret: 'x', tokenUrl: tokens.url },
    ];
    for (const body of cases) {
      const response = keep(await as('alice').post('/v1/me/credentials', body));
      expect(response.status, JSON.stringify(body)).toBe(422);
    }
    const strict = { allowedHosts: [], allowPrivateNetworks: false };
    expect(tokenUrlProblems('http://auth.example.com/token', strict)).toEqual([
      'the token URL must use https',
    ]);
    expect(tokenUrlProblems('https://127.0.0.1/token', strict)[0]).toMatch(/private or loopback/);
    expect(tokenUrlProblems('https://auth.example.com/token', strict)).toEqual([]);
  });

  it('refreshes an expired access token once; the target receives the new token', async () => {
    tokens.expiresIn = 30; // under the 60 s skew: the next call refreshes again (rotation test)
    const first = await putOAuth('alice');
    const bobs = await putOAuth('bob');
    const result = await run('alice', 'alice1');
    expect(result.run.status).toBe('completed');
    expect(tokens.countFor('alice')).toBe(1);
    const request = tokens.requests.at(-1);
    expect(request?.form).toMatchObject({
      grant_type: 'refresh_token',
      refresh_token: first.refreshToken,
    });
    expect(request?.authorization).toBe(
      `Basic ${Buffer.from(`brigade:${clientSecret}`).toString('base64')}`,
    );
    expect(request?.form['client_secret']).toBeUndefined();
    const fresh = tokens.issued.filter((token) => token.startsWith('at-alice-')).at(-1);
    expect(authorizationsFor('alice1')).toEqual([`Bearer ${fresh}`]);
    expect(result.answer).toContain('Bearer [redacted]');
    // Bob's credential of the same name was not touched.
    expect(tokens.countFor('bob')).toBe(0);
    const bobList = keep(
      await as('bob').get<{ data: { oauth2: { refreshedAt: string | null } }[] }>(
        '/v1/me/credentials',
      ),
    );
    expect(bobList.body.data[0]?.oauth2.refreshedAt).toBeNull();
    const bobRun = await run('bob', 'bob1');
    expect(bobRun.run.status).toBe('completed');
    expect(tokens.requests.at(-1)?.form['refresh_token']).toBe(bobs.refreshToken);
  });

  it('stores a rotated refresh token: the second refresh sends the new one', async () => {
    const rotated = tokens.issued.filter((token) => token.startsWith('rt-alice-')).at(-1);
    const result = await run('alice', 'alice2');
    expect(result.run.status).toBe('completed');
    expect(tokens.countFor('alice')).toBe(2);
    expect(tokens.requests.at(-1)?.form['refresh_token']).toBe(rotated);
    const fresh = tokens.issued.filter((token) => token.startsWith('at-alice-')).at(-1);
    expect(authorizationsFor('alice2')).toEqual([`Bearer ${fresh}`]);
    const listed = keep(
      await as('alice').get<{ data: Record<string, unknown>[] }>('/v1/me/credentials'),
    );
    expect(listed.body.data[0]).toMatchObject({
      kind: 'oauth2',
      oauth2: { status: 'active', refreshFailedAt: null },
    });
    expect(listed.body.data[0]?.['oauth2']).toHaveProperty('refreshedAt');
    tokens.expiresIn = 3600;
  });

  it('sends one refresh for 20 concurrent calls on two server instances', async () => {
    await putOAuth('carol');
    tokens.delayMs = 400;
    const carol = users.get('carol');
    const onB = apiClient(serverB.url, carol?.secret);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        run('carol', `carol${index}`, index % 2 === 0 ? as('carol') : onB),
      ),
    );
    tokens.delayMs = 0;
    expect(results.map((result) => result.run.status)).toEqual(Array(20).fill('completed'));
    expect(tokens.countFor('carol')).toBe(1);
    const fresh = tokens.issued.filter((token) => token.startsWith('at-carol-')).at(-1);
    const used = upstream.requests
      .filter((request) => request.url.startsWith('/whoami/carol'))
      .map((request) => request.headers.authorization);
    expect(used).toEqual(Array(20).fill(`Bearer ${fresh}`));
  });

  it('sends one refresh when many stores (as many processes) race for the row lock', async () => {
    const gina = users.get('gina');
    await putOAuth('gina');
    tokens.delayMs = 200;
    const stores = Array.from({ length: 8 }, () =>
      createCredentialStore({
        database: serverA.brigade.storage.database,
        masterKeys: { current: parseMasterKey(masterKey), previous: undefined },
        oauth: {
          refresh: createOAuthTokenClient({
            egress: { allowedHosts: [], allowPrivateNetworks: true },
          }),
        },
      }),
    );
    const secrets = await Promise.all(
      stores.flatMap((store) =>
        [1, 2, 3].map(() =>
          store.resolveForCall({
            tenantId,
            userId: gina?.id ?? '',
            actor: { kind: 'operator' },
            name: 'svc',
            toolName: 'whoami',
            runId: 'race',
            destination: undefined,
          }),
        ),
      ),
    );
    tokens.delayMs = 0;
    expect(tokens.countFor('gina')).toBe(1);
    const fresh = tokens.issued.filter((token) => token.startsWith('at-gina-')).at(-1);
    expect(new Set(secrets.map((secret) => secret?.secret))).toEqual(new Set([fresh]));
  });

  it('authenticates a shared credential with client_secret_post and a tenant-shared client secret', async () => {
    const clientCredential = { name: 'oauth-client', secret: sharedClientSecret };
    expect(keep(await as('admin').post('/v1/credentials', clientCredential)).status).toBe(201);
    // A user's own credential names its token URL: it cannot borrow the shared secret (422).
    const own = { ...oauthBody('frank'), clientSecretCredential: 'oauth-client' };
    const refused = keep(await as('frank').post('/v1/me/credentials', own));
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({ errors: [{ path: 'clientSecretCredential' }] });
    // The tenant's shared OAuth credential may; frank has no `svc` of his own, so his run uses it.
    const sharedOAuth = keep(
      await as('admin').post<Created>('/v1/credentials', {
        ...oauthBody('frank'),
        clientId: 'brigade-post',
        clientSecretCredential: 'oauth-client',
        clientAuthMethod: 'client_secret_post',
      }),
    );
    expect(sharedOAuth.status, JSON.stringify(sharedOAuth.body)).toBe(201);
    try {
      const result = await run('frank', 'frank1');
      expect(result.run.status).toBe('completed');
      const request = tokens.requests.at(-1);
      expect(request?.authorization).toBeUndefined();
      expect(request?.form).toMatchObject({
        client_id: 'brigade-post',
        client_secret: sharedClientSecret,
      });
      expect(authorizationsFor('frank1')).toHaveLength(1);
    } finally {
      await as('admin').request('DELETE', `/v1/credentials/${sharedOAuth.body.id}`);
    }
  });

  it('gives MCP servers the current access token too (listing and calling)', async () => {
    const registered = await as('admin').post('/v1/mcp-servers', {
      name: 'authsrv',
      url: mcp.url,
      auth: { credential: 'svc' },
      risk: 'read',
    });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    const agent = await as('admin').post<Created>('/v1/agents', {
      name: 'oauth-mcp',
      tools: ['mcp:authsrv:ping'],
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    await putOAuth('hana');
    const result = await runOnce(as('hana'), {
      agentId: agent.body.id,
      input: 'call mcp:authsrv:ping {"text":"hi"}',
    });
    seen.push(result.transcript, result.answer);
    expect(result.answer).toContain('pong');
    expect(tokens.countFor('hana')).toBe(1);
    const fresh = tokens.issued.filter((token) => token.startsWith('at-hana-')).at(-1);
    const sent = mcp.authorizations.filter((header) => header !== undefined);
    expect(sent.length).toBeGreaterThan(1);
    expect(new Set(sent)).toEqual(new Set([`Bearer ${fresh}`]));
  });

  it('marks a credential refused with invalid_grant and tells the model, calling nothing', async () => {
    await putOAuth('dave');
    tokens.mode = 'invalid_grant';
    const result = await run('dave', 'dave1');
    tokens.mode = 'ok';
    expect(result.answer).toContain('credential_reauthorization_required');
    expect(authorizationsFor('dave1')).toEqual([]);
    const listed = keep(
      await as('dave').get<{ data: { oauth2: Record<string, unknown> }[] }>('/v1/me/credentials'),
    );
    expect(listed.body.data[0]?.oauth2).toMatchObject({ status: 'reauthorization_required' });
    expect(listed.body.data[0]?.oauth2['refreshFailedAt']).not.toBeNull();
    // Marked: the next call fails at once, without another request to the token server.
    const before = tokens.requests.length;
    const again = await run('dave', 'dave2');
    expect(again.answer).toContain('credential_reauthorization_required');
    expect(tokens.requests.length).toBe(before);
    // Putting the credential again re-authorises it.
    await putOAuth('dave');
    expect((await run('dave', 'dave3')).answer).toContain('Bearer [redacted]');
  });

  it('fails the call as retryable when the token server is down, without marking it', async () => {
    await putOAuth('erin');
    tokens.mode = 'unavailable';
    const result = await run('erin', 'erin1');
    tokens.mode = 'ok';
    expect(result.answer).toContain('credential_refresh_unavailable');
    const listed = keep(
      await as('erin').get<{ data: { oauth2: Record<string, unknown> }[] }>('/v1/me/credentials'),
    );
    expect(listed.body.data[0]?.oauth2).toMatchObject({ status: 'active', refreshedAt: null });
    const retried = await run('erin', 'erin2');
    expect(retried.answer).toContain('Bearer [redacted]');
    expect(authorizationsFor('erin2')).toHaveLength(1);
  });

  it('refuses a refreshed token no header can carry, keeping the credential as it was', async () => {
    await putOAuth('frank');
    tokens.mode = 'header_breaking';
    const result = await run('frank', 'crlf1');
    tokens.mode = 'ok';
    expect(result.answer).toContain('credential_refresh_failed');
    const listed = keep(
      await as('frank').get<{ data: { oauth2: Record<string, unknown> }[] }>('/v1/me/credentials'),
    );
    expect(listed.body.data[0]?.oauth2).toMatchObject({ refreshedAt: null });
    expect(authorizationsFor('crlf1')).toHaveLength(0);
  });

  it('audits refreshes and failures without token material', async () => {
    const audit = keep(
      await as('admin').get<{ data: { action: string }[] }>(
        `/v1/tenants/${tenantId}/audit-events?limit=500`,
      ),
    );
    const actions = audit.body.data.map((event) => event.action);
    expect(actions).toContain('credential.refreshed');
    expect(actions).toContain('credential.refresh_failed');
  });

  it('never lets a token or client secret reach a response, a run event or a log line', () => {
    const everything = [...seen, ...serverA.logs, ...serverB.logs].join('\n');
    expect(tokens.issued.length).toBeGreaterThan(10);
    for (const secret of [...tokens.issued, clientSecret, sharedClientSecret])
      expect(everything).not.toContain(secret);
    expect(everything).not.toContain(tokenMarker);
    expect(serverA.logs.length).toBeGreaterThan(0);
  });
});

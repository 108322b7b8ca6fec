import { request as httpRequest } from 'node:http';
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

/**
 * Access ends everywhere at once. An open event stream is a long-lived use of a credential:
 * revoking the key, disabling the user or suspending the tenant ends it (within
 * `server.streamReauthMs`, 300 ms here) with an `error` event. Disabling a user or suspending a
 * tenant also cancels the runs acting for them: waiting for an approval, or running.
 */
let server: TestServer;
let operator: ApiClient;
let tenantId: string;
let admin: ApiClient;
let agentId: string;
let talkerId: string;

beforeAll(async () => {
  server = await startTestServer({
    server: { streamReauthMs: 300 },
    // The local model streams one token every 20 ms: the talker's answer takes ~8 s.
    models: { local: { tokenDelayMs: 20 } },
    runs: { pollIntervalMs: 50 },
  });
  operator = apiClient(server.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'stream-revocation');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  agentId = (
    await admin.post<Created>('/v1/agents', {
      name: 'careful',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    })
  ).body.id;
  talkerId = (await admin.post<Created>('/v1/agents', { name: 'talker', maxOutputTokens: 2000 }))
    .body.id;
});

afterAll(async () => {
  await server?.stop();
});

/** A member's run waiting for approval, and its event stream opened with the member's key. */
async function openStream() {
  const user = await seedUser(operator, { tenantId, role: 'member' });
  const member = apiClient(server.url, user.secret);
  const thread = await member.post<Created>('/v1/threads', {});
  const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input: 'call calculator {"expression":"6*7"}',
  });
  const ids = { threadId: thread.body.id, runId: run.body.id };
  await waitForRun(member, ids, ['requires_action']);
  const response = await fetch(
    `${server.url}/v1/threads/${ids.threadId}/runs/${ids.runId}/events`,
    { headers: { authorization: `Bearer ${user.secret}` }, signal: AbortSignal.timeout(10_000) },
  );
  expect(response.status).toBe(200);
  const reader = response.body?.getReader();
  if (reader === undefined) throw new Error('no body');
  let text = '';
  const decoder = new TextDecoder();
  /** Reads until the stream ends (true) or `ms` pass with it still open (false). */
  const readToEnd = async (ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      const chunk = await Promise.race([
        reader.read(),
        new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), left)),
      ]);
      if (chunk === 'open') return false;
      if (chunk.done) return true;
      text += decoder.decode(chunk.value, { stream: true });
    }
  };
  return { user, ids, readToEnd, text: () => text, cancel: () => reader.cancel() };
}

describe('an open event stream', () => {
  it('stays open while its credential is valid', async () => {
    const stream = await openStream();
    expect(await stream.readToEnd(1_200)).toBe(false);
    expect(stream.text()).toContain('event: approval-requested');
    expect(stream.text()).not.toContain('event: error');
    await stream.cancel();
  });

  it('ends once its key is revoked', async () => {
    const stream = await openStream();
    const revoked = await admin.request(
      'DELETE',
      `/v1/tenants/${tenantId}/users/${stream.user.userId}/api-keys/${stream.user.keyId}`,
    );
    expect(revoked.status).toBe(200);
    expect(await stream.readToEnd(5_000)).toBe(true);
    expect(stream.text()).toMatch(/event: error\ndata: \{[^\n]*"code":"unauthenticated"/);
    // Every event has an id: the error's is the last event delivered, where a reconnect resumes.
    const ids = [...stream.text().matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    expect(ids.length).toBeGreaterThan(1);
    expect(stream.text()).toMatch(new RegExp(`id: ${ids.at(-2)}\nevent: error\n`));
    expect(ids.at(-1)).toBe(ids.at(-2));
  });

  it('ends once its user is disabled, or its tenant suspended', async () => {
    const disabledUser = await openStream();
    const disabled = await admin.request(
      'PATCH',
      `/v1/tenants/${tenantId}/users/${disabledUser.user.userId}`,
      { status: 'disabled' },
    );
    expect(disabled.status).toBe(200);
    expect(await disabledUser.readToEnd(5_000)).toBe(true);
    // Its run was cancelled too: whichever comes first ends the stream.
    expect(disabledUser.text()).toMatch(/"code":"unauthenticated"|event: run-cancelled/);

    const suspended = await openStream();
    expect(
      (await operator.request('PATCH', `/v1/tenants/${tenantId}`, { status: 'suspended' })).status,
    ).toBe(200);
    try {
      expect(await suspended.readToEnd(5_000)).toBe(true);
      expect(suspended.text()).toMatch(/"code":"unauthenticated"|event: run-cancelled/);
    } finally {
      await operator.request('PATCH', `/v1/tenants/${tenantId}`, { status: 'active' });
    }
  });
});

type RunBody = Created & { status: string; errorCode: string | null };
const longInput = Array.from({ length: 400 }, (_, index) => `word${index}`).join(' ');

/** A member with one run waiting for approval and one running (streaming a long answer). */
async function busyMember() {
  const user = await seedUser(operator, { tenantId, role: 'member' });
  const member = apiClient(server.url, user.secret);
  const start = async (agent: string, input: string, status: string) => {
    const thread = await member.post<Created>('/v1/threads', {});
    const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId: agent,
      input,
    });
    const ids = { threadId: thread.body.id, runId: run.body.id };
    await waitForRun(member, ids, [status]);
    return ids;
  };
  const parked = await start(agentId, 'call calculator {"expression":"1+1"}', 'requires_action');
  const running = await start(talkerId, longInput, 'running');
  return { user, member, parked, running };
}

/** After access is restored, both runs are cancelled with `reason`, none completed. */
async function expectCancelled(busy: Awaited<ReturnType<typeof busyMember>>, reason: string) {
  for (const ids of [busy.parked, busy.running]) {
    const run = await waitForRun<RunBody>(busy.member, ids, ['cancelled', 'completed', 'failed']);
    expect(run.status).toBe('cancelled');
  }
  const cancelled = await fetch(
    `${server.url}/v1/threads/${busy.parked.threadId}/runs/${busy.parked.runId}/events`,
    { headers: { authorization: `Bearer ${busy.user.secret}` } },
  );
  const text = await cancelled.text();
  expect(text).toContain('event: run-cancelled');
  expect(text).toContain(reason);
  const approvals = await busy.member.get<{ data: { runId: string }[] }>('/v1/approvals');
  expect(approvals.body.data.filter((item) => item.runId === busy.parked.runId)).toEqual([]);
}

describe('runs acting for someone whose access ended', () => {
  it('are cancelled when the user is disabled, waiting or running', async () => {
    const busy = await busyMember();
    const path = `/v1/tenants/${tenantId}/users/${busy.user.userId}`;
    expect((await admin.request('PATCH', path, { status: 'disabled' })).status).toBe(200);
    // Back in, to look: the runs did not wait for the user's return.
    expect((await admin.request('PATCH', path, { status: 'active' })).status).toBe(200);
    await expectCancelled(busy, 'the user was disabled');
  });

  it('are cancelled when the tenant is suspended', async () => {
    const busy = await busyMember();
    const path = `/v1/tenants/${tenantId}`;
    expect((await operator.request('PATCH', path, { status: 'suspended' })).status).toBe(200);
    expect((await operator.request('PATCH', path, { status: 'active' })).status).toBe(200);
    await expectCancelled(busy, 'the organisation was suspended');
  });
});

/** POSTs `body` to `path` with the last part held back until `meanwhile` has run. */
function postSlowly(options: {
  path: string;
  secret: string;
  body: string;
  meanwhile: () => Promise<void>;
}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      `${server.url}${options.path}`,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${options.secret}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(options.body),
        },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
      },
    );
    outgoing.on('error', reject);
    const split = options.body.length - 2;
    outgoing.write(options.body.slice(0, split));
    // The request is authenticated once its headers arrive; its body comes after the change.
    setTimeout(() => {
      options
        .meanwhile()
        .then(() => outgoing.end(options.body.slice(split)))
        .catch(reject);
    }, 300);
  });
}

describe('a run created while access ends', () => {
  it('is refused when the user was disabled after the request was authenticated', async () => {
    const user = await seedUser(operator, { tenantId, role: 'member' });
    const member = apiClient(server.url, user.secret);
    const thread = await member.post<Created>('/v1/threads', {});
    const path = `/v1/tenants/${tenantId}/users/${user.userId}`;
    const created = await postSlowly({
      path: `/v1/threads/${thread.body.id}/runs`,
      secret: user.secret,
      body: JSON.stringify({ agentId: talkerId, input: 'hello' }),
      meanwhile: async () => {
        expect((await admin.request('PATCH', path, { status: 'disabled' })).status).toBe(200);
      },
    });
    expect(created.status, created.text).toBe(401);
    expect((await admin.request('PATCH', path, { status: 'active' })).status).toBe(200);
    const runs = await member.get<{ data: unknown[] }>(`/v1/threads/${thread.body.id}/runs`);
    expect(runs.body.data).toEqual([]);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signIdToken } from './support/attack-tools.ts';
import { sweepCommonFailures } from './support/contract-failures.ts';
import {
  provokeBadBodies,
  provokeConflicts,
  provokeForbidden,
  provokeInvalid,
  provokeLimits,
} from './support/contract-refusals.ts';
import { exerciseGuardRails, exerciseTools } from './support/contract-scenarios.ts';
import {
  type ContractWorld,
  expectStatus,
  seedExtraMember,
  startContractWorld,
  waitForStatus,
} from './support/contract-world.ts';

/*
 * The public API against its own contract. Every response this file receives goes through a
 * client that checks it against /openapi.json (support/contract-checker.ts): the operation by
 * method and path template, a declared status, the declared media type, a body valid under
 * the declared schema with no undeclared field, and RFC 9457 problem+json for errors. Every
 * operation is exercised with a success, the common failures are tried on all of them, and
 * the conflicts and limits that exist are provoked; the last tests assert that no response
 * broke the contract and that no operation went untested.
 */

let world: ContractWorld;
type Id = { id: string };

beforeAll(async () => {
  world = await startContractWorld();
}, 120_000);

afterAll(async () => {
  await world?.stop();
});

/** A thread of `client` with one run of `agentId`, waited for until one of `statuses`. */
async function runOn(
  client: ContractWorld['member']['client'],
  run: { readonly agentId: string; readonly input: string },
  statuses: readonly string[] = ['completed'],
) {
  const thread = expectStatus(
    await client.post<Id>('/v1/threads', { title: 'contract' }),
    201,
    'createThread',
  );
  const created = expectStatus(
    await client.post<Id>(`/v1/threads/${thread.id}/runs`, run),
    201,
    'createRun',
  );
  const ids = { threadId: thread.id, runId: created.id };
  await waitForStatus(client, ids, statuses);
  return ids;
}

const agents: Record<string, string> = {};
const calculation = 'call calculator {"expression":"6*7"}';

describe('the public API as /openapi.json declares it', () => {
  it('answers the identity operations: caller, tenants, users, keys, OIDC sign-in', async () => {
    const { operator, owner, admin, tenantId, identityKey } = world;
    expectStatus(await operator.get('/v1/me'), 200, 'getMe (operator)');
    expectStatus(await owner.client.get('/v1/me'), 200, 'getMe');
    expectStatus(await operator.get('/v1/tenants?limit=2'), 200, 'listTenants');
    expectStatus(await owner.client.get(`/v1/tenants/${tenantId}`), 200, 'getTenant');
    expectStatus(
      await owner.client.patch(`/v1/tenants/${tenantId}`, { name: 'Contract Co' }),
      200,
      'updateTenant',
    );
    expectStatus(
      await admin.client.get(`/v1/tenants/${tenantId}/users?limit=10`),
      200,
      'listUsers',
    );
    const users = `/v1/tenants/${tenantId}/users`;
    expectStatus(await admin.client.get(`${users}/${world.member.id}`), 200, 'getUser');
    const extra = await seedExtraMember(world, 'member');
    expectStatus(
      await admin.client.patch(`${users}/${extra.id}`, { displayName: 'Extra', role: 'viewer' }),
      200,
      'updateUser',
    );
    const keys = `${users}/${extra.id}/api-keys`;
    expectStatus(await admin.client.get(keys), 200, 'listApiKeys');
    const rotated = expectStatus(
      await admin.client.post<Id>(`${keys}/${extra.keyId}/rotate`, { gracePeriodSeconds: 0 }),
      201,
      'rotateApiKey',
    );
    expectStatus(await admin.client.delete(`${keys}/${rotated.id}`), 200, 'revokeApiKey');
    const issuer = `https://${world.slug}.idp.test`;
    const provider = expectStatus(
      await owner.client.post<Id>(`/v1/tenants/${tenantId}/oidc-providers`, {
        name: 'idp',
        issuer,
        audience: 'brigade',
        publicKeysPem: [identityKey.publicKeyPem],
        jitProvisioning: true,
      }),
      201,
      'createOidcProvider',
    );
    expectStatus(
      await admin.client.get(`/v1/tenants/${tenantId}/oidc-providers`),
      200,
      'listOidcProviders',
    );
    const token = await signIdToken({
      issuer,
      audience: 'brigade',
      key: identityKey.privateKey,
      claims: { sub: 'contract-jwt', email: 'jwt@contract.test', name: 'Jwt' },
    });
    const me = await world.recorder.client(token).get<{ authMethod: string }>('/v1/me');
    expect(expectStatus(me, 200, 'getMe (jwt)').authMethod).toBe('jwt');
    expectStatus(
      await owner.client.delete(`/v1/tenants/${tenantId}/oidc-providers/${provider.id}`),
      204,
      'deleteOidcProvider',
    );
    expectStatus(
      await admin.client.request('DELETE', `${users}/${extra.id}?reason=contract`),
      204,
      'deleteUser',
    );
  });

  it('answers agents, threads, runs, streams, steps, traces and approvals', async () => {
    const { admin, member } = world;
    const create = async (body: Record<string, unknown>) =>
      expectStatus(await admin.client.post<Id>('/v1/agents', body), 201, 'createAgent').id;
    agents['helper'] = await create({ name: 'helper', tools: ['calculator', 'current_time'] });
    agents['careful'] = await create({
      name: 'careful',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    });
    agents['scribe'] = await create({ name: 'scribe', coreId: 'memory-script' });
    const spare = await create({
      name: 'spare',
      degradation: { atBudgetPercent: 80, model: 'local' },
    });
    expectStatus(await member.client.get('/v1/agents?limit=5'), 200, 'listAgents');
    expectStatus(await member.client.get(`/v1/agents/${spare}`), 200, 'getAgent');
    expectStatus(
      await admin.client.patch(`/v1/agents/${spare}`, { maxSteps: 3 }),
      200,
      'updateAgent',
    );
    expectStatus(await admin.client.delete(`/v1/agents/${spare}`), 204, 'deleteAgent');

    const done = await runOn(member.client, { agentId: agents['helper'], input: calculation });
    const run = `/v1/threads/${done.threadId}/runs/${done.runId}`;
    expectStatus(await member.client.get('/v1/threads?limit=5'), 200, 'listThreads');
    expectStatus(await member.client.get(`/v1/threads/${done.threadId}`), 200, 'getThread');
    expectStatus(
      await member.client.get(`/v1/threads/${done.threadId}/messages`),
      200,
      'listMessages',
    );
    expectStatus(await member.client.get(`/v1/threads/${done.threadId}/runs`), 200, 'listRuns');
    expectStatus(await member.client.get(`${run}/steps`), 200, 'listRunSteps');
    expectStatus(await member.client.get(`${run}/trace`), 200, 'getRunTrace');
    const events = expectStatus(
      await member.client.get<string>(`${run}/events`),
      200,
      'streamRunEvents',
    );
    expect(events).toContain('event: run-completed');
    const streamed = await member.client.post<string>(`/v1/threads/${done.threadId}/runs`, {
      agentId: agents['helper'],
      input: 'hello',
      stream: true,
    });
    expect(expectStatus(streamed, 201, 'createRun (stream)')).toContain('event: run-completed');

    const parked = await runOn(member.client, { agentId: agents['careful'], input: calculation }, [
      'requires_action',
    ]);
    const pending = expectStatus(
      await member.client.get<{ data: { id: string; runId: string; argumentsHash: string }[] }>(
        '/v1/approvals',
      ),
      200,
      'listPendingApprovals',
    ).data.find((approval) => approval.runId === parked.runId);
    expect(pending).toBeDefined();
    const decision = `/v1/approvals/${pending?.id}/decision`;
    const approve = { decision: 'approve', argumentsHash: pending?.argumentsHash };
    expectStatus(await member.client.post(decision, approve), 200, 'decideApproval');
    expectStatus(await member.client.post(decision, approve), 409, 'decideApproval (again)');

    const busy = await runOn(member.client, { agentId: agents['careful'], input: calculation }, [
      'requires_action',
    ]);
    expectStatus(
      await member.client.post(`/v1/threads/${busy.threadId}/runs`, {
        agentId: agents['helper'],
        input: 'hello',
        strategy: 'reject',
      }),
      409,
      'createRun (busy thread)',
    );
    const cancel = `/v1/threads/${busy.threadId}/runs/${busy.runId}/cancel`;
    expectStatus(await member.client.post(cancel), 202, 'cancelRun');
    await waitForStatus(member.client, busy, ['cancelled']);
    expectStatus(await member.client.post(cancel), 409, 'cancelRun (ended)');
    expectStatus(await member.client.delete(`/v1/threads/${busy.threadId}`), 204, 'deleteThread');
  });

  it('answers consents, memory and the data export', async () => {
    const { member, admin, tenantId } = world;
    const consent = expectStatus(
      await member.client.post<Id>('/v1/me/consents', {
        purpose: 'long_term_memory',
        version: '2025-01',
      }),
      201,
      'grantConsent',
    );
    expectStatus(await member.client.get('/v1/me/consents?status=granted'), 200, 'listConsents');
    expectStatus(
      await admin.client.get(`/v1/tenants/${tenantId}/users/${world.member.id}/consents`),
      200,
      'listUserConsents',
    );
    await runOn(member.client, {
      agentId: agents['scribe'] ?? '',
      input: JSON.stringify([
        { ns: 'thread', op: 'set', key: 'topic', value: 'contracts' },
        { ns: 'user', op: 'set', key: 'style', value: { terse: true } },
      ]),
    });
    const memories = expectStatus(
      await member.client.get<{ data: Id[] }>('/v1/me/memories?limit=10'),
      200,
      'listMemories',
    );
    expect(memories.data).toHaveLength(2);
    expectStatus(
      await member.client.delete(`/v1/me/memories/${memories.data[0]?.id}`),
      204,
      'deleteMemory',
    );
    expectStatus(await member.client.delete('/v1/me/memories?scope=all'), 200, 'clearMemories');
    expectStatus(
      await member.client.post(`/v1/me/consents/${consent.id}/revoke`),
      200,
      'revokeConsent',
    );
    const exported = expectStatus(
      await member.client.get<{ complete: boolean }>('/v1/me/export'),
      200,
      'exportMyData',
    );
    expect(exported.complete).toBe(true);
  });

  it('answers the audit log, its verification and signed checkpoints', async () => {
    const { owner, anonymous, tenantId } = world;
    const audit = `/v1/tenants/${tenantId}`;
    expectStatus(await owner.client.get(`${audit}/audit-events?limit=50`), 200, 'listAuditEvents');
    expectStatus(await owner.client.post(`${audit}/audit/verify`), 200, 'verifyAudit');
    expectStatus(await anonymous.get('/v1/audit/public-key'), 200, 'getAuditPublicKey');
    expectStatus(
      await owner.client.post(`${audit}/audit/checkpoints`),
      200,
      'createAuditCheckpoint',
    );
    expectStatus(await owner.client.get(`${audit}/audit/checkpoints`), 200, 'listAuditCheckpoints');
  });

  it('answers tools, kill switches, the OpenAPI import, MCP servers and credentials', async () => {
    await exerciseTools(world);
  });

  it('answers policies, limits, model routes, budget alerts, webhooks and usage', async () => {
    await exerciseGuardRails(world);
  });

  it('answers the OpenAI-compatible API: models, completions, streams and agents', async () => {
    const { member } = world;
    expectStatus(await member.client.get('/v1/models'), 200, 'listModels');
    expectStatus(await member.client.get('/v1/models/agent:helper'), 200, 'retrieveModel');
    expectStatus(await member.client.get('/v1/models/nope'), 404, 'retrieveModel (unknown)');
    const ask = (model: string, extra: Record<string, unknown> = {}) =>
      member.client.post<string>('/v1/chat/completions', {
        model,
        messages: [{ role: 'user', content: 'hello' }],
        ...extra,
      });
    expectStatus(await ask('local'), 200, 'createChatCompletion');
    const streamed = await ask('local', { stream: true, stream_options: { include_usage: true } });
    expect(expectStatus(streamed, 200, 'createChatCompletion (stream)')).toContain('[DONE]');
    expectStatus(await ask('agent:helper'), 200, 'createChatCompletion (agent)');
    expectStatus(await ask('no-such-model'), 404, 'createChatCompletion (unknown model)');
    expectStatus(await ask('mock:refusing'), 502, 'createChatCompletion (provider refuses)');
    const approval = await member.client.post('/v1/chat/completions', {
      model: 'agent:careful',
      messages: [{ role: 'user', content: calculation }],
    });
    expectStatus(approval, 409, 'createChatCompletion (agent waits for approval)');
    const slow = { name: 'slow', model: 'mock:slow', runTimeoutMs: 1000 };
    expectStatus(await world.admin.client.post('/v1/agents', slow), 201, 'createAgent (slow)');
    expectStatus(await ask('agent:slow'), 504, 'createChatCompletion (agent past its deadline)');
  });
});

describe('the common failures', () => {
  it('answers 401, 422 and 404 on every operation', async () => {
    const unexpected = await sweepCommonFailures(world.recorder.checker.operations, {
      anonymous: world.anonymous,
      caller: world.owner.client,
    });
    expect(unexpected).toEqual([]);
  });
  it('refuses roles without the permission with 403', async () => {
    expect(await provokeForbidden(world)).toEqual([]);
  });
  it('answers conflicts with 409', async () => {
    expect(await provokeConflicts(world)).toEqual([]);
  });
  it('answers limits with 429', async () => {
    expect(await provokeLimits(world, agents['helper'] ?? '')).toEqual([]);
  });
  it('refuses malformed, oversized and non-JSON bodies with 400, 413 and 415', async () => {
    expect(await provokeBadBodies(world.member.client, 1024 * 1024)).toEqual([]);
  });
  it('answers requests the services refuse with 422 (or 404)', async () => {
    expect(await provokeInvalid(world)).toEqual([]);
  });
});

/**
 * Operations the test does not drive to a success, each with the reason. Empty: every one is
 * reachable with the fakes of test/support (an OIDC sign-in uses a PEM key of our own).
 */
const deliberatelySkipped: Readonly<Record<string, string>> = {};

describe('the contract', () => {
  it('reports a wrong body, status or media type (the checker works)', () => {
    const { checker } = world.recorder;
    const observe = (status: number, contentType: string, text: string) =>
      checker.check({ method: 'GET', path: '/v1/me', status, contentType, text }).problems;
    const me = { kind: 'alien', tenant: null, user: null, keyId: null, permissions: [] };
    expect(observe(200, 'application/json', JSON.stringify(me)).join()).toMatch(/kind|authMethod/);
    expect(
      observe(
        200,
        'application/json',
        JSON.stringify({ ...me, kind: 'user', authMethod: 'jwt', extra: 1 }),
      ).join(),
    ).toMatch(/extra is not declared/);
    expect(observe(418, 'application/problem+json', '{}').join()).toMatch(/418 is not declared/);
    expect(observe(401, 'application/json', '{}').join()).toMatch(/content-type/);
  });

  it('found no response that breaks the document', () => {
    const lines = world.recorder.violations.map(
      (violation) =>
        `${violation.request} (${violation.operationId}) → ${violation.status}: ${violation.problems.join('; ')}`,
    );
    expect(lines).toEqual([]);
  });

  it('exercised every operation with a success', () => {
    const uncovered = world.recorder.checker.operations
      .map((operation) => operation.operationId)
      .filter((id) => deliberatelySkipped[id] === undefined)
      .filter((id) => ![...(world.recorder.seen.get(id) ?? [])].some((status) => status < 300));
    expect(uncovered).toEqual([]);
    expect(world.recorder.checker.operations.length).toBeGreaterThan(80);
  });
});

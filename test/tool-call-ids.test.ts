import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createMockModelServer,
  type MockModelServer,
  type MockToolCall,
} from '../src/testing/index.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, startLoggedServer, startUpstream } from './support/tool-fixtures.ts';

/**
 * Tool-call ids come from the provider, and a run keys its checkpoints, idempotency keys and
 * approvals on them: ids a provider repeats (in one step, or step after step) or leaves empty
 * must not make one call stand in for another.
 */
let upstream: Awaited<ReturnType<typeof startUpstream>>;
let model: MockModelServer;
let server: LoggedServer;
let member: ApiClient;
let plainAgent: string;
let carefulAgent: string;

/** The tool calls the mock model makes, per scenario, one list per model step. */
const plans: Record<string, readonly (readonly MockToolCall[])[]> = {
  'same-id': [
    [
      { id: 'dup', name: 'effect', arguments: { n: 1 } },
      { id: 'dup', name: 'effect', arguments: { n: 2 } },
    ],
  ],
  'empty-ids': [
    [
      { id: '', name: 'effect', arguments: { n: 1 } },
      { id: '', name: 'effect', arguments: { n: 2 } },
    ],
  ],
  'per-response': [
    [{ id: 'call_0', name: 'effect', arguments: { n: 1 } }],
    [{ id: 'call_0', name: 'effect', arguments: { n: 2 } }],
  ],
};

interface ToolStep {
  key: string;
  type: 'model' | 'tool';
  model?: { toolCalls: { id: string; name: string; input: unknown }[] };
  tool?: { callId: string; input: { n: number }; status: string; output?: unknown };
}

beforeAll(async () => {
  upstream = await startUpstream((request) => ({ received: JSON.parse(request.body) }));
  model = await createMockModelServer({ apiKey: 'ids-key' });
  model.setScript((request) => {
    const text = JSON.stringify(request.messages);
    const scenario = Object.keys(plans).find((name) => text.includes(`scenario:${name}`));
    const step = request.messages.filter((message) => message.role === 'assistant').length;
    const calls = scenario === undefined ? undefined : plans[scenario]?.[step];
    return calls === undefined ? { text: 'All done.' } : { toolCalls: calls };
  });
  server = await startLoggedServer(
    {
      providers: { mock: { type: 'openai-compatible', baseUrl: model.url, apiKeyEnv: 'IDS_KEY' } },
      tools: { tenantHttp: { allowedHosts: ['127.0.0.1'] } },
    },
    { IDS_KEY: 'ids-key' },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'tool-call-ids');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  const tool = await admin.post('/v1/tools', {
    name: 'effect',
    description: 'Has a side effect.',
    risk: 'write',
    method: 'POST',
    urlTemplate: `${upstream.url}/effect`,
    inputSchema: { type: 'object', properties: { n: { type: 'integer' } } },
  });
  expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  const agent = (body: Record<string, unknown>) =>
    admin.post<Created>('/v1/agents', { model: 'mock:mock-model', tools: ['effect'], ...body });
  plainAgent = (await agent({ name: 'plain' })).body.id;
  carefulAgent = (await agent({ name: 'careful', approvalRequiredTools: ['effect'] })).body.id;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await model?.close();
  await upstream?.close();
});

async function startRun(agentId: string, scenario: string) {
  const thread = await member.post<Created>('/v1/threads', {});
  const run = await member.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId,
    input: `scenario:${scenario}`,
  });
  expect(run.status, JSON.stringify(run.body)).toBe(201);
  return { threadId: thread.body.id, runId: run.body.id };
}

/** The `n` of each call the upstream received for the run, with its idempotency key. */
function effectsOf(runId: string) {
  return upstream.requests
    .filter((request) => String(request.headers['idempotency-key']).startsWith(`${runId}:`))
    .map((request) => ({
      key: String(request.headers['idempotency-key']),
      n: (JSON.parse(request.body) as { n: number }).n,
    }));
}

async function toolStepsOf(ids: { threadId: string; runId: string }) {
  const steps = await member.get<{ data: ToolStep[] }>(
    `/v1/threads/${ids.threadId}/runs/${ids.runId}/steps`,
  );
  expect(steps.status).toBe(200);
  return {
    steps: steps.body.data,
    tools: steps.body.data.flatMap((step) => (step.tool === undefined ? [] : [step.tool])),
  };
}

/** The `n` a tool step's output says the upstream received. */
function receivedBy(output: unknown): number | undefined {
  return (output as { body?: { received?: { n?: number } } }).body?.received?.n;
}

/** The last request the model got in a scenario: its assistant tool calls and tool results. */
function lastModelRequest(scenario: string) {
  const call = model.calls
    .filter((candidate) => JSON.stringify(candidate.body).includes(`scenario:${scenario}`))
    .at(-1);
  const messages =
    (call?.body as { messages?: Record<string, unknown>[] } | undefined)?.messages ?? [];
  const calls = messages.flatMap(
    (message) =>
      (message['tool_calls'] as { id: string; function: { arguments: string } }[] | undefined) ??
      [],
  );
  const results = messages
    .filter((message) => message['role'] === 'tool')
    .map((message) => ({
      id: String(message['tool_call_id']),
      n: Number(/"n":(\d+)/.exec(String(message['content']))?.[1]),
    }));
  return {
    calls: calls.map((entry) => ({
      id: entry.id,
      n: (JSON.parse(entry.function.arguments) as { n: number }).n,
    })),
    results,
  };
}

/** Both calls of the scenario's one step ran, each recorded and answered under its own id. */
async function expectBothRan(scenario: string, expectedIds: readonly string[]) {
  const ids = await startRun(plainAgent, scenario);
  expect((await waitForRun(member, ids)).status).toBe('completed');
  const effects = effectsOf(ids.runId);
  expect(effects.map((effect) => effect.n).sort()).toEqual([1, 2]);
  expect(new Set(effects.map((effect) => effect.key)).size).toBe(2);
  const { steps, tools } = await toolStepsOf(ids);
  expect(steps.map((step) => step.type)).toEqual(['model', 'tool', 'tool', 'model']);
  expect(steps[0]?.model?.toolCalls.map((call) => call.id)).toEqual(expectedIds);
  expect(tools.map((tool) => tool.callId).sort()).toEqual([...expectedIds].sort());
  for (const tool of tools) {
    expect(tool.status).toBe('ok');
    // Each step pairs its own input with its own output.
    expect(receivedBy(tool.output)).toBe(tool.input.n);
  }
  // The model is told about both calls, each result under the id of its own call.
  const sent = lastModelRequest(scenario);
  expect(sent.calls.map((call) => call.id)).toEqual(expectedIds);
  expect(sent.results).toHaveLength(2);
  for (const result of sent.results)
    expect(result.n).toBe(sent.calls.find((call) => call.id === result.id)?.n);
  expect(new Set(sent.results.map((result) => result.id)).size).toBe(2);
}

describe('tool-call ids the provider does not keep unique', () => {
  it('runs both calls of a step that share one id, each under its own id', async () => {
    // The first keeps its id; the repeat gets one from its step and position.
    await expectBothRan('same-id', ['dup', 'call_0_1']);
  });

  it('runs both calls of a step whose ids are empty', async () => {
    await expectBothRan('empty-ids', ['call_0_0', 'call_0_1']);
  });

  it('asks an approval for each call sharing an id, and never runs one that was not approved', async () => {
    const ids = await startRun(carefulAgent, 'same-id');
    await waitForRun(member, ids, ['requires_action']);
    const pendingOf = async () =>
      (
        await member.get<{ data: { id: string; runId: string; arguments: { n: number } }[] }>(
          '/v1/approvals',
        )
      ).body.data.filter((approval) => approval.runId === ids.runId);
    let pending = await pendingOf();
    for (let tries = 0; pending.length < 2 && tries < 40; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      pending = await pendingOf();
    }
    expect(pending.map((approval) => approval.arguments.n).sort()).toEqual([1, 2]);
    expect(effectsOf(ids.runId)).toEqual([]);
    const first = pending.find((approval) => approval.arguments.n === 1);
    const second = pending.find((approval) => approval.arguments.n === 2);
    expect(
      (await member.post(`/v1/approvals/${first?.id}/decision`, { decision: 'approve' })).status,
    ).toBe(200);
    expect(
      (await member.post(`/v1/approvals/${second?.id}/decision`, { decision: 'reject' })).status,
    ).toBe(200);
    expect((await waitForRun(member, ids)).status).toBe('completed');
    // Only the approved call reached the upstream; the rejected one is an error, not its twin's result.
    expect(effectsOf(ids.runId).map((effect) => effect.n)).toEqual([1]);
    const { tools } = await toolStepsOf(ids);
    expect(tools).toHaveLength(2);
    const ran = tools.find((tool) => tool.input.n === 1);
    const refused = tools.find((tool) => tool.input.n === 2);
    expect(ran?.status).toBe('ok');
    expect(receivedBy(ran?.output)).toBe(1);
    expect(refused?.status).toBe('error');
    expect(refused?.callId).not.toBe(ran?.callId);
  });

  it('runs a call whose id an earlier step used again instead of replaying that step’s result', async () => {
    const ids = await startRun(plainAgent, 'per-response');
    expect((await waitForRun(member, ids)).status).toBe('completed');
    const effects = effectsOf(ids.runId);
    expect(effects.map((effect) => effect.n)).toEqual([1, 2]);
    expect(new Set(effects.map((effect) => effect.key)).size).toBe(2);
    const { steps, tools } = await toolStepsOf(ids);
    expect(steps.map((step) => step.type)).toEqual(['model', 'tool', 'model', 'tool', 'model']);
    expect(tools.map((tool) => [tool.callId, tool.input.n, receivedBy(tool.output)])).toEqual([
      ['call_0', 1, 1],
      ['call_1_0', 2, 2],
    ]);
    const sent = lastModelRequest('per-response');
    expect(sent.calls).toEqual([
      { id: 'call_0', n: 1 },
      { id: 'call_1_0', n: 2 },
    ]);
    expect(sent.results).toEqual(sent.calls);
  });
});

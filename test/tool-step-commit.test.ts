import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, seedUser, waitForRun } from './support/api-client.ts';
import {
  callNanos,
  ledgerOf,
  maxOutputTokens,
  nanosPerToken,
  ownerQuery,
  pricedConfig,
  type RunBody,
  seedBudgetedMember,
  startRun,
} from './support/budget-fixtures.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/*
 * A run's tool step commits with the budget reservation of the model call after it, in one
 * statement (migration 0032). The step must be saved, and audited, whatever that reservation's
 * verdict: a budget that refuses the next call still keeps the tool's record.
 */

describe('a tool step committed with the next model call’s reservation', () => {
  let server: TestServer;
  let mock: MockModelServer;
  let owner: pg.Client;

  beforeAll(async () => {
    mock = await createMockModelServer();
    // The first call asks for the calculator and reports most of its worst case as spent.
    mock.setScript((request) =>
      request.messages.at(-1)?.role === 'tool'
        ? { text: 'The answer is 42.', usage: { promptTokens: 7, completionTokens: 1 } }
        : {
            toolCalls: [{ name: 'calculator', arguments: { expression: '6*7' } }],
            usage: { promptTokens: 7, completionTokens: maxOutputTokens - 1 },
          },
    );
    server = await startTestServer(pricedConfig(mock.url));
    owner = new pg.Client({ connectionString: server.database.url });
    await owner.connect();
  });

  afterAll(async () => {
    await owner?.end();
    await server?.stop();
    await mock?.close();
  });

  async function toolRun(slug: string, budgetNanos: number) {
    const seeded = await seedBudgetedMember(server.url, { slug, budgetNanos, maxOutputTokens });
    const operator = apiClient(server.url, testOperatorKey);
    const admin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId: seeded.tenantId, role: 'admin' })).secret,
    );
    const patched = await admin.request('PATCH', `/v1/agents/${seeded.agentId}`, {
      tools: ['calculator'],
    });
    expect(patched.status).toBe(200);
    const member = apiClient(server.url, seeded.member.secret);
    const ids = await startRun(member, seeded.agentId);
    const run = await waitForRun<RunBody>(member, ids);
    const steps = await ownerQuery<{ kind: string; output: { status?: string } }>(
      owner,
      seeded.tenantId,
      {
        text: 'select kind, output from brigade.run_steps where run_id = $1 order by created_at',
        values: [ids.runId],
      },
    );
    const audits = await ownerQuery<{ outcome: string }>(owner, seeded.tenantId, {
      text: `select outcome from brigade.audit_events
              where action = 'tool.called' and data ->> 'runId' = $1`,
      values: [ids.runId],
    });
    return { run, steps, audits, ledger: await ledgerOf(owner, seeded) };
  }

  it('keeps the tool step and its audit event when the next call’s budget is refused', async () => {
    // Room for one call's worst case and a little: the second call's worst case does not fit.
    const { run, steps, audits, ledger } = await toolRun('tool-step-refused', callNanos + 5_000);
    expect(run.status).toBe('failed');
    expect(run.errorCode).toBe('budget_exceeded');
    expect(steps.map((step) => [step.kind, step.output.status ?? null])).toEqual([
      ['model', null],
      ['tool', 'ok'],
    ]);
    expect(audits.map((audit) => audit.outcome)).toEqual(['success']);
    // The refused call reserved nothing; only the first call was paid.
    const spent = (maxOutputTokens - 1) * nanosPerToken;
    expect(ledger).toEqual({ ledger: spent, used: spent, reserved: 0, open: 0 });
  });

  it('saves every step of a run whose budget allows it, and pays each call once', async () => {
    const { run, steps, audits, ledger } = await toolRun('tool-step-paid', 10 * callNanos);
    expect(run.status).toBe('completed');
    expect(steps.map((step) => step.kind)).toEqual(['model', 'tool', 'model']);
    expect(audits.map((audit) => audit.outcome)).toEqual(['success']);
    const spent = maxOutputTokens * nanosPerToken;
    expect(ledger).toEqual({ ledger: spent, used: spent, reserved: 0, open: 0 });
  });
});

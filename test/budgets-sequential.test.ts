import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockModelServer, type MockModelServer } from '../src/testing/index.ts';
import { apiClient, waitForRun } from './support/api-client.ts';
import {
  budgetOf,
  callNanos,
  chatCalls,
  ledgerOf,
  maxOutputTokens,
  nanosPerToken,
  ownerQuery,
  pricedConfig,
  type RunBody,
  seedBudgetedMember,
  startRun,
  toNanos,
  type Usage,
} from './support/budget-fixtures.ts';
import { startTestServer, type TestServer } from './support/test-brigade.ts';

/*
 * Budgets are exact (DESIGN.md invariant 7) one call after another, and each call's payment
 * commits with its checkpoint. Prices as in budgets-exact.test.ts: output at $1 per million
 * tokens, input free, so a call's worst case is its `maxOutputTokens` × 1,000 nano-USD.
 */

const owners: pg.Client[] = [];

async function ownerOf(url: string): Promise<pg.Client> {
  const owner = new pg.Client({ connectionString: url });
  await owner.connect();
  owners.push(owner);
  return owner;
}

describe('sequential spending (property)', () => {
  let server: TestServer;
  let mock: MockModelServer;
  /** Output tokens the mock reports for the next calls, in order. */
  let reported: number[] = [];

  beforeAll(async () => {
    mock = await createMockModelServer();
    mock.setScript(() => ({
      text: 'ok',
      usage: { promptTokens: 7, completionTokens: reported.shift() ?? 0 },
    }));
    server = await startTestServer(pricedConfig(mock.url));
  });

  afterAll(async () => {
    // Before the server drops its database, which would cut these connections.
    for (const owner of owners.splice(0)) await owner.end();
    await server?.stop();
    await mock?.close();
  });

  it('refuses a call exactly when its worst case exceeds what is left, and ledger == counters', async () => {
    const owner = await ownerOf(server.database.url);
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 200 }).chain((max) =>
          fc.record({
            maxOutputTokens: fc.constant(max),
            // From less than one call's worst case to six of them, in nano-USD.
            budgetNanos: fc.integer({ min: 1, max: 6 * max * nanosPerToken }),
            // Reported output tokens per call; above max the charge is capped at the worst case.
            tokens: fc.array(fc.integer({ min: 0, max: Math.floor(1.5 * max) }), {
              minLength: 1,
              maxLength: 10,
            }),
          }),
        ),
        async ({ maxOutputTokens: max, budgetNanos, tokens }) => {
          round += 1;
          const seeded = await seedBudgetedMember(server.url, {
            slug: `prop-${round}`,
            budgetNanos,
            maxOutputTokens: max,
          });
          const member = apiClient(server.url, seeded.member.secret);
          const worst = max * nanosPerToken;
          const callsBefore = chatCalls(mock).length;
          reported = [...tokens];
          let expectedUsed = 0;
          let expectedCalls = 0;
          for (const reportedTokens of tokens) {
            const run = await waitForRun<RunBody>(member, await startRun(member, seeded.agentId));
            if (worst > budgetNanos - expectedUsed) {
              expect(run.errorCode).toBe('budget_exceeded');
              break;
            }
            expect(run.status).toBe('completed');
            expectedUsed += Math.min(worst, reportedTokens * nanosPerToken);
            expectedCalls += 1;
          }
          expect(chatCalls(mock).length - callsBefore).toBe(expectedCalls);
          expect(expectedUsed).toBeLessThanOrEqual(budgetNanos);
          const budget = await budgetOf(member, seeded.policyId);
          expect(toNanos(budget?.used ?? -1)).toBe(expectedUsed);
          expect(budget?.reserved).toBe(0);
          expect(toNanos(budget?.remaining ?? -1)).toBe(budgetNanos - expectedUsed);
          const usage = await member.get<Usage>('/v1/usage');
          expect(toNanos(usage.body.totals.costUsd)).toBe(expectedUsed);
          expect(usage.body.totals.requests).toBe(expectedCalls);
          expect(await ledgerOf(owner, seeded)).toEqual({
            ledger: expectedUsed,
            used: expectedUsed,
            reserved: 0,
            open: 0,
          });
        },
      ),
      { numRuns: 5, endOnFailure: true },
    );
  }, 60_000);

  it("commits each model call's settlement in the transaction that checkpoints its step", async () => {
    const owner = await ownerOf(server.database.url);
    const seeded = await seedBudgetedMember(server.url, {
      slug: 'settle-with-step',
      budgetNanos: 10 * callNanos,
      maxOutputTokens,
    });
    const member = apiClient(server.url, seeded.member.secret);
    reported = [40];
    const ids = await startRun(member, seeded.agentId);
    const run = await waitForRun<RunBody>(member, ids);
    expect(run.status).toBe('completed');
    // Rows written by one transaction share its xmin: the model step, the usage record and
    // the settled reservation were committed together (a crash cannot split them); the run's
    // only (so last) model step commits with its finish, in the same transaction.
    const rows = await ownerQuery<{ what: string; tx: string; detail: string }>(
      owner,
      seeded.tenantId,
      {
        text: `select 'step' as what, xmin::text as tx, kind as detail from brigade.run_steps
                where run_id = $1
               union all
               select 'usage', xmin::text, cost::text from brigade.usage_records where run_id = $1
               union all
               select 'reservation', xmin::text, status from brigade.budget_reservations
                where run_id = $1
               union all
               select 'run', xmin::text, status from brigade.runs where id = $1`,
        values: [ids.runId],
      },
    );
    const of = (what: string) => rows.filter((row) => row.what === what);
    expect(of('step').map((row) => row.detail)).toEqual(['model']);
    expect(of('usage').map((row) => row.detail)).toEqual([String(40 * nanosPerToken)]);
    expect(of('reservation').map((row) => row.detail)).toEqual(['settled']);
    expect(of('run').map((row) => row.detail)).toEqual(['completed']);
    expect(new Set(rows.map((row) => row.tx)).size).toBe(1);
    expect(await ledgerOf(owner, seeded)).toEqual({
      ledger: 40 * nanosPerToken,
      used: 40 * nanosPerToken,
      reserved: 0,
      open: 0,
    });
  });
});

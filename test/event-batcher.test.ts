import { connect } from 'node:net';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventBatcher, type RunEventBatch } from '../src/runtime/event-batcher.ts';
import { createDatabase, type Database } from '../src/storage/postgres/database.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';
import { runOnce } from './support/tool-fixtures.ts';

/** A finished run of one user, and the next free event sequence number it has. */
interface RunRef {
  readonly tenantId: string;
  readonly userId: string;
  readonly runId: string;
  nextSeq: number;
}

interface EventRow {
  readonly tenant_id: string;
  readonly user_id: string;
  readonly run_id: string;
  readonly seq: number;
  readonly type: string;
  readonly data: Record<string, unknown>;
  readonly xmin: string;
}

let server: TestServer;
let owner: pg.Pool;
/** Runtime database (brigade_app, row-level security) with a single connection. */
let database: Database;
/** Two runs each of two users in each of two tenants. */
let runs: RunRef[];

async function eventsFrom(run: RunRef, fromSeq: number): Promise<EventRow[]> {
  const result = await owner.query<EventRow>(
    `select tenant_id, user_id, run_id, seq, type, data, xmin::text as xmin
       from brigade.run_events where run_id = $1 and seq >= $2 order by seq`,
    [run.runId, fromSeq],
  );
  return result.rows;
}

/** A batch of `events` for `run` from its next sequence number (which it then moves on). */
function batchFor(run: RunRef, events: RunEventBatch['events']): RunEventBatch {
  const batch = { run: { ...run, firstSeq: run.nextSeq }, events };
  run.nextSeq += events.length;
  return batch;
}

beforeAll(async () => {
  server = await startTestServer();
  owner = new pg.Pool({ connectionString: server.database.url, max: 2 });
  const operator = apiClient(server.url, testOperatorKey);
  runs = [];
  for (const slug of ['batch-a', 'batch-b']) {
    const tenantId = await seedTenant(operator, slug);
    const admin = apiClient(
      server.url,
      (await seedUser(operator, { tenantId, role: 'owner' })).secret,
    );
    const agent = await admin.post<{ id: string }>('/v1/agents', { name: 'echo' });
    expect(agent.status).toBe(201);
    for (let user = 0; user < 2; user += 1) {
      const member = await seedUser(operator, { tenantId, role: 'member' });
      const client = apiClient(server.url, member.secret);
      for (let run = 0; run < 2; run += 1) {
        const result = await runOnce(client, { agentId: agent.body.id, input: 'hello' });
        expect(result.run.status).toBe('completed');
        const last = await owner.query<{ seq: number }>(
          'select max(seq) as seq from brigade.run_events where run_id = $1',
          [result.ids.runId],
        );
        runs.push({
          tenantId,
          userId: member.userId,
          runId: result.ids.runId,
          nextSeq: Number(last.rows[0]?.seq ?? 0) + 1,
        });
      }
    }
  }
  database = createDatabase({
    connectionString: server.brigade.storage.runtimeConnection.url,
    poolSize: 1,
    statementTimeoutMs: 10_000,
    logger: { warn: () => undefined },
  });
}, 60_000);

afterAll(async () => {
  await database?.close();
  await owner?.end();
  await server?.stop();
});

describe('the event batcher', () => {
  it('writes the events of many runs of several users and tenants in one transaction', async () => {
    const batcher = createEventBatcher(database);
    const firstSeqs = runs.map((run) => run.nextSeq);
    const batches = runs.map((run, index) =>
      batchFor(run, [
        { type: 'message-delta', data: { text: `part ${index}` } },
        { type: 'tool-call-started', data: { tool: 'calculator', index } },
      ]),
    );
    await Promise.all(batches.map((batch) => batcher.append(batch)));
    const written = await Promise.all(runs.map((run, index) => eventsFrom(run, firstSeqs[index]!)));
    for (const [index, rows] of written.entries()) {
      const run = runs[index]!;
      expect(rows.map(({ xmin: _, ...row }) => row)).toEqual([
        {
          tenant_id: run.tenantId,
          user_id: run.userId,
          run_id: run.runId,
          seq: firstSeqs[index],
          type: 'message-delta',
          data: { text: `part ${index}` },
        },
        {
          tenant_id: run.tenantId,
          user_id: run.userId,
          run_id: run.runId,
          seq: firstSeqs[index]! + 1,
          type: 'tool-call-started',
          data: { tool: 'calculator', index },
        },
      ]);
    }
    // Handed over in the same turn of the event loop, all of them committed together.
    expect(new Set(written.flat().map((row) => row.xmin)).size).toBe(1);
  });

  it('keeps a batch that fails from failing the batches written with it', async () => {
    const batcher = createEventBatcher(database);
    const [clashing, ...others] = runs;
    // The clashing run's batch reuses a sequence number it already has.
    const duplicate = { run: { ...clashing!, firstSeq: clashing!.nextSeq - 1 }, events: [] };
    const outcomes = await Promise.allSettled([
      batcher.append({
        ...duplicate,
        events: [{ type: 'message-delta', data: { text: 'twice' } }],
      }),
      ...others.map((run) =>
        batcher.append(batchFor(run, [{ type: 'message-delta', data: { text: 'kept' } }])),
      ),
    ]);
    expect(outcomes[0]).toMatchObject({ status: 'rejected', reason: { code: '23505' } });
    expect(outcomes.slice(1).every((outcome) => outcome.status === 'fulfilled')).toBe(true);
    for (const run of others) {
      const [last] = await eventsFrom(run, run.nextSeq - 1);
      expect(last?.data).toEqual({ text: 'kept' });
    }
  });

  it('keeps a run whose executor lost its claim from failing the runs written with it', async () => {
    const batcher = createEventBatcher(database);
    const [lost, ...others] = runs;
    // The runs ended (their queue entries are gone): an executor claiming one holds nothing, and
    // the claim fence refuses its batch (BRG17) before the write.
    const outcomes = await Promise.allSettled([
      batcher.append({
        run: { ...lost!, firstSeq: lost!.nextSeq, executorId: 'a-process-that-lost-it' },
        events: [{ type: 'message-delta', data: { text: 'too late' } }],
      }),
      ...others.map((run) =>
        batcher.append(batchFor(run, [{ type: 'message-delta', data: { text: 'kept' } }])),
      ),
    ]);
    expect(outcomes[0]).toMatchObject({ status: 'rejected', reason: { code: 'BRG17' } });
    expect(outcomes.slice(1).every((outcome) => outcome.status === 'fulfilled')).toBe(true);
    expect(await eventsFrom(lost!, lost!.nextSeq)).toEqual([]);
    for (const run of others) {
      const [last] = await eventsFrom(run, run.nextSeq - 1);
      expect(last?.data).toEqual({ text: 'kept' });
    }
  });

  it('splits a write past its limit of runs, in order', async () => {
    const batcher = createEventBatcher(database);
    const batches = Array.from({ length: 501 }, (_, index) =>
      batchFor(runs[index % runs.length]!, [{ type: 'message-delta', data: { text: `${index}` } }]),
    );
    await Promise.all(batches.map((batch) => batcher.append(batch)));
    const rows = await owner.query<{ xmin: string; n: number }>(
      `select e.xmin::text as xmin, count(*)::int as n from brigade.run_events e
        join (select unnest($1::uuid[]) as run_id, unnest($2::int[]) as seq) b
          on b.run_id = e.run_id and b.seq = e.seq
        group by e.xmin order by min(e.created_at)`,
      [batches.map((batch) => batch.run.runId), batches.map((batch) => batch.run.firstSeq)],
    );
    expect(rows.rows.map((row) => row.n)).toEqual([500, 1]);
  });

  it('fails every batch of a write the database could not take, without retrying each', async () => {
    // Nothing listens on port 1: every connection is refused (ECONNREFUSED, not a row error).
    const closed = createDatabase({
      connectionString: 'postgres://brigade_app@127.0.0.1:1/brigade',
      poolSize: 1,
      statementTimeoutMs: 10_000,
      logger: { warn: () => undefined },
    });
    const batcher = createEventBatcher(closed);
    const outcomes = await Promise.allSettled(
      runs.slice(0, 3).map((run) =>
        batcher.append({
          run: { ...run, firstSeq: run.nextSeq },
          events: [{ type: 'message-delta', data: { text: 'lost' } }],
        }),
      ),
    );
    for (const outcome of outcomes) {
      expect(outcome).toMatchObject({ status: 'rejected', reason: { code: 'ECONNREFUSED' } });
    }
    await closed.close();
  });

  it('refuses a row of one tenant written after switching to another tenant’s scope', async () => {
    const victim = runs.at(-1)!;
    const attacker = runs[0]!;
    expect(victim.tenantId).not.toBe(attacker.tenantId);
    const insert = `insert into brigade.run_events (tenant_id, user_id, run_id, seq, type, data)
      values ('${victim.tenantId}', '${victim.userId}', '${victim.runId}', ${victim.nextSeq}, 'forged', '{}')`;
    await expect(
      database.writeScopes([
        // The victim's own scope first, with every flag a later part must not inherit.
        {
          scope: {
            tenantId: victim.tenantId,
            userId: victim.userId,
            tenantAdmin: true,
            operator: true,
          },
          statements: ['select 1'],
        },
        { scope: { tenantId: attacker.tenantId, userId: attacker.userId }, statements: [insert] },
      ]),
    ).rejects.toMatchObject({ code: '42501' });
    expect(await eventsFrom(victim, victim.nextSeq)).toEqual([]);
  });

  it('leaves no scope on the pooled connection after a write', async () => {
    const batcher = createEventBatcher(database);
    await batcher.append(batchFor(runs[0]!, [{ type: 'message-delta', data: { text: 'x' } }]));
    const settings = await database.readScoped({}, [
      `select coalesce(current_setting('brigade.tenant_id', true), '') as tenant,
              coalesce(current_setting('brigade.user_id', true), '') as "user",
              (select count(*)::int from brigade.run_events) as visible`,
    ]);
    expect(settings[0]).toEqual([{ tenant: '', user: '', visible: 0 }]);
  });

  it('stores any text and event type exactly as given (values are inlined, escaped)', async () => {
    const batcher = createEventBatcher(database);
    // PostgreSQL's jsonb refuses \u0000 whatever the path, so it is left out.
    const text = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !s.includes('\0'));
    const hostile = fc.oneof(
      text,
      fc.constantFrom("'); drop table brigade.runs; --", '$$', "\\'", "E'\\x00'", '\\\\', '"'),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            run: fc.nat({ max: runs.length - 1 }),
            type: hostile.filter((s) => !s.includes('\0')),
            text: hostile,
          }),
          { minLength: 1, maxLength: 12 },
        ),
        async (events) => {
          const expected = events.map((event) => {
            const run = runs[event.run]!;
            const batch = batchFor(run, [{ type: event.type, data: { text: event.text } }]);
            return { run, batch };
          });
          await Promise.all(expected.map(({ batch }) => batcher.append(batch)));
          for (const { run, batch } of expected) {
            const [row] = await eventsFrom(run, batch.run.firstSeq);
            expect(row?.type).toBe(batch.events[0]?.type);
            expect(row?.data).toEqual(batch.events[0]?.data);
          }
          expect(await owner.query('select count(*) from brigade.runs')).toMatchObject({
            rows: [{ count: String(runs.length) }],
          });
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('the HTTP listener', () => {
  it('answers an HTTP/1.0 request that names no host (health checks send none)', async () => {
    const { hostname, port } = new URL(server.url);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: hostname, port: Number(port) }, () => {
        socket.write('GET /healthz HTTP/1.0\r\n\r\n');
      });
      let text = '';
      socket.on('data', (chunk) => {
        text += chunk.toString();
      });
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(answer).toContain('"status":"ok"');
  });
});

import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { createDatabase } from './database.ts';

describe('createDatabase', () => {
  it('closes its pool even when only the raw pool was used', async () => {
    // Start-up checks use the pool directly; a CLI command that then fails validation closed
    // a Kysely that had never run a query, which left the pool's idle connection open: the
    // process lingered 30 s on an external server, and the embedded one logged its
    // termination as two warnings.
    const database = createDatabase({
      connectionString: inject('clusterUrl'),
      poolSize: 1,
      statementTimeoutMs: 5_000,
      logger: { warn: () => undefined },
    });
    await database.pool.query('select 1');
    await database.close();
    expect(database.pool.ended).toBe(true);
    expect(database.pool.totalCount).toBe(0);
  });

  it('closes once after Kysely ran a query', async () => {
    const database = createDatabase({
      connectionString: inject('clusterUrl'),
      poolSize: 1,
      statementTimeoutMs: 5_000,
      logger: { warn: () => undefined },
    });
    expect(await database.withScope({}, async () => 'done')).toBe('done');
    await database.close();
    expect(database.pool.ended).toBe(true);
  });

  it('makes a prepared call again when PostgreSQL rolled it back to break a deadlock', async () => {
    // A settlement alone meeting a time-zone change's carry the other way round: the
    // provider was paid, so the call must not fail for a conflict PostgreSQL undid whole.
    const database = createDatabase({
      connectionString: inject('clusterUrl'),
      poolSize: 1,
      statementTimeoutMs: 10_000,
      logger: { warn: () => undefined },
    });
    const other = new pg.Client({ connectionString: inject('clusterUrl') });
    await other.connect();
    const [first, second] = [7_340_001, 7_340_002];
    try {
      await other.query('begin');
      await other.query('select pg_advisory_xact_lock($1)', [second]);
      // Takes the first lock, then waits for the second...
      const call = database.callPrepared(
        {
          name: 'deadlock_retry_test',
          text: 'select pg_advisory_xact_lock($1::bigint), pg_advisory_xact_lock($2::bigint), 1 as done',
        },
        [first, second],
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      // ...while this waits for the first: the call, waiting longer, is rolled back.
      await other.query('select pg_advisory_xact_lock($1)', [first]);
      await other.query('commit');
      expect(await call).toEqual([expect.objectContaining({ done: 1 })]);
    } finally {
      await other.end();
      await database.close();
    }
  });
});

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
});

import { type RawBuilder, type SqlBool, sql } from 'kysely';
import { describe, expect, inject, it } from 'vitest';
import {
  afterCreation,
  creationMicros,
  parseCreationCursor,
  toCreationPage,
} from './creation-order.ts';
import { createDatabase } from './database.ts';

const ids = [
  '00000000-0000-4000-8000-000000000001',
  '00000000-0000-4000-8000-000000000002',
  '00000000-0000-4000-8000-000000000003',
  '00000000-0000-4000-8000-000000000004',
  '00000000-0000-4000-8000-000000000005',
];

describe('creation order pages', () => {
  it('page through rows of one millisecond and of one instant exactly once, in order', async () => {
    const database = createDatabase({
      connectionString: inject('clusterUrl'),
      poolSize: 1,
      statementTimeoutMs: 5_000,
      logger: { warn: () => undefined },
    });
    try {
      const seen = await database.withScope({}, async (db) => {
        await sql`create temp table pages (id uuid, created_at timestamptz) on commit drop`.execute(
          db,
        );
        // Microseconds apart within one millisecond, and pairs of the very same instant (the first
        // page ends between the rows of one).
        await sql`insert into pages values
          (${ids[3]}, '2025-03-01T10:00:00.123457Z'), (${ids[0]}, '2025-03-01T10:00:00.123456Z'),
          (${ids[2]}, '2025-03-01T10:00:00.123457Z'), (${ids[1]}, '2025-03-01T10:00:00.123456Z'),
          (${ids[4]}, '2025-03-01T10:00:00.999999Z')`.execute(db);
        const listed: string[] = [];
        let after: string | null = null;
        do {
          const where: RawBuilder<SqlBool> =
            after === null ? sql<SqlBool>`true` : afterCreation(parseCreationCursor(after));
          const { rows } = await sql<{ id: string; creation_micros: string }>`
            select id, ${creationMicros()} from pages where ${where}
            order by created_at, id limit 4`.execute(db);
          const page: { data: readonly string[]; nextCursor: string | null } = toCreationPage(
            rows,
            { limit: 3, map: (row) => row.id },
          );
          listed.push(...page.data);
          after = page.nextCursor;
        } while (after !== null);
        return listed;
      });
      expect(seen).toEqual(ids);
    } finally {
      await database.close();
    }
  });

  it('refuses text that is not a cursor as a validation error', () => {
    expect(() => parseCreationCursor(ids[0] ?? '')).toThrow(
      expect.objectContaining({ code: 'validation_failed' }),
    );
  });
});

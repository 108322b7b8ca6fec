import { sql } from 'kysely';
import {
  generateSecret,
  hashSecret,
  operatorKeyPrefix,
} from '../domain/identity/api-key-secret.ts';
import { withOwnerDb } from './open-storage.ts';

/**
 * Generates the platform operator key when none exists (first start without
 * `BRIGADE_OPERATOR_KEY`) and stores only its SHA-256. Returns the secret when one was made,
 * so the caller can print it once. Concurrent starts serialise on an advisory lock.
 */
export async function bootstrapOperatorKey(ownerUrl: string): Promise<string | undefined> {
  return withOwnerDb(ownerUrl, async (owner) =>
    owner.transaction().execute(async (db) => {
      await sql`select pg_advisory_xact_lock(hashtext('brigade.operator_key'))`.execute(db);
      await sql`select set_config('brigade.operator', 'on', true)`.execute(db);
      const existing = await sql<{
        count: string;
      }>`select count(*) as count from brigade.operator_keys`.execute(db);
      if (Number(existing.rows[0]?.count ?? 0) > 0) return undefined;
      const { secret } = generateSecret(operatorKeyPrefix);
      await sql`insert into brigade.operator_keys (key_hash, source) values (${hashSecret(secret)}, 'generated')`.execute(
        db,
      );
      return secret;
    }),
  );
}

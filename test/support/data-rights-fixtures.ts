import pg from 'pg';
import { expect } from 'vitest';
import { type ApiClient, apiClient, seedUser } from './api-client.ts';

/** A data export as tests read it. */
export interface Export {
  format: string;
  userId: string;
  complete: boolean;
  [section: string]: unknown;
}

/** A seeded user with a client presenting their key. */
export async function seedClient(
  world: { readonly operator: ApiClient; readonly url: string },
  options: { readonly tenantId: string; readonly role: string; readonly email?: string },
) {
  const user = await seedUser(world.operator, options);
  return { ...user, client: apiClient(world.url, user.secret) };
}

/** The caller's data export (asserted 200). */
export async function exportOf(client: ApiClient) {
  const response = await client.get<Export>('/v1/me/export');
  expect(response.status).toBe(200);
  return response;
}

async function asOwner<T>(databaseUrl: string, work: (client: pg.Client) => Promise<T>) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Stores a long-term memory entry for a user directly, as the cluster owner. */
export function rememberFor(
  databaseUrl: string,
  entry: { readonly tenantId: string; readonly userId: string; readonly value: string },
): Promise<unknown> {
  return asOwner(databaseUrl, (client) =>
    client.query(
      `insert into brigade.memories (tenant_id, user_id, key, value)
       values ($1, $2, 'favourite', $3::jsonb)`,
      [entry.tenantId, entry.userId, JSON.stringify(entry.value)],
    ),
  );
}

/** Rows of the user's left in each table, read as the cluster owner (no row-level security). */
export function remnantsOf(databaseUrl: string, userId: string): Promise<Record<string, number>> {
  return asOwner(databaseUrl, async (client) => {
    const counts: Record<string, number> = {};
    for (const table of [
      'users',
      'memberships',
      'api_keys',
      'threads',
      'messages',
      'runs',
      'run_events',
      'run_steps',
      'run_queue',
      'consents',
      'credentials',
      'vault_user_keys',
      'spans',
      'memories',
      'usage_records',
    ]) {
      const column = table === 'users' ? 'id' : 'user_id';
      const result = await client.query<{ count: string }>(
        `select count(*) from brigade.${table} where ${column} = $1`,
        [userId],
      );
      counts[table] = Number(result.rows[0]?.count);
    }
    const policies = await client.query<{ count: string }>(
      'select count(*) from brigade.policies where subject_id = $1',
      [userId],
    );
    counts['policies'] = Number(policies.rows[0]?.count);
    return counts;
  });
}

/** The tenant's owners who are not disabled, counted as the cluster owner. */
export function activeOwnersOf(databaseUrl: string, tenantId: string): Promise<number> {
  return asOwner(databaseUrl, async (client) => {
    const result = await client.query<{ count: string }>(
      `select count(*) from brigade.memberships m
         join brigade.users u on u.tenant_id = m.tenant_id and u.id = m.user_id
        where m.tenant_id = $1 and m.role = 'owner' and u.status = 'active'`,
      [tenantId],
    );
    return Number(result.rows[0]?.count);
  });
}

import pg from 'pg';

/* Rows the attack world stores as the database owner: what the API cannot create directly. */

/** Stores an MCP server of `tenantId` as the database owner; the API would probe its URL. */
export async function storeMcpServer(databaseUrl: string, tenantId: string, slug: string) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const result = await client.query<{ id: string }>(
      `insert into brigade.mcp_servers (tenant_id, name, url, auth, risk)
       values ($1, 'tools', $2, '{"credential":"service"}', 'egress') returning id`,
      [tenantId, `https://mcp.${slug}.example/mcp`],
    );
    return result.rows[0]?.id;
  } finally {
    await client.end();
  }
}

/** A long-term memory entry of a user, as a core would have written it. */
export async function storeMemory(databaseUrl: string, user: { tenantId: string; userId: string }) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const result = await client.query<{ id: string }>(
      `insert into brigade.memories (tenant_id, user_id, key, value)
       values ($1, $2, 'favourite', '"private to its user"') returning id`,
      [user.tenantId, user.userId],
    );
    return result.rows[0]?.id;
  } finally {
    await client.end();
  }
}

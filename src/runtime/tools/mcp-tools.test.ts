import { describe, expect, it } from 'vitest';
import type { StoredMcpServer } from '../../domain/tools/mcp-types.ts';
import { createMcpToolProvider, type McpSession } from './mcp-tools.ts';

const claim = { runId: 'r1', tenantId: 't1', userId: 'u1' };

function server(index: number): StoredMcpServer {
  return {
    id: `server-${index}`,
    tenantId: 't1',
    name: `s${index}`,
    risk: 'read',
    transport: 'http',
    url: `https://mcp-${index}.example.com/mcp`,
    createdAt: new Date(0),
  };
}

/** A provider over `count` servers whose fake sessions count the tool listings per URL. */
function provider(count: number, limits: { maxServers?: number; maxChars?: number }) {
  const listed: string[] = [];
  const servers = Array.from({ length: count }, (_, index) => server(index));
  const tools = createMcpToolProvider({
    servers: async () => servers,
    egress: { allowedHosts: [], allowPrivateNetworks: false, resolve: async () => ['8.8.8.8'] },
    resolveCredential: async () => undefined,
    defaultTimeoutMs: 1_000,
    cacheLimits: limits,
    connect: async ({ url }): Promise<McpSession> => ({
      async listTools() {
        listed.push(url.hostname);
        return [{ name: 'echo', description: 'x'.repeat(1_000), inputSchema: { type: 'object' } }];
      },
      callTool: async () => ({ isError: false, content: [] }),
      close: async () => undefined,
    }),
  });
  const use = (index: number) =>
    tools.toolsFor({ claim, actor: undefined, names: [`mcp:s${index}:echo`] });
  return { listed, use };
}

describe('MCP tool lists', () => {
  it('are cached per server, for a bounded number of servers', async () => {
    const { listed, use } = provider(5, { maxServers: 3 });
    expect(await use(0)).toHaveLength(1);
    await use(0);
    expect(listed).toEqual(['mcp-0.example.com']);
    // Tenants register servers at will: each one used must not stay cached for ever.
    for (const index of [1, 2, 3]) await use(index);
    await use(0);
    expect(listed.filter((host) => host === 'mcp-0.example.com')).toHaveLength(2);
  });

  it('are cached up to a budget of characters', async () => {
    // Each list is ~1,100 characters of JSON: two fit in 2,500.
    const { listed, use } = provider(3, { maxChars: 2_500 });
    for (const index of [0, 1, 0, 2, 0]) await use(index);
    expect(listed).toEqual(['mcp-0.example.com', 'mcp-1.example.com', 'mcp-2.example.com']);
    await use(1);
    expect(listed.at(-1)).toBe('mcp-1.example.com');
  });
});

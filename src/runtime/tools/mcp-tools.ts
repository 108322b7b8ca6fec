import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import {
  type McpServerAuth,
  parseMcpToolName,
  type StoredMcpServer,
} from '../../domain/tools/mcp-types.ts';
import type { RunClaim } from '../run-executor.ts';
import { assertEgressAllowed, type EgressPolicy } from './egress-guard.ts';
import type { ToolDefinition } from './tool-registry.ts';

/** One tool as an MCP server lists it. */
export interface McpToolInfo {
  readonly name: string;
  readonly description?: string | undefined;
  readonly inputSchema: Readonly<Record<string, unknown>>;
}

/** What a tool call returned: the server's content parts, and whether it reports an error. */
export interface McpCallResult {
  readonly isError: boolean;
  readonly content: unknown;
  readonly structuredContent?: unknown;
}

/** A connection to one MCP server (the SDK's `Client` behind a minimal interface). */
export interface McpSession {
  listTools(): Promise<McpToolInfo[]>;
  callTool(
    name: string,
    input: Record<string, unknown>,
    options: { readonly signal: AbortSignal; readonly timeoutMs: number },
  ): Promise<McpCallResult>;
  close(): Promise<void>;
}

/** Opens a session to an MCP server (tests may hand in a fake). */
export type McpConnect = (options: {
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
}) => Promise<McpSession>;

/**
 * Connects to a Streamable HTTP MCP server with the SDK: the headers go with every request,
 * redirects are not followed.
 */
export const connectStreamableHttp: McpConnect = async ({ url, headers, signal }) => {
  const client = new Client({ name: 'brigade', version: '0.1.0' });
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { ...headers }, redirect: 'manual' },
  });
  await client.connect(transport, { signal });
  return {
    async listTools() {
      const tools: McpToolInfo[] = [];
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor === undefined ? {} : { cursor }, { signal });
        for (const tool of page.tools) {
          // The gate's Ajv speaks the drafts it knows; a `$schema` naming another one would
          // make the schema fail to compile (and every call be refused as invalid).
          const { $schema: _dialect, ...inputSchema } = tool.inputSchema as Record<string, unknown>;
          tools.push({ name: tool.name, description: tool.description, inputSchema });
        }
        cursor = page.nextCursor;
      } while (cursor !== undefined && tools.length < 1_000);
      return tools;
    },
    async callTool(name, input, options) {
      const result = await client.callTool({ name, arguments: input }, undefined, {
        signal: options.signal,
        timeout: options.timeoutMs,
      });
      return {
        isError: result.isError === true,
        content: result.content,
        ...(result.structuredContent === undefined
          ? {}
          : { structuredContent: result.structuredContent }),
      };
    },
    close: () => client.close(),
  };
};

/** The headers carrying `secret` as `auth` says. */
export function mcpAuthHeaders(auth: McpServerAuth, secret: string): Record<string, string> {
  return auth.header === undefined
    ? { authorization: `Bearer ${secret}` }
    : { [auth.header.toLowerCase()]: secret };
}

/** Text of an MCP error result, for the message the model gets back. */
function errorText(content: unknown): string {
  if (!Array.isArray(content)) return 'The MCP tool failed.';
  const text = content
    .map((part: { type?: unknown; text?: unknown }) =>
      part.type === 'text' && typeof part.text === 'string' ? part.text : '',
    )
    .join('\n')
    .trim();
  return text.length === 0 ? 'The MCP tool failed.' : text;
}

async function withSession<T>(
  connect: McpConnect,
  options: { url: URL; headers: Record<string, string>; signal: AbortSignal },
  work: (session: McpSession) => Promise<T>,
): Promise<T> {
  const session = await connect(options);
  try {
    return await work(session);
  } finally {
    await session.close().catch(() => undefined);
  }
}

/**
 * Lists the tools of a server without credentials, to refuse an unreachable server when it is
 * registered. A server that answers 401 or 403 is reachable (it wants a user's credential).
 */
export async function probeMcpServer(options: {
  readonly url: URL;
  readonly egress: EgressPolicy;
  readonly connect?: McpConnect;
  readonly timeoutMs?: number;
}): Promise<string | undefined> {
  try {
    await assertEgressAllowed(options.url, options.egress);
    await withSession(
      options.connect ?? connectStreamableHttp,
      {
        url: options.url,
        headers: {},
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      },
      (session) => session.listTools(),
    );
    return undefined;
  } catch (error) {
    const message = (error as Error).message;
    if (/\b(401|403)\b|unauthori[sz]ed|forbidden/i.test(message)) return undefined;
    return `the MCP server did not answer: ${message.slice(0, 200)}`;
  }
}

/**
 * The MCP tools of runs: for the `mcp:<server>:<tool>` names an agent lists, the server's tool
 * list (fetched with the run's user's credential, cached per server for `cacheMs`) becomes
 * tool definitions the gate runs like any other — schema (Ajv), risk class from the
 * registration, provenance rules, approvals, quotas and audit. Each call connects with the
 * calling user's own credential (from the gate's credential capability) and checks egress.
 */
export function createMcpToolProvider(options: {
  readonly servers: (claim: RunClaim) => Promise<readonly StoredMcpServer[]>;
  readonly egress: EgressPolicy;
  /** Decrypts a credential of the run's user (the vault; audited there). */
  readonly resolveCredential: (request: {
    readonly claim: RunClaim;
    readonly actor: UserPrincipal | undefined;
    readonly name: string;
    readonly toolName: string;
  }) => Promise<{ readonly secret: string } | undefined>;
  readonly connect?: McpConnect;
  readonly cacheMs?: number;
  readonly listTimeoutMs?: number;
  readonly defaultTimeoutMs: number;
  readonly now?: () => number;
  readonly onListError?: (server: StoredMcpServer, error: Error) => void;
}) {
  const connect = options.connect ?? connectStreamableHttp;
  const cacheMs = options.cacheMs ?? 60_000;
  const now = options.now ?? Date.now;
  const cache = new Map<
    string,
    { readonly at: number; readonly server: string; readonly tools: McpToolInfo[] }
  >();

  async function headersFor(
    server: StoredMcpServer,
    resolve: (name: string) => Promise<{ readonly secret: string } | undefined>,
  ): Promise<Record<string, string>> {
    if (server.auth === undefined) return {};
    const credential = await resolve(server.auth.credential);
    if (credential === undefined)
      throw new Error(
        `You have no credential named '${server.auth.credential}'; add it under /v1/me/credentials.`,
      );
    return mcpAuthHeaders(server.auth, credential.secret);
  }

  async function toolsOf(
    server: StoredMcpServer,
    request: { claim: RunClaim; actor: UserPrincipal | undefined },
  ): Promise<McpToolInfo[]> {
    const key = `${server.tenantId}:${server.id}`;
    const cached = cache.get(key);
    if (cached !== undefined && now() - cached.at < cacheMs) return cached.tools;
    const url = new URL(server.url);
    await assertEgressAllowed(url, options.egress);
    const headers = await headersFor(server, (name) =>
      options.resolveCredential({ ...request, name, toolName: `mcp:${server.name}` }),
    );
    const tools = await withSession(
      connect,
      { url, headers, signal: AbortSignal.timeout(options.listTimeoutMs ?? 10_000) },
      (session) => session.listTools(),
    );
    cache.set(key, { at: now(), server: server.name, tools });
    return tools;
  }

  function definition(server: StoredMcpServer, tool: McpToolInfo): ToolDefinition {
    const url = new URL(server.url);
    return {
      name: `mcp:${server.name}:${tool.name}`,
      description: tool.description ?? `Tool ${tool.name} of MCP server ${server.name}.`,
      inputSchema: tool.inputSchema,
      risk: server.risk,
      kind: 'mcp',
      timeoutMs: options.defaultTimeoutMs,
      async execute(input, context) {
        await assertEgressAllowed(url, options.egress);
        const headers = await headersFor(server, async (name) =>
          context.credentials?.resolve(name),
        );
        const result = await withSession(
          connect,
          { url, headers, signal: context.signal },
          (session) =>
            session.callTool(tool.name, input, {
              signal: context.signal,
              timeoutMs: options.defaultTimeoutMs,
            }),
        );
        if (result.isError) throw new Error(errorText(result.content));
        return result.structuredContent === undefined
          ? { content: result.content }
          : { content: result.content, structuredContent: result.structuredContent };
      },
    };
  }

  return {
    /** Tool definitions for the `mcp:` names in `names` that the tenant's servers offer. */
    async toolsFor(request: {
      readonly claim: RunClaim;
      readonly actor: UserPrincipal | undefined;
      readonly names: readonly string[];
    }): Promise<ToolDefinition[]> {
      const wanted = request.names.flatMap((name) => {
        const parsed = parseMcpToolName(name);
        return parsed === undefined ? [] : [parsed];
      });
      if (wanted.length === 0) return [];
      const servers = await options.servers(request.claim);
      const result: ToolDefinition[] = [];
      for (const server of servers) {
        const names = wanted.filter((item) => item.server === server.name).map((item) => item.tool);
        if (names.length === 0) continue;
        try {
          const tools = await toolsOf(server, request);
          for (const tool of tools)
            if (names.includes(tool.name)) result.push(definition(server, tool));
        } catch (error) {
          // The server's tools are then "not available" to the gate; the model is told so.
          options.onListError?.(server, error as Error);
        }
      }
      return result;
    },
    /** The cached argument schema of `mcp:<server>:<tool>` (re-validating edited approvals). */
    schemaOf(tenantId: string, toolName: string) {
      const parsed = parseMcpToolName(toolName);
      if (parsed === undefined) return undefined;
      for (const [key, entry] of cache)
        if (key.startsWith(`${tenantId}:`) && entry.server === parsed.server)
          return entry.tools.find((candidate) => candidate.name === parsed.tool)?.inputSchema;
      return undefined;
    },
    /** Forgets a server's cached tool list (deleted or changed). */
    forget(tenantId: string, serverId: string) {
      cache.delete(`${tenantId}:${serverId}`);
    },
  };
}

/** The MCP tool provider's type. */
export type McpToolProvider = ReturnType<typeof createMcpToolProvider>;

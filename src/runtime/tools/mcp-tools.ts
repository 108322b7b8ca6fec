import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { UserPrincipal } from '../../domain/identity/principal.ts';
import { maxJsonDepth, valueNestingExceeds } from '../../domain/json-depth.ts';
import { canonicalJson } from '../../domain/tools/arguments-hash.ts';
import {
  type McpServerAuth,
  parseMcpToolName,
  type StoredMcpServer,
} from '../../domain/tools/mcp-types.ts';
import type { RunClaim } from '../run-executor.ts';
import { cappedFetch } from './capped-fetch.ts';
import { assertEgressAllowed, type EgressPolicy } from './egress-guard.ts';
import { type McpSession, type McpToolInfo, sessionOf } from './mcp-session.ts';
import type { McpStdioPool } from './mcp-stdio-pool.ts';
import { sliceChars } from './read-capped.ts';
import type { ToolDefinition } from './tool-registry.ts';

export type { McpCallResult, McpSession, McpToolInfo } from './mcp-session.ts';

/** Opens a session to an MCP server (tests may hand in a fake). */
export type McpConnect = (options: {
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
}) => Promise<McpSession>;

/** The longest description of an MCP tool a model is given (longer ones are cut). */
export const maxMcpDescriptionChars = 2_000;

/** The most one HTTP response of an MCP server may carry (as a stdio server's message). */
export const maxMcpResponseBytes = 4 * 1024 * 1024;

/**
 * Connects to a Streamable HTTP MCP server with the SDK: the headers go with every request,
 * redirects are not followed, and a response body (a JSON answer, or an event stream, which
 * the SDK buffers event by event) fails past {@link maxMcpResponseBytes}.
 */
export const connectStreamableHttp: McpConnect = async ({ url, headers, signal }) => {
  const client = new Client({ name: 'brigade', version: '0.1.0' });
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { ...headers }, redirect: 'manual' },
    fetch: cappedFetch(maxMcpResponseBytes),
  });
  await client.connect(transport, { signal });
  return sessionOf(client);
};

/**
 * The length of `value` as JSON; infinite when it cannot be serialised (a schema nested deep
 * enough to exhaust the stack, as a hostile server may list: such a list is never cached).
 */
function jsonLength(value: unknown): number {
  try {
    return JSON.stringify(value).length;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

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
    const signal = AbortSignal.timeout(options.timeoutMs ?? 10_000);
    await withSession(
      options.connect ?? connectStreamableHttp,
      { url: options.url, headers: {}, signal },
      (session) => session.listTools({ signal }),
    );
    return undefined;
  } catch (error) {
    const message = (error as Error).message;
    // The SDK's HTTP errors carry the status as `code` (a 401 without WWW-Authenticate says
    // only the body's text); its own UnauthorizedError says "Unauthorized".
    const status = (error as { code?: unknown }).code;
    if (status === 401 || status === 403) return undefined;
    if (/\b(401|403)\b|unauthori[sz]ed|forbidden/i.test(message)) return undefined;
    // A reply that is not MCP fails the SDK's schema check, whose message is a JSON dump.
    if (/^\s*[[{]/.test(message) || /invalid_union|invalid_type/.test(message))
      return 'the endpoint answered, but not as an MCP server (its reply is not a JSON-RPC response of MCP)';
    return `the MCP server did not answer: ${message.replace(/\s+/g, ' ').slice(0, 200)}`;
  }
}

/** Decrypts a credential of the calling user by name (undefined: they have none). */
type CredentialLookup = (
  name: string,
  destination: URL | undefined,
) => Promise<{ readonly secret: string } | undefined>;

/**
 * The MCP tools of runs: for the `mcp:<server>:<tool>` names an agent lists, the server's tool
 * list (fetched with the run's user's credential, cached per server for `cacheMs`) becomes
 * tool definitions the gate runs like any other — schema (Ajv), risk class from the
 * registration, provenance rules, approvals, quotas and audit. Each call reaches the server
 * with the calling user's own credential (from the gate's credential capability): over HTTP
 * in a header (egress checked at every call), or for a stdio server by the user's own process
 * from the pool, started with the credential in the variable the operator declared.
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
    readonly destination: URL | undefined;
  }) => Promise<{ readonly secret: string } | undefined>;
  readonly connect?: McpConnect;
  /** The operator's stdio servers' processes; absent: stdio servers' tools are unavailable. */
  readonly stdio?: McpStdioPool | undefined;
  readonly cacheMs?: number;
  /**
   * Tool lists kept per process: the servers (default 1,000) and characters of JSON (default
   * 32 Mi) at most, least recently used dropped first. Every tenant registers servers at will
   * and a server lists up to 1,000 tools of any size: a list per server ever used, kept for
   * the process's life (also after the server was deleted through another process), grew
   * without bound. A dropped list is fetched again on its next use.
   */
  readonly cacheLimits?: { readonly maxServers?: number; readonly maxChars?: number };
  readonly listTimeoutMs?: number;
  readonly defaultTimeoutMs: number;
  readonly now?: () => number;
  readonly onListError?: (server: StoredMcpServer, error: Error) => void;
}) {
  const connect = options.connect ?? connectStreamableHttp;
  const cacheMs = options.cacheMs ?? 60_000;
  const now = options.now ?? Date.now;
  /** Tool lists by `<tenant>:<server id>`, least recently used first (see {@link cacheLimits}). */
  const cache = new Map<
    string,
    {
      readonly at: number;
      readonly server: string;
      readonly tools: McpToolInfo[];
      readonly chars: number;
    }
  >();
  let cachedChars = 0;
  const maxEntries = options.cacheLimits?.maxServers ?? 1_000;
  const maxChars = options.cacheLimits?.maxChars ?? 32 * 1024 * 1024;

  function uncache(key: string): void {
    const entry = cache.get(key);
    if (entry === undefined) return;
    cache.delete(key);
    cachedChars -= entry.chars;
  }

  /**
   * Keeps `tools` as the server's list, dropping the least recently used lists while more
   * servers or characters of JSON than the limits are held. A list larger than the whole
   * budget is not kept.
   */
  function remember(key: string, entry: { server: string; tools: McpToolInfo[] }): void {
    uncache(key);
    const chars = jsonLength(entry.tools);
    if (chars > maxChars) return;
    cache.set(key, { ...entry, at: now(), chars });
    cachedChars += chars;
    for (const oldest of cache.keys()) {
      if (cache.size <= maxEntries && cachedChars <= maxChars) break;
      uncache(oldest);
    }
  }

  async function secretFor(server: StoredMcpServer, resolve: CredentialLookup) {
    if (server.auth === undefined) return undefined;
    const destination = server.transport === 'stdio' ? undefined : new URL(server.url);
    const credential = await resolve(server.auth.credential, destination);
    if (credential === undefined)
      throw new Error(
        `You have no credential named '${server.auth.credential}'; add it under /v1/me/credentials.`,
      );
    return credential.secret;
  }

  /** Runs `work` on a session with `server` as the claim's user, with their credential. */
  async function useServer<T>(
    server: StoredMcpServer,
    request: { claim: RunClaim; resolve: CredentialLookup; signal: AbortSignal },
    work: (session: McpSession) => Promise<T>,
  ): Promise<T> {
    if (server.transport === 'stdio') {
      const pool = options.stdio;
      if (pool?.declared(server.command) === undefined)
        throw new Error(`The stdio MCP server '${server.command}' is no longer declared.`);
      return pool.withSession(
        {
          tenantId: server.tenantId,
          userId: request.claim.userId,
          serverId: server.id,
          command: server.command,
          credential: server.auth?.credential,
          readSecret: () => secretFor(server, request.resolve),
        },
        work,
        request.signal,
      );
    }
    const url = new URL(server.url);
    await assertEgressAllowed(url, options.egress);
    const secret = await secretFor(server, request.resolve);
    const headers =
      server.auth === undefined || secret === undefined ? {} : mcpAuthHeaders(server.auth, secret);
    return withSession(connect, { url, headers, signal: request.signal }, work);
  }

  function timeoutOf(server: StoredMcpServer): number {
    return server.transport === 'stdio'
      ? (options.stdio?.declared(server.command)?.timeoutMs ?? options.defaultTimeoutMs)
      : options.defaultTimeoutMs;
  }

  async function toolsOf(
    server: StoredMcpServer,
    request: {
      claim: RunClaim;
      actor: UserPrincipal | undefined;
      signal?: AbortSignal | undefined;
    },
  ): Promise<McpToolInfo[]> {
    const key = `${server.tenantId}:${server.id}`;
    const cached = cache.get(key);
    if (cached !== undefined && now() - cached.at < cacheMs) {
      cache.delete(key);
      cache.set(key, cached);
      return cached.tools;
    }
    const timeout = AbortSignal.timeout(
      server.transport === 'stdio' ? timeoutOf(server) : (options.listTimeoutMs ?? 10_000),
    );
    const signal =
      request.signal === undefined ? timeout : AbortSignal.any([request.signal, timeout]);
    const tools = await useServer(
      server,
      {
        claim: request.claim,
        signal,
        resolve: (name, destination) =>
          options.resolveCredential({
            claim: request.claim,
            actor: request.actor,
            name,
            toolName: `mcp:${server.name}`,
            destination,
          }),
      },
      (session) => session.listTools({ signal }),
    );
    remember(key, { server: server.name, tools });
    return tools;
  }

  function definition(server: StoredMcpServer, tool: McpToolInfo, claim: RunClaim): ToolDefinition {
    const timeoutMs = timeoutOf(server);
    return {
      name: `mcp:${server.name}:${tool.name}`,
      // As long as a tenant's own tool's may be: a server's text reaches every run's prompt.
      description: sliceChars(
        tool.description ?? `Tool ${tool.name} of MCP server ${server.name}.`,
        maxMcpDescriptionChars,
      ),
      inputSchema: tool.inputSchema,
      risk: server.risk,
      kind: 'mcp',
      timeoutMs,
      // The whole registration (id, address or command, credential, risk): a server deleted
      // and registered again under its name elsewhere is another tool to an approval.
      definitionDigest: createHash('sha256').update(canonicalJson(server)).digest('hex'),
      async execute(input, context) {
        const result = await useServer(
          server,
          {
            claim,
            signal: context.signal,
            resolve: async (name, destination) => context.credentials?.resolve(name, destination),
          },
          (session) => session.callTool(tool.name, input, { signal: context.signal, timeoutMs }),
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
      /** The run's: a cancelled run lists nothing (and starts no stdio process). */
      readonly signal?: AbortSignal | undefined;
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
          for (const tool of tools) {
            if (!names.includes(tool.name)) continue;
            // A schema nested this deep (a few KB from a hostile or broken server) would
            // exhaust the stack of everything that serialises the run's tools, failing every
            // run of the agent: the tool is left out instead, like one the server does not list.
            if (valueNestingExceeds(tool.inputSchema)) {
              options.onListError?.(
                server,
                new Error(
                  `the input schema of '${tool.name}' nests deeper than ${maxJsonDepth} levels; the tool is left out`,
                ),
              );
              continue;
            }
            result.push(definition(server, tool, request.claim));
          }
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
      uncache(`${tenantId}:${serverId}`);
    },
  };
}

/** The MCP tool provider's type. */
export type McpToolProvider = ReturnType<typeof createMcpToolProvider>;

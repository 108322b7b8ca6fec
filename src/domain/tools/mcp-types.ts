import type { ToolRisk } from './tool-types.ts';

/** How an MCP server call presents the calling user's credential. */
export interface McpServerAuth {
  /** Name of a credential of the calling user (or a tenant-shared one of that name). */
  readonly credential: string;
  /** The header carrying the secret; absent: `Authorization: Bearer <secret>`. */
  readonly header?: string | undefined;
}

/** How Brigade reaches an MCP server. */
export type McpTransport = 'http' | 'stdio';

/**
 * What an admin registers: a Streamable HTTP MCP server at `url`, or one of the stdio servers
 * the operator declared in the configuration (`command` names the declaration; tenants never
 * choose what runs on the host).
 */
export type McpServerDefinition = {
  /** Lower-case name; agents name its tools `mcp:<name>:<tool>`. */
  readonly name: string;
  readonly auth?: McpServerAuth | undefined;
  /** The risk class of every tool of the server (default `egress`). */
  readonly risk: ToolRisk;
} & (
  | { readonly transport: 'http'; readonly url: string }
  | { readonly transport: 'stdio'; readonly command: string }
);

/** A registered MCP server. */
export type StoredMcpServer = McpServerDefinition & {
  readonly id: string;
  readonly tenantId: string;
  readonly createdAt: Date;
};

/** `mcp:<server>:<tool>`: how agents name an MCP server's tool. */
export const mcpToolNamePattern = /^mcp:([a-z][a-z0-9_-]{0,31}):([A-Za-z0-9_.-]{1,64})$/;

/** Splits `mcp:<server>:<tool>`; undefined for any other name. */
export function parseMcpToolName(name: string): { server: string; tool: string } | undefined {
  const match = mcpToolNamePattern.exec(name);
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return { server: match[1], tool: match[2] };
}

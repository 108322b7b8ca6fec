import type { Client } from '@modelcontextprotocol/sdk/client/index.js';

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
  listTools(options?: { readonly signal?: AbortSignal | undefined }): Promise<McpToolInfo[]>;
  callTool(
    name: string,
    input: Record<string, unknown>,
    options: { readonly signal: AbortSignal; readonly timeoutMs: number },
  ): Promise<McpCallResult>;
  close(): Promise<void>;
}

/** An SDK client (connected over any transport) as an {@link McpSession}. */
export function sessionOf(client: Client): McpSession {
  return {
    async listTools(options = {}) {
      const requestOptions = options.signal === undefined ? {} : { signal: options.signal };
      const tools: McpToolInfo[] = [];
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor === undefined ? {} : { cursor }, requestOptions);
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
}

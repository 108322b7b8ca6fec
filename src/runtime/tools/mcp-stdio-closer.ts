import type { RunSignals } from '../run-signals.ts';
import type { McpStdioPool } from './mcp-stdio-pool.ts';
import type { McpStdioTarget } from './mcp-stdio-target.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A vault credential's name (as the credentials API accepts it). */
const credentialPattern = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * `target` as one item of a NOTIFY payload: `<tenant>/<user>/<credential>/<registration>`, an
 * absent part empty. No part holds `/` or `,` (UUIDs, credential names).
 */
export function encodeMcpStdioTarget(target: McpStdioTarget): string {
  return [target.tenantId, target.userId, target.credential, target.serverId]
    .map((part) => part?.toLowerCase() ?? '')
    .join('/');
}

/** The target `text` encodes; undefined when it is not one (ignored, never "close all"). */
export function parseMcpStdioTarget(text: string): McpStdioTarget | undefined {
  const parts = text.split('/');
  if (parts.length !== 4) return undefined;
  const [tenantId = '', userId = '', credential = '', serverId = ''] = parts;
  if (!uuidPattern.test(tenantId)) return undefined;
  if (userId !== '' && !uuidPattern.test(userId)) return undefined;
  if (serverId !== '' && !uuidPattern.test(serverId)) return undefined;
  if (credential !== '' && !credentialPattern.test(credential)) return undefined;
  return {
    tenantId,
    ...(userId === '' ? {} : { userId }),
    ...(credential === '' ? {} : { credential }),
    ...(serverId === '' ? {} : { serverId }),
  };
}

/**
 * Closes pooled stdio MCP server processes in every Brigade process: here at once, elsewhere
 * through the run signals (a batched NOTIFY on `brigade_mcp_stdio_close`, as an erasure asks
 * the other processes to drop cached answers). A process whose signal connection was lost may
 * have missed a request: when it is back, every process of its pool is recycled (idle ones
 * closed now, busy ones when their call ends).
 */
export function createMcpStdioCloser(options: {
  readonly pool: Pick<McpStdioPool, 'close' | 'recycle'>;
  readonly signals: Pick<
    RunSignals,
    'mcpStdioClosed' | 'onMcpStdioCloseRequested' | 'onReconnected'
  >;
}) {
  const { pool, signals } = options;
  signals.onMcpStdioCloseRequested((text) => {
    const target = parseMcpStdioTarget(text);
    if (target !== undefined) pool.close(target, 'closed by another Brigade process');
  });
  signals.onReconnected(() => pool.recycle('close requests may have been missed'));
  return {
    /** Closes the processes `target` names, in this process and in every other one. */
    close(target: McpStdioTarget, reason: string): void {
      pool.close(target, reason);
      signals.mcpStdioClosed(encodeMcpStdioTarget(target));
    },
  };
}

/** The stdio MCP closer's type. */
export type McpStdioCloser = ReturnType<typeof createMcpStdioCloser>;

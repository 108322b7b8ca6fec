import { describe, expect, it } from 'vitest';
import {
  createMcpStdioCloser,
  encodeMcpStdioTarget,
  parseMcpStdioTarget,
} from './mcp-stdio-closer.ts';
import type { McpStdioTarget } from './mcp-stdio-target.ts';

const tenantId = '0a5e5f3c-1111-4c6b-9a57-3d2f6e1b0c01';
const userId = '0a5e5f3c-2222-4c6b-9a57-3d2f6e1b0c02';
const serverId = '0a5e5f3c-3333-4c6b-9a57-3d2f6e1b0c03';

/** A pool and signals that record what they are asked. */
function fakes() {
  const closed: { target: McpStdioTarget; reason: string }[] = [];
  const recycled: string[] = [];
  const sent: string[] = [];
  let heard: (target: string) => void = () => undefined;
  let reconnected: () => void = () => undefined;
  const closer = createMcpStdioCloser({
    pool: {
      close: (target, reason) => {
        closed.push({ target, reason });
        return 0;
      },
      recycle: (reason) => void recycled.push(reason),
    },
    signals: {
      mcpStdioClosed: (target) => void sent.push(target),
      onMcpStdioCloseRequested: (listener) => {
        heard = listener;
      },
      onReconnected: (listener) => {
        reconnected = listener;
      },
    },
  });
  return {
    closer,
    closed,
    recycled,
    sent,
    hear: (text: string) => heard(text),
    reconnected: () => reconnected(),
  };
}

describe('closing pooled stdio MCP processes in every process', () => {
  it('encodes a target so that the other processes read the same one back', () => {
    for (const target of [
      { tenantId },
      { tenantId, userId },
      { tenantId, userId, credential: 'github.v2_x-y' },
      { tenantId, credential: 'github' },
      { tenantId, serverId },
    ])
      expect(parseMcpStdioTarget(encodeMcpStdioTarget(target))).toEqual(target);
    expect(encodeMcpStdioTarget({ tenantId: tenantId.toUpperCase(), userId })).toBe(
      `${tenantId}/${userId}//`,
    );
  });

  it('ignores a payload that is not a target rather than closing more', () => {
    for (const text of ['', '*', tenantId, `${tenantId}/${userId}`, `not-a-uuid/${userId}//`])
      expect(parseMcpStdioTarget(text)).toBeUndefined();
    expect(parseMcpStdioTarget(`${tenantId}/x/github/`)).toBeUndefined();
    expect(parseMcpStdioTarget(`${tenantId}//GitHub/`)).toBeUndefined();
    const world = fakes();
    world.hear(`${tenantId}/bad//`);
    expect(world.closed).toEqual([]);
  });

  it('closes here at once and asks the other processes to close theirs', () => {
    const world = fakes();
    world.closer.close({ tenantId, userId }, 'the user was disabled');
    expect(world.closed).toEqual([
      { target: { tenantId, userId }, reason: 'the user was disabled' },
    ]);
    expect(world.sent).toEqual([`${tenantId}/${userId}//`]);
  });

  it("closes what another process's request names, and everything once after a reconnect", () => {
    const world = fakes();
    world.hear(`${tenantId}//github/`);
    expect(world.closed.map((entry) => entry.target)).toEqual([{ tenantId, credential: 'github' }]);
    expect(world.sent).toEqual([]);
    world.reconnected();
    expect(world.recycled).toHaveLength(1);
  });
});

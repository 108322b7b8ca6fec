import { createTtlCache } from './ttl-cache.ts';

/** One kill switch as the gate needs it: a tool name, tenant-wide (`agentId` null) or per agent. */
export interface ToolBlockEntry {
  readonly toolName: string;
  readonly agentId: string | null;
}

/** The kill switches in force, as the tool gate reads them at every call. */
export interface ToolBlockCache {
  /** The names of the tools switched off for `agentId`: its own switches and tenant-wide ones. */
  blockedFor(subject: {
    readonly tenantId: string;
    readonly agentId: string;
  }): Promise<ReadonlySet<string>>;
  /** Drops a tenant's entry after a switch was set or lifted in this process. */
  invalidate(tenantId: string): void;
}

/** How long a tenant's kill switches are cached by default, in milliseconds. */
export const toolBlockCacheMs = 2_000;

/**
 * Creates the {@link ToolBlockCache}. The gate checks kill switches before every tool call, so a
 * switch set during an incident stops the next call of every running run; reading them from
 * the database at each call would add a round trip per call, so each process keeps a tenant's
 * switches for `ttlMs` (default {@link toolBlockCacheMs}). A switch set or lifted through this
 * process applies at once here (the tool service calls `invalidate`), and within `ttlMs` in
 * every other process.
 */
export function createToolBlockCache(options: {
  /** Every kill switch of the tenant (read in the tenant's RLS scope). */
  readonly load: (tenantId: string) => Promise<readonly ToolBlockEntry[]>;
  readonly ttlMs?: number;
}): ToolBlockCache {
  const cache = createTtlCache<readonly ToolBlockEntry[]>({
    ttlMs: options.ttlMs ?? toolBlockCacheMs,
  });
  return {
    async blockedFor(subject) {
      const blocks = await cache.get(subject.tenantId, () => options.load(subject.tenantId));
      return new Set(
        blocks
          .filter((block) => block.agentId === null || block.agentId === subject.agentId)
          .map((block) => block.toolName),
      );
    },
    invalidate(tenantId) {
      cache.invalidate(tenantId);
    },
  };
}

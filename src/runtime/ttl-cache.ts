/** A per-key cache of loaded values that live for a fixed time. */
export interface TtlCache<Value> {
  /**
   * The value of `key`: the cached one while it is younger than the cache's `ttlMs`, else
   * what `load` gives (callers asking while a load is in flight share it). A failed load is
   * not cached: the next call tries again.
   */
  get(key: string, load: () => Promise<Value>): Promise<Value>;
  /** Drops `key`'s entry (every entry without a key), so the next `get` loads afresh. */
  invalidate(key?: string): void;
}

/**
 * Creates a {@link TtlCache}: for settings read on a hot path (limits, routes, kill switches)
 * where a change may take up to `ttlMs` to reach other processes and is dropped at once in the
 * process that made it (it calls `invalidate`). At most `maxEntries` keys (default 10,000) are
 * kept; past that the oldest is dropped. Keys must not be user-derived without the tenant or
 * user in them (DESIGN.md invariant 9).
 */
export function createTtlCache<Value>(options: {
  readonly ttlMs: number;
  readonly maxEntries?: number;
}): TtlCache<Value> {
  const { ttlMs } = options;
  const maxEntries = options.maxEntries ?? 10_000;
  const entries = new Map<string, { readonly at: number; readonly value: Promise<Value> }>();
  return {
    get(key, load) {
      const cached = entries.get(key);
      if (cached !== undefined && Date.now() - cached.at < ttlMs) return cached.value;
      const entry = { at: Date.now(), value: load() };
      entries.delete(key);
      entries.set(key, entry);
      // Only this entry: an invalidation or a newer load may have replaced it meanwhile.
      entry.value.catch(() => {
        if (entries.get(key) === entry) entries.delete(key);
      });
      if (entries.size > maxEntries) {
        const oldest = entries.keys().next().value;
        if (oldest !== undefined) entries.delete(oldest);
      }
      return entry.value;
    },
    invalidate(key) {
      if (key === undefined) entries.clear();
      else entries.delete(key);
    },
  };
}

/** A map that keeps only its most recently used entries. */
export interface LruMap<Value> {
  /** The value of `key`, which becomes the most recently used entry. */
  get(key: string): Value | undefined;
  /** Stores `value` as the most recently used entry, dropping the least recently used past the cap. */
  set(key: string, value: Value): Value;
  readonly size: number;
}

/**
 * Creates an {@link LruMap} of at most `maxEntries` entries, for caches whose keys come from
 * requests (model names a client chose), which must not grow with the number of distinct
 * keys a process has seen. A Map keeps insertion order, so re-inserting on a hit makes the
 * entry the newest and the first key is always the least recently used.
 */
export function createLruMap<Value>(maxEntries: number): LruMap<Value> {
  const entries = new Map<string, Value>();
  return {
    get(key) {
      const value = entries.get(key);
      if (value === undefined) return undefined;
      entries.delete(key);
      entries.set(key, value);
      return value;
    },
    set(key, value) {
      entries.delete(key);
      entries.set(key, value);
      if (entries.size > maxEntries) {
        const oldest = entries.keys().next();
        if (oldest.done !== true) entries.delete(oldest.value);
      }
      return value;
    },
    get size() {
      return entries.size;
    },
  };
}

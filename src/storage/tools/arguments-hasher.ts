import {
  deriveArgumentsHashKey,
  keyedArgumentsHash,
  plainArgumentsHash,
} from '../../domain/tools/arguments-hash.ts';
import type { KeyProviderV1 } from '../../plugin-api/index.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import { createVaultKeys } from './vault-keys.ts';

/** How long a tenant's derived hash key is kept in memory, and for how many tenants at most. */
const keyCacheMs = 5 * 60_000;
const keyCacheSize = 1_000;

/** What {@link ArgumentsHasher.hash} receives. */
export interface ArgumentsHashRequest {
  readonly tenantId: string;
  /** The tool call's arguments (any JSON value). */
  readonly value: unknown;
  /**
   * The caller's transaction, scoped to `tenantId`: the tenant's data key is read (and created
   * on first use) there. Without it a transaction in the tenant's scope is opened when the key
   * is not cached.
   */
  readonly db?: ScopedDb | undefined;
}

/**
 * Hashes tool-call arguments for the audit log and approvals: keyed (`hmac-sha256:…`, see
 * {@link keyedArgumentsHash}) when the server has a vault key, the plain SHA-256 otherwise.
 */
export interface ArgumentsHasher {
  /** True when hashes are keyed; false on a server without a vault key. */
  readonly keyed: boolean;
  hash(request: ArgumentsHashRequest): Promise<string>;
}

/** The hasher of a server without a vault key: plain SHA-256, as before hashes were keyed. */
export const unkeyedArgumentsHasher: ArgumentsHasher = {
  keyed: false,
  hash: (request) => Promise.resolve(plainArgumentsHash(request.value)),
};

/**
 * Creates the {@link ArgumentsHasher}. With a key provider, each tenant's hash key is derived
 * (HKDF, its own purpose label) from the tenant's vault data key — the key the provider
 * wraps, created on first use — so it needs no configuration of its own, works with every
 * key source (the embedded key file, `BRIGADE_MASTER_KEY`, a KMS plugin) and survives a
 * master-key rotation (which re-wraps data keys without changing them). Derived keys are
 * cached per process for five minutes. A provider failure fails the hash: it never falls back
 * to the unkeyed form. Without a provider, {@link unkeyedArgumentsHasher}.
 */
export function createArgumentsHasher(options: {
  readonly database: Database;
  readonly keyProvider: KeyProviderV1 | undefined;
}): ArgumentsHasher {
  const { database, keyProvider } = options;
  if (keyProvider === undefined) return unkeyedArgumentsHasher;
  const vault = createVaultKeys(keyProvider);
  const cache = new Map<string, { key: Buffer; expires: number }>();

  async function keyOf(tenantId: string, db: ScopedDb | undefined): Promise<Buffer> {
    const hit = cache.get(tenantId);
    if (hit !== undefined && hit.expires > Date.now()) return hit.key;
    const dataKey =
      db === undefined
        ? await database.withScope({ tenantId }, (scoped) => vault.tenantKey(scoped, tenantId))
        : await vault.tenantKey(db, tenantId);
    const key = deriveArgumentsHashKey(dataKey, tenantId);
    // Read in the caller's transaction, the data key may have been created there and be rolled
    // back with it: only a key read in a transaction of its own (committed) is cached.
    if (db !== undefined) return key;
    cache.delete(tenantId);
    cache.set(tenantId, { key, expires: Date.now() + keyCacheMs });
    if (cache.size > keyCacheSize) cache.delete(cache.keys().next().value ?? '');
    return key;
  }

  return {
    keyed: true,
    async hash(request) {
      return keyedArgumentsHash(await keyOf(request.tenantId, request.db), request.value);
    },
  };
}

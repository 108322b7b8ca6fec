import {
  createDataRightsService,
  type DataRightsService,
} from './domain/identity/data-rights-service.ts';
import { cacheKeyPrefix, type ResponseCacheStore } from './gateway/response-cache-store.ts';
import type { RunSignals } from './runtime/run-signals.ts';
import { createDataRightsStore } from './storage/identity/data-rights-store.ts';
import type { Database } from './storage/postgres/database.ts';

/**
 * The data subject's rights (export and erasure): the erasure ends the user's access as
 * disabling them does (`endAccess`: their runs cancelled and their stdio MCP server processes
 * closed, wherever they are) and drops their cached model answers and the tenant's shared
 * ones (`responseCache`, and every other process's copies of them, asked through `signals`).
 */
export function composeDataRights(options: {
  readonly database: Database;
  readonly signals: RunSignals;
  readonly responseCache: ResponseCacheStore;
  readonly endAccess: Parameters<typeof createDataRightsService>[0]['endAccess'];
}): DataRightsService {
  const { database, signals, responseCache } = options;
  // Another process's erasure purged the shared store (Redis) and its own memory: drop this
  // process's copies too.
  signals.onCachePurgeRequested((prefix) => void responseCache.purgeLocal(prefix));
  // A purge requested while this process was not listening went unheard: drop every copy
  // (the shared store still has what was not purged).
  signals.onReconnected(() => void responseCache.purgeLocal(''));
  const purge = async (prefix: string) => {
    await responseCache.purge(prefix);
    signals.cachePurged(prefix);
  };
  return createDataRightsService({
    store: createDataRightsStore(database),
    endAccess: options.endAccess,
    // The tenant's shared answers go too: an entry there may be an answer to this user's
    // prompt (whose it was is not recorded), and the cache is only an optimisation.
    purgeCache: async ({ tenantId, userId }) => {
      await purge(cacheKeyPrefix(tenantId, userId));
      await purge(cacheKeyPrefix(tenantId, null));
    },
  });
}

import {
  createDataRightsService,
  type DataRightsService,
} from './domain/identity/data-rights-service.ts';
import { cacheKeyPrefix, type ResponseCacheStore } from './gateway/response-cache-store.ts';
import { createDataRightsStore } from './storage/identity/data-rights-store.ts';
import type { Database } from './storage/postgres/database.ts';
import { cancelRunsOf } from './storage/runs/run-cancellation.ts';
import type { RunSignalSink } from './storage/runs/run-rows.ts';

/**
 * The data subject's rights (export and erasure): the erasure cancels the user's runs wherever
 * they execute (`signals`) and drops their cached model answers and the tenant's shared ones
 * (`responseCache`).
 */
export function composeDataRights(options: {
  readonly database: Database;
  readonly signals: RunSignalSink;
  readonly responseCache: ResponseCacheStore;
}): DataRightsService {
  const { database, signals, responseCache } = options;
  return createDataRightsService({
    store: createDataRightsStore(database),
    endAccess: (subject) => cancelRunsOf(database, signals, subject),
    // The tenant's shared answers go too: an entry there may be an answer to this user's
    // prompt (whose it was is not recorded), and the cache is only an optimisation.
    purgeCache: async ({ tenantId, userId }) => {
      await responseCache.purge(cacheKeyPrefix(tenantId, userId));
      await responseCache.purge(cacheKeyPrefix(tenantId, null));
    },
  });
}

import type { IdentityStore } from '../../domain/identity/identity-ports.ts';
import type { Database } from '../postgres/database.ts';
import { createKeyStore } from './key-store.ts';
import { createTenantUserStore } from './tenant-user-store.ts';

/** The PostgreSQL {@link IdentityStore}: every call is one scoped, RLS-enforced transaction. */
export function createIdentityStore(database: Database): IdentityStore {
  return { ...createTenantUserStore(database), ...createKeyStore(database) };
}

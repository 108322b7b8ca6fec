import type { IdentityStore } from '../../domain/identity/identity-ports.ts';
import type { Database } from '../postgres/database.ts';
import type { TenantCapacity } from '../postgres/tenant-capacity.ts';
import { createKeyStore } from './key-store.ts';
import { createTenantUserStore } from './tenant-user-store.ts';

/** The PostgreSQL {@link IdentityStore}: every call is one scoped, RLS-enforced transaction. */
export function createIdentityStore(database: Database, capacity?: TenantCapacity): IdentityStore {
  return { ...createTenantUserStore(database), ...createKeyStore(database, capacity) };
}

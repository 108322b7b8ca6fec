import type { Principal } from '../../domain/identity/principal.ts';
import type { DatabaseScope } from '../postgres/scope.ts';

/**
 * The database scope for `principal` acting in `tenantId`. A user is always scoped to its own
 * tenant: a foreign `tenantId` is ignored, so RLS returns nothing rather than another tenant's
 * rows. The operator may act in any tenant with administrator rights over identity records.
 */
export function scopeFor(principal: Principal, tenantId?: string): DatabaseScope {
  if (principal.kind === 'operator') {
    return { operator: true, tenantId, tenantAdmin: tenantId !== undefined };
  }
  return {
    tenantId: principal.tenantId,
    userId: principal.userId,
    tenantAdmin: principal.role === 'owner' || principal.role === 'admin',
  };
}

/** The scope the system itself uses inside one tenant (authentication, provisioning). */
export function systemScope(tenantId: string): DatabaseScope {
  return { tenantId, tenantAdmin: true };
}

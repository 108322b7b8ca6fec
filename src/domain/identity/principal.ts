import { ForbiddenError } from '../errors.ts';
import { type Action, type Role, rolePermissions } from './permissions.ts';

/** The platform operator: manages tenants; sees no tenant content beyond tenant records. */
export interface OperatorPrincipal {
  readonly kind: 'operator';
}

/** A user of one tenant, authenticated by an API key or a tenant's OIDC provider. */
export interface UserPrincipal {
  readonly kind: 'user';
  readonly tenantId: string;
  readonly userId: string;
  readonly role: Role;
  /** The API key used, or undefined for a JWT login. */
  readonly keyId: string | undefined;
  /** Scopes of the API key; undefined means every action of the role. */
  readonly scopes: readonly Action[] | undefined;
  readonly authMethod: 'api_key' | 'jwt';
}

/** Who is asking. Identity comes only from a verified credential (DESIGN.md invariant 2). */
export type Principal = OperatorPrincipal | UserPrincipal;

/** The actions a user principal may perform: its role's actions, narrowed by its key's scopes. */
export function permittedActions(principal: UserPrincipal): readonly Action[] {
  const granted = rolePermissions[principal.role];
  const scopes = principal.scopes;
  return scopes === undefined ? granted : granted.filter((action) => scopes.includes(action));
}

/** True when the principal may perform the action (operators may do every tenant action). */
export function can(principal: Principal, action: Action): boolean {
  return principal.kind === 'operator' || permittedActions(principal).includes(action);
}

/** Throws {@link ForbiddenError} unless the principal may perform the action. */
export function assertCan(principal: Principal, action: Action): void {
  if (!can(principal, action)) {
    throw new ForbiddenError(`This credential is not permitted to perform '${action}'.`);
  }
}

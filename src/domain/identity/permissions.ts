/** Roles a user can hold in a tenant, from most to least powerful. */
export const roles = ['owner', 'admin', 'member', 'viewer'] as const;

/** A tenant role. */
export type Role = (typeof roles)[number];

/**
 * Every action a permission check can ask about. API key scopes are drawn from this list.
 * `key:manage-own` creates, rotates, lists and revokes one's own keys; `key:review-own` only
 * lists and revokes them, and every role has it: whoever may mint a key for a user can act as
 * them, and the user must be able to see such a key and end it.
 */
export const actions = [
  'tenant:read',
  'tenant:update',
  'user:read',
  'user:manage',
  'user:manage-owners',
  'key:manage-own',
  'key:review-own',
  'key:manage-any',
  'oidc:read',
  'oidc:manage',
  'agent:read',
  'agent:manage',
  'thread:read',
  'thread:write',
  'audit:read',
  'policy:read',
  'policy:manage',
  'usage:read-any',
  'route:manage',
  'consent:manage-own',
  'tool:manage',
  'credential:manage-own',
  'memory:manage-own',
  'account:export-own',
  'account:delete-own',
  'profile:update-own',
] as const;

/** An action that may be permitted to a role. */
export type Action = (typeof actions)[number];

/**
 * The one table mapping roles to permitted actions. Every permission check in Brigade reads
 * this table (intersected with an API key's scopes); nothing else grants rights to a user.
 */
export const rolePermissions: Readonly<Record<Role, readonly Action[]>> = {
  owner: [
    'tenant:read',
    'tenant:update',
    'user:read',
    'user:manage',
    'user:manage-owners',
    'key:manage-own',
    'key:review-own',
    'key:manage-any',
    'oidc:read',
    'oidc:manage',
    'agent:read',
    'agent:manage',
    'thread:read',
    'thread:write',
    'audit:read',
    'policy:read',
    'policy:manage',
    'usage:read-any',
    'route:manage',
    'consent:manage-own',
    'tool:manage',
    'credential:manage-own',
    'memory:manage-own',
    'account:export-own',
    'account:delete-own',
    'profile:update-own',
  ],
  admin: [
    'tenant:read',
    'user:read',
    'user:manage',
    'key:manage-own',
    'key:review-own',
    'key:manage-any',
    'oidc:read',
    'agent:read',
    'agent:manage',
    'thread:read',
    'thread:write',
    'audit:read',
    'policy:read',
    'policy:manage',
    'usage:read-any',
    'route:manage',
    'consent:manage-own',
    'tool:manage',
    'credential:manage-own',
    'memory:manage-own',
    'account:export-own',
    'account:delete-own',
    'profile:update-own',
  ],
  member: [
    'tenant:read',
    'key:manage-own',
    'key:review-own',
    'agent:read',
    'thread:read',
    'thread:write',
    'consent:manage-own',
    'credential:manage-own',
    'memory:manage-own',
    'account:export-own',
    'account:delete-own',
    'profile:update-own',
  ],
  viewer: [
    'tenant:read',
    'key:review-own',
    'agent:read',
    'thread:read',
    'consent:manage-own',
    'memory:manage-own',
    'account:export-own',
    'account:delete-own',
    'profile:update-own',
  ],
};

/**
 * Roles only an owner (or the operator) may change, whose keys only an owner may manage, and
 * whom only an owner may erase or bind with a policy: owners, and admins (so no admin lifts a
 * limit an owner set on admins, their own included).
 */
export function isProtectedRole(role: Role): boolean {
  return role === 'owner' || role === 'admin';
}

/** True when `role` is at least as powerful as `other`. */
export function isRoleAtLeast(role: Role, other: Role): boolean {
  return roles.indexOf(role) <= roles.indexOf(other);
}

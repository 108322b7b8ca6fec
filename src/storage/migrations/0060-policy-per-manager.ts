/**
 * One policy per target *per manager*: the operator's policy and the tenant's on the same
 * target (the tenant, a role, a user, a key, an agent) may both exist, and both bind.
 *
 * With one policy per target, the operator's and the tenant's controls excluded each other: an
 * admin who set a loose policy on a target first kept the operator from limiting it there
 * (409), and the operator's only way in, editing the tenant's policy, left the result the
 * tenant's, so an admin could raise or delete the operator's limit again. Every check already
 * takes every binding policy and counts each under its own id (`binding_limits`, the request
 * limiter, the run scheduler's `min`), so two policies on one target are two counters, and the
 * tightest wins. The index keeps one per manager, so a second of the same manager is still a
 * `409 conflict`.
 */
export function policyPerManagerMigration(): string {
  return `
drop index brigade.policies_target;
create unique index policies_target on brigade.policies (
  coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), level,
  coalesce(role, ''), coalesce(subject_id, '00000000-0000-0000-0000-000000000000'::uuid),
  managed_by);
`;
}

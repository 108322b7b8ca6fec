/**
 * An approval binds to the rules the call was gated by, not only to its arguments: the tool's
 * policy version (`toolPolicyVersion`: its definition — URL, method, authentication, schema,
 * risk, rules — and whether the agent requires approval) when the approval was requested. An
 * owner or admin who edits the tool while the approval waits (another endpoint, say) would
 * otherwise have the user's approval of the old call carry out the new one. A call whose
 * version changed is refused when the run resumes (`approval_outdated`); the model may call
 * again, which asks anew. Null for approvals requested before this migration (not checked).
 */
export const approvalPolicyVersionMigration = `
alter table brigade.approvals add column policy_version text;
`;

import type { Action } from '../../domain/identity/permissions.ts';
import { assertCan, can, type UserPrincipal } from '../../domain/identity/principal.ts';

/** What `createChatCompletion` needs of a key for `local`, a route or `<provider>:<model>`. */
const modelActions: readonly Action[] = ['thread:write'];

/**
 * What it needs for `agent:<name>`: it also looks the agent up by name and follows the run's
 * events in the new thread, as the threads API would.
 */
const agentActions: readonly Action[] = ['thread:write', 'agent:read', 'thread:read'];

/**
 * The kinds of `model` a key may call, by its role and scopes: `models` (`local`, routes,
 * provider models) and `agents` (`agent:<name>`). The models API lists only these, so a key
 * that could call none (a viewer's, or one scoped to `agent:read`) lists nothing.
 */
export function modelAccess(user: UserPrincipal): {
  readonly models: boolean;
  readonly agents: boolean;
} {
  return {
    models: modelActions.every((action) => can(user, action)),
    agents: agentActions.every((action) => can(user, action)),
  };
}

/**
 * Throws `forbidden` unless the key may call `model` (an agent name when `agent` is true),
 * before anything is created: an agent completion refused only once its run had started would
 * still run the agent, and bill it.
 */
export function assertMayCall(user: UserPrincipal, agent: boolean): void {
  for (const action of agent ? agentActions : modelActions) assertCan(user, action);
}

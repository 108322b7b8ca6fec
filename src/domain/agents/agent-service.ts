import { ForbiddenError, NotFoundError } from '../errors.ts';
import type { Page, PageRequest } from '../identity/identity-ports.ts';
import { assertCan, type Principal, type UserPrincipal } from '../identity/principal.ts';
import type { Agent, AgentInput } from './agent-types.ts';

/** Persistence of agents (tenant-wide; admins write, members read), scoped by the principal. */
export interface AgentStore {
  create(principal: UserPrincipal, input: AgentInput): Promise<Agent>;
  list(principal: UserPrincipal, page: PageRequest): Promise<Page<Agent>>;
  get(principal: UserPrincipal, agentId: string): Promise<Agent | undefined>;
  update(
    principal: UserPrincipal,
    agentId: string,
    patch: Partial<AgentInput>,
  ): Promise<Agent | undefined>;
  delete(principal: UserPrincipal, agentId: string): Promise<boolean>;
}

/** Checks that the model and tools an agent names exist, before it is saved. */
export interface AgentValidator {
  /** Throws when the input names a model (for `tenantId`), tool or core that does not exist. */
  validate(input: Partial<AgentInput>, tenantId: string): Promise<void>;
}

/** Agent use cases. */
export interface AgentService {
  create(principal: Principal, input: AgentInput): Promise<Agent>;
  list(principal: Principal, page: PageRequest): Promise<Page<Agent>>;
  get(principal: Principal, agentId: string): Promise<Agent>;
  update(principal: Principal, agentId: string, patch: Partial<AgentInput>): Promise<Agent>;
  delete(principal: Principal, agentId: string): Promise<void>;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Narrows a principal to a tenant user; the operator has no tenant content. */
export function asTenantUser(principal: Principal): UserPrincipal {
  if (principal.kind !== 'user') {
    throw new ForbiddenError(
      'This operation needs a tenant user credential; the operator key has no tenant.',
    );
  }
  return principal;
}

function agentNotFound(): NotFoundError {
  return new NotFoundError('agent_not_found', 'Agent not found.');
}

/** Creates the {@link AgentService}. */
export function createAgentService(options: {
  store: AgentStore;
  validator: AgentValidator;
}): AgentService {
  const { store, validator } = options;
  return {
    async create(principal, input) {
      const user = asTenantUser(principal);
      assertCan(user, 'agent:manage');
      await validator.validate(input, user.tenantId);
      return store.create(user, input);
    },
    async list(principal, page) {
      const user = asTenantUser(principal);
      assertCan(user, 'agent:read');
      return store.list(user, page);
    },
    async get(principal, agentId) {
      const user = asTenantUser(principal);
      assertCan(user, 'agent:read');
      if (!uuidPattern.test(agentId)) throw agentNotFound();
      const agent = await store.get(user, agentId);
      if (agent === undefined) throw agentNotFound();
      return agent;
    },
    async update(principal, agentId, patch) {
      const user = asTenantUser(principal);
      assertCan(user, 'agent:manage');
      if (!uuidPattern.test(agentId)) throw agentNotFound();
      await validator.validate(patch, user.tenantId);
      const agent = await store.update(user, agentId, patch);
      if (agent === undefined) throw agentNotFound();
      return agent;
    },
    async delete(principal, agentId) {
      const user = asTenantUser(principal);
      assertCan(user, 'agent:manage');
      if (!uuidPattern.test(agentId) || !(await store.delete(user, agentId))) throw agentNotFound();
    },
  };
}

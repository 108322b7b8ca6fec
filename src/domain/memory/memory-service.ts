import { asTenantUser } from '../agents/agent-service.ts';
import { NotFoundError, ValidationError } from '../errors.ts';
import type { Page } from '../identity/identity-ports.ts';
import { assertCan, type Principal, type UserPrincipal } from '../identity/principal.ts';
import type { MemoryEntry, MemoryFilter, MemoryStore } from './memory-types.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function owner(principal: Principal): UserPrincipal {
  const user = asTenantUser(principal);
  assertCan(user, 'memory:manage-own');
  return user;
}

function checkFilter(filter: MemoryFilter): void {
  if (filter.threadId !== undefined && filter.scope !== undefined && filter.scope !== 'thread')
    throw new ValidationError([
      { path: 'query.threadId', message: 'a thread filter goes with scope=thread (or no scope)' },
    ]);
}

/**
 * What agents remember about a user, for that user alone: list it, delete one entry, clear a
 * namespace. Memory is user-owned like threads: admins and the operator never read a member's
 * (row-level security scopes every query to the caller).
 */
export function createMemoryService(options: { readonly store: MemoryStore }) {
  const { store } = options;
  return {
    /** The caller's memories in id order, optionally of one scope or one thread. */
    list(
      principal: Principal,
      query: MemoryFilter & { readonly limit: number; readonly after?: string | undefined },
    ): Promise<Page<MemoryEntry>> {
      const user = owner(principal);
      checkFilter(query);
      return store.listOwn(user, query);
    },
    /** Deletes one of the caller's memories (404 `memory_not_found` for any other id). */
    async delete(principal: Principal, memoryId: string): Promise<void> {
      const user = owner(principal);
      if (!uuidPattern.test(memoryId) || !(await store.deleteOwn(user, memoryId)))
        throw new NotFoundError('memory_not_found', 'Memory not found.');
    },
    /** Deletes the caller's memories of a scope (`all` for every one) or of a thread. */
    clear(principal: Principal, filter: MemoryFilter): Promise<number> {
      const user = owner(principal);
      checkFilter(filter);
      if (filter.scope === undefined && filter.threadId === undefined)
        throw new ValidationError([
          { path: 'query', message: 'name what to clear: scope=user|thread|all or threadId' },
        ]);
      return store.clearOwn(user, filter);
    },
  };
}

/** The memory use cases of the API. */
export type MemoryService = ReturnType<typeof createMemoryService>;

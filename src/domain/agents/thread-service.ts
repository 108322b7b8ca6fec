import { NotFoundError } from '../errors.ts';
import type { Page, PageRequest } from '../identity/identity-ports.ts';
import { assertCan, type Principal, type UserPrincipal } from '../identity/principal.ts';
import { asTenantUser } from './agent-service.ts';
import type {
  ConcurrencyStrategy,
  Message,
  Run,
  RunEvent,
  RunPriority,
  RunStep,
  Thread,
} from './agent-types.ts';

/** A thread to create, optionally with the conversation so far (no run's messages). */
export interface NewThread {
  readonly title: string | null;
  readonly metadata: Record<string, unknown>;
  readonly messages?: readonly Pick<Message, 'role' | 'content' | 'provenance'>[] | undefined;
}

/** Persistence the thread and run use cases need (implemented in storage/). */
export interface ThreadRunPorts {
  readonly threads: {
    /** Creates a thread, with `messages` (earlier conversation, in order) when given. */
    create(principal: UserPrincipal, input: NewThread): Promise<Thread>;
    list(principal: UserPrincipal, page: PageRequest): Promise<Page<Thread>>;
    get(principal: UserPrincipal, threadId: string): Promise<Thread | undefined>;
    delete(principal: UserPrincipal, threadId: string): Promise<boolean>;
    listMessages(
      principal: UserPrincipal,
      threadId: string,
      page: PageRequest,
    ): Promise<Page<Message> | undefined>;
  };
  readonly runs: {
    /**
     * Creates and queues a run; undefined when the thread is not the caller's. Throws
     * `thread_busy` (strategy reject) and `queue_full` (the tenant has too many queued runs;
     * `details.retryAfterSeconds` says when to retry).
     */
    create(
      principal: UserPrincipal,
      input: {
        threadId: string;
        agentId: string;
        strategy: ConcurrencyStrategy;
        priority: RunPriority;
        input: string | undefined;
      },
    ): Promise<Run | undefined>;
    get(principal: UserPrincipal, threadId: string, runId: string): Promise<Run | undefined>;
    /**
     * A page of the thread's runs in creation order, oldest first (`page.after`: a creation
     * cursor, see domain/creation-cursor.ts); undefined when the thread is not the caller's.
     */
    list(
      principal: UserPrincipal,
      threadId: string,
      page: PageRequest,
    ): Promise<Page<Run> | undefined>;
    events(
      principal: UserPrincipal,
      query: { runId: string; afterSeq: number; limit: number },
    ): Promise<RunEvent[]>;
    requestCancel(
      principal: UserPrincipal,
      threadId: string,
      runId: string,
    ): Promise<Run | undefined>;
  };
  readonly runSteps?: {
    /** The run's completed steps in order; undefined when the run is not the caller's. */
    list(principal: UserPrincipal, threadId: string, runId: string): Promise<RunStep[] | undefined>;
  };
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function threadNotFound(): NotFoundError {
  return new NotFoundError('thread_not_found', 'Thread not found.');
}

function runNotFound(): NotFoundError {
  return new NotFoundError('run_not_found', 'Run not found.');
}

/** A request to start a run. */
export interface CreateRunRequest {
  readonly agentId: string;
  readonly input?: string | undefined;
  readonly strategy: ConcurrencyStrategy;
  /** Defaults to `interactive`. */
  readonly priority?: RunPriority | undefined;
}

/** Thread, message and run use cases; a thread and its runs are visible only to its owner. */
export function createThreadService(ports: ThreadRunPorts) {
  const reader = (principal: Principal) => {
    const user = asTenantUser(principal);
    assertCan(user, 'thread:read');
    return user;
  };
  const writer = (principal: Principal) => {
    const user = asTenantUser(principal);
    assertCan(user, 'thread:write');
    return user;
  };
  const checkId = (id: string, error: () => NotFoundError) => {
    if (!uuidPattern.test(id)) throw error();
  };
  return {
    createThread: (principal: Principal, input: NewThread) =>
      ports.threads.create(writer(principal), input),
    listThreads: (principal: Principal, page: PageRequest) =>
      ports.threads.list(reader(principal), page),
    async getThread(principal: Principal, threadId: string): Promise<Thread> {
      const user = reader(principal);
      checkId(threadId, threadNotFound);
      const thread = await ports.threads.get(user, threadId);
      if (thread === undefined) throw threadNotFound();
      return thread;
    },
    async deleteThread(principal: Principal, threadId: string): Promise<void> {
      const user = writer(principal);
      checkId(threadId, threadNotFound);
      if (!(await ports.threads.delete(user, threadId))) throw threadNotFound();
    },
    async listMessages(
      principal: Principal,
      threadId: string,
      page: PageRequest,
    ): Promise<Page<Message>> {
      const user = reader(principal);
      checkId(threadId, threadNotFound);
      const messages = await ports.threads.listMessages(user, threadId, page);
      if (messages === undefined) throw threadNotFound();
      return messages;
    },
    async createRun(principal: Principal, threadId: string, request: CreateRunRequest) {
      const user = writer(principal);
      checkId(threadId, threadNotFound);
      if (!uuidPattern.test(request.agentId))
        throw new NotFoundError('agent_not_found', 'Agent not found.');
      // The store checks the agent in the same transaction that locks the thread.
      const run = await ports.runs.create(user, {
        threadId,
        agentId: request.agentId,
        strategy: request.strategy,
        priority: request.priority ?? 'interactive',
        input: request.input,
      });
      if (run === undefined) throw threadNotFound();
      return run;
    },
    async getRun(principal: Principal, threadId: string, runId: string): Promise<Run> {
      const user = reader(principal);
      checkId(threadId, threadNotFound);
      checkId(runId, runNotFound);
      const run = await ports.runs.get(user, threadId, runId);
      if (run === undefined) throw runNotFound();
      return run;
    },
    async listRuns(principal: Principal, threadId: string, page: PageRequest): Promise<Page<Run>> {
      const user = reader(principal);
      checkId(threadId, threadNotFound);
      const runs = await ports.runs.list(user, threadId, page);
      if (runs === undefined) throw threadNotFound();
      return runs;
    },
    async listRunSteps(principal: Principal, threadId: string, runId: string): Promise<RunStep[]> {
      const user = reader(principal);
      checkId(threadId, threadNotFound);
      checkId(runId, runNotFound);
      const steps = await ports.runSteps?.list(user, threadId, runId);
      if (steps === undefined) throw runNotFound();
      return steps;
    },
    async runEvents(principal: Principal, run: Run, afterSeq: number): Promise<RunEvent[]> {
      return ports.runs.events(reader(principal), { runId: run.id, afterSeq, limit: 200 });
    },
    async cancelRun(principal: Principal, threadId: string, runId: string): Promise<Run> {
      const user = writer(principal);
      checkId(threadId, threadNotFound);
      checkId(runId, runNotFound);
      const run = await ports.runs.requestCancel(user, threadId, runId);
      if (run === undefined) throw runNotFound();
      return run;
    },
  };
}

/** The thread and run use cases. */
export type ThreadService = ReturnType<typeof createThreadService>;

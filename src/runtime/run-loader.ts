import type { Agent, Message, Run } from '../domain/agents/agent-types.ts';
import type { Role } from '../domain/identity/permissions.ts';
import type { HttpToolDefinition } from '../domain/tools/tool-types.ts';
import type { MessageV1 } from '../plugin-api/index.ts';
import { toAgent } from '../storage/agents/agent-store.ts';
import { toMessage } from '../storage/agents/thread-store.ts';
import { type Database, sqlLiteral } from '../storage/postgres/database.ts';
import { toRun } from '../storage/runs/run-rows.ts';
import type { RunClaim } from './run-executor.ts';
import type { ProvenanceSources } from './tools/provenance-rules.ts';

/** How a load started the run (migration 0022): its start event and deadline. */
export interface LoadStart {
  readonly seq: number;
  readonly type: 'run-started' | 'run-resumed';
  readonly deadline: Date;
}

/** Everything a claimed run needs, read in one round trip. */
export interface LoadedRun {
  /** The run as it was claimed (before the start below). */
  readonly run: Run;
  readonly agent: Agent | undefined;
  /**
   * The thread's messages before the run: those of earlier runs (with their answers, even
   * when they ended after this run was queued) and those of no run, created before it; in turn
   * order ({@link inTurnOrder}). With the agent's `historyMessages` limit, the newest limit + 1 of them (one
   * more, so the window knows a cut happened).
   */
  readonly earlier: Message[];
  /** The run's own messages (its input). */
  readonly own: Message[];
  /** Completed steps by key, replayed on resume. */
  readonly checkpoints: Map<string, unknown>;
  /** The seq of the run's next event (after the start event when there is one). */
  readonly nextSeq: number;
  /** The W3C traceparent of the request that created the run (migration 0045), or null. */
  readonly traceParent: string | null;
  /** The user's current role: role-level policies bind by it. */
  readonly role: Role | undefined;
  readonly tenantTools: HttpToolDefinition[];
  /** Tools switched off for the agent or the tenant when the run was loaded. */
  readonly blocked: Set<string>;
  /**
   * Set when the load also started the run: it is live, its agent exists and its core is one
   * of `cores`. Unset otherwise, and nothing was written.
   */
  readonly started: LoadStart | undefined;
}

/**
 * `messages` (in seq order) with each run's messages together, runs in the order their first
 * message was written: a run queued behind another (enqueue) wrote its input before the other
 * run's answer, and the model should see question and answer together. Stable otherwise.
 */
export function inTurnOrder(messages: readonly Message[]): Message[] {
  const turnOf = new Map<string, number>();
  const keyed = messages.map((message, index) => {
    const group = message.runId ?? `message:${message.id}`;
    if (!turnOf.has(group)) turnOf.set(group, index);
    return { message, turn: turnOf.get(group) as number, index };
  });
  keyed.sort((left, right) => left.turn - right.turn || left.index - right.index);
  return keyed.map((entry) => entry.message);
}

/**
 * Loads a claimed run and starts it, in one round trip: a single-statement-per-read scoped
 * script whose last statement is `brigade.start_loaded_run` (migration 0022), so the reads
 * see the run as claimed and the start commits with them. Returns undefined when the run is
 * gone (deleted with its thread). Rejects with `BRG17` (storage/runs/run-claim.ts,
 * `isClaimLost`) when `claim.executorId` no longer holds the run's queue entry.
 */
export async function loadRun(
  database: Database,
  claim: RunClaim,
  options: { readonly cores: readonly string[]; readonly now: Date },
): Promise<LoadedRun | undefined> {
  const runId = `${sqlLiteral(claim.runId)}::uuid`;
  const tenantId = `${sqlLiteral(claim.tenantId)}::uuid`;
  const userId = `${sqlLiteral(claim.userId)}::uuid`;
  const executor =
    claim.executorId === undefined ? 'null::text' : `${sqlLiteral(claim.executorId)}::text`;
  const cores = `array[${options.cores.map((core) => sqlLiteral(core)).join(', ')}]::text[]`;
  // Each read is a PL/pgSQL function (migrations 0027 and 0030), planned once per connection.
  const [
    runs = [],
    agents = [],
    history = [],
    steps = [],
    contexts = [],
    tenantTools = [],
    starts = [],
  ] = await database.readScoped(claim, [
    `select * from brigade.load_run_row(${runId})`,
    `select * from brigade.load_run_agent(${runId})`,
    // The run's own messages, then the earlier ones, newest first (migration 0027).
    `select * from brigade.run_history(${runId})`,
    `select * from brigade.load_run_steps(${runId})`,
    `select * from brigade.load_run_context(${runId}, ${userId})`,
    'select * from brigade.load_tenant_tools()',
    // Fenced with the claim (migration 0042): a load by an executor that lost it meanwhile
    // raises BRG17 and starts nothing.
    `select brigade.start_loaded_run(${tenantId}, ${userId}, ${runId}, ${cores}, ${sqlLiteral(options.now.toISOString())}::timestamptz) as started
       from brigade.assert_claim(${tenantId}, ${userId}, ${runId}, ${executor}) as fence`,
  ]);
  const context = contexts[0];
  const runRow = runs[0];
  if (runRow === undefined) return undefined;
  const loaded = toRun(runRow as unknown as Parameters<typeof toRun>[0]);
  const agentRow = agents[0] as Parameters<typeof toAgent>[0] | undefined;
  const messageOf = (row: Record<string, unknown>) =>
    toMessage(row as unknown as Parameters<typeof toMessage>[0]);
  const start = starts[0]?.['started'] as
    | { seq: number; type: LoadStart['type']; deadline: string }
    | null
    | undefined;
  const started =
    start === null || start === undefined
      ? undefined
      : { seq: Number(start.seq), type: start.type, deadline: new Date(start.deadline) };
  const traceParent = runRow['trace_parent'];
  return {
    run: loaded,
    traceParent: typeof traceParent === 'string' ? traceParent : null,
    agent: agentRow === undefined ? undefined : toAgent(agentRow),
    earlier: inTurnOrder(
      history
        .map(messageOf)
        .filter((message) => message.runId !== claim.runId)
        .reverse(),
    ),
    own: history.map(messageOf).filter((message) => message.runId === claim.runId),
    checkpoints: new Map(
      steps.map((step) => [String(step['step_key']), step['output'] as unknown]),
    ),
    nextSeq: started === undefined ? Number(context?.['last_seq'] ?? 0) + 1 : started.seq + 1,
    role: (context?.['member_role'] ?? undefined) as Role | undefined,
    tenantTools: tenantTools.map(
      (row) =>
        ({
          ...(row['tool_definition'] as HttpToolDefinition),
          name: String(row['tool_name']),
        }) satisfies HttpToolDefinition,
    ),
    blocked: new Set((context?.['blocked'] as string[] | undefined) ?? []),
    started,
  };
}

/**
 * Where a run's tool arguments may come from (provenance rules): the user's own words and
 * the agent's instructions are trusted; every other message and every tool output the run
 * read so far is not. `history` is what the run sends the model (see history-window.ts).
 * Read at each tool call, so outputs of earlier calls count.
 */
export function provenanceSources(
  loaded: LoadedRun,
  history: readonly MessageV1[],
): ProvenanceSources {
  const textOf = (content: MessageV1['content']) =>
    content
      .map((part) =>
        part.type === 'text'
          ? part.text
          : part.type === 'tool-result'
            ? JSON.stringify(part.output)
            : JSON.stringify(part.input),
      )
      .join('\n');
  return {
    trusted: [
      loaded.agent?.instructions ?? '',
      ...history
        .filter((message) => message.provenance === 'user')
        .map((message) => textOf(message.content)),
    ],
    untrusted: [
      ...history
        .filter((message) => message.provenance !== 'user')
        .map((message) => textOf(message.content)),
      ...[...loaded.checkpoints.entries()]
        .filter(([key]) => key.startsWith('tool:'))
        .map(([, outcome]) => JSON.stringify(outcome)),
    ],
  };
}

/** A stored message as a core sees it. */
export function toCoreMessage(message: Message): MessageV1 {
  return { role: message.role, content: message.content, provenance: message.provenance };
}

import { sql } from 'kysely';
import type { Database } from '../storage/postgres/database.ts';
import type { RunClaim } from './run-executor.ts';

/** The events a core's replay would repeat: steps and the start of tool calls. */
const announcementTypes = ['step-started', 'step-finished', 'tool-call-started'] as const;

/** The key of an announcement: its type and its step number or tool call id. */
export function announcementKey(type: string, subject: string | number): string {
  return `${type}:${subject}`;
}

/**
 * The step and tool-call announcements an earlier execution of a resumed run sent (read once,
 * when the run resumes after an approval decision or a crash). A resumed run calls its core
 * again from the start, and the core replays its checkpointed steps, emitting their
 * `step-started` / `step-finished` again, and starts again a call whose approval paused it:
 * the executor sends none of those twice, so a client drawing steps and calls from the stream
 * sees each once. Keyed by what was actually stored, not by guesses from the checkpoints: a
 * step whose events were written before a crash cut it short is not announced again either.
 */
export async function announcedEvents(
  database: Database,
  claim: RunClaim,
): Promise<ReadonlySet<string>> {
  const rows = await database.withScope(claim, (db) =>
    db
      .selectFrom('brigade.run_events')
      .select(['type', sql<string>`coalesce(data->>'step', data->>'toolCallId')`.as('subject')])
      .where('run_id', '=', claim.runId)
      .where('type', 'in', announcementTypes)
      .execute(),
  );
  return new Set(rows.map((row) => announcementKey(row.type, row.subject)));
}

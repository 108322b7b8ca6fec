import type { Selectable } from 'kysely';
import type {
  Consent,
  ConsentActor,
  ConsentPurpose,
  ConsentStore,
  ConsentSubject,
} from '../../domain/consent/consent-types.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import { writeAudit } from '../identity/audit-writer.ts';
import { scopeFor } from '../identity/scope-for.ts';
import { hasLongTermConsent, lockUserMemory } from '../memory/memory-store.ts';
import type { Database, ScopedDb } from '../postgres/database.ts';
import type { ConsentsTable } from '../postgres/database-schema.ts';
import { scrubCapturedContent } from '../tracing/span-store.ts';

type ConsentRow = Selectable<ConsentsTable>;

function actorOf(principal: Principal): ConsentActor {
  return principal.kind === 'user'
    ? { kind: 'user', userId: principal.userId }
    : { kind: 'operator', userId: null };
}

function toConsent(row: ConsentRow): Consent {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    userId: row.user_id,
    purpose: row.purpose as ConsentPurpose,
    scope: row.scope,
    version: row.version,
    status: row.status,
    grantedAt: row.granted_at,
    grantedBy: { kind: row.granted_by_kind, userId: row.granted_by_user_id },
    revokedAt: row.revoked_at,
    revokedBy:
      row.revoked_by_kind === null
        ? null
        : { kind: row.revoked_by_kind, userId: row.revoked_by_user_id },
  };
}

/**
 * Erases the user's long-term memory (`brigade.memories` without a thread) once no granted
 * `long_term_memory` consent covers every scope (`*`, what the runtime asks for) any more;
 * the number erased, or undefined when a covering consent remains. Thread memory stays: it
 * needs no consent and goes with its thread.
 */
async function eraseLongTermMemory(
  db: ScopedDb,
  subject: ConsentSubject,
): Promise<number | undefined> {
  // A memory write in flight finishes first (and is erased below); later ones see the
  // revocation (memory-store.ts checks the consent again under this lock).
  await lockUserMemory(db, subject.userId);
  // Another granted consent of scope `*` still covers the memory: keep it.
  if (await hasLongTermConsent(db, subject)) return undefined;
  const erased = await db
    .deleteFrom('brigade.memories')
    .where('tenant_id', '=', subject.tenantId)
    .where('user_id', '=', subject.userId)
    .where('thread_id', 'is', null)
    .executeTakeFirst();
  return Number(erased.numDeletedRows);
}

/**
 * Strips captured prompts and answers from the user's stored spans once no granted
 * `content_capture` consent covers every scope (`*`, what capture asks for) any more; how
 * many spans held some, or undefined when a covering consent remains. Spans still on their
 * way are written without content (the span store checks the consent when it writes).
 */
async function scrubSpanContent(
  db: ScopedDb,
  subject: ConsentSubject,
  principal: Principal,
): Promise<number | undefined> {
  const covering = await db
    .selectFrom('brigade.consents')
    .select('id')
    .where('tenant_id', '=', subject.tenantId)
    .where('user_id', '=', subject.userId)
    .where('purpose', '=', 'content_capture')
    .where('status', '=', 'granted')
    .where('scope', '=', '*')
    .executeTakeFirst();
  if (covering !== undefined) return undefined;
  return scrubCapturedContent(db, subject, scopeFor(principal, subject.tenantId));
}

/**
 * Marks one granted consent revoked and audits it; undefined when no such consent is granted.
 * With `eraseMemory` (a user's revocation, not a grant superseding its predecessor), revoking
 * `long_term_memory` also erases the long-term memory it allowed, and revoking
 * `content_capture` the content captured on the user's spans, in the same transaction.
 */
async function revokeRow(
  db: ScopedDb,
  options: {
    principal: Principal;
    subject: ConsentSubject;
    where: { id: string } | { purpose: string; scope: string };
    reason: string | undefined;
    eraseMemory?: boolean;
  },
): Promise<Consent | undefined> {
  const { principal, subject, where, reason } = options;
  const actor = actorOf(principal);
  const row = await db
    .updateTable('brigade.consents')
    .set({
      status: 'revoked',
      revoked_at: new Date(),
      revoked_by_kind: actor.kind,
      revoked_by_user_id: actor.userId,
    })
    .where('tenant_id', '=', subject.tenantId)
    .where('user_id', '=', subject.userId)
    .where('status', '=', 'granted')
    .$if('id' in where, (query) => query.where('id', '=', (where as { id: string }).id))
    .$if('purpose' in where, (query) =>
      query
        .where('purpose', '=', (where as { purpose: string }).purpose)
        .where('scope', '=', (where as { scope: string }).scope),
    )
    .returningAll()
    .executeTakeFirst();
  if (row === undefined) return undefined;
  const consent = toConsent(row);
  const memoriesErased =
    options.eraseMemory === true && consent.purpose === 'long_term_memory'
      ? await eraseLongTermMemory(db, subject)
      : undefined;
  const spansScrubbed =
    options.eraseMemory === true && consent.purpose === 'content_capture'
      ? await scrubSpanContent(db, subject, principal)
      : undefined;
  await writeAudit(db, {
    tenantId: subject.tenantId,
    principal,
    record: {
      action: 'consent.revoked',
      targetType: 'consent',
      targetId: consent.id,
      outcome: 'success',
      reason,
      data: {
        userId: consent.userId,
        purpose: consent.purpose,
        scope: consent.scope,
        version: consent.version,
        ...(memoriesErased === undefined ? {} : { memoriesErased }),
        ...(spansScrubbed === undefined ? {} : { spansScrubbed }),
      },
    },
  });
  return consent;
}

/** The PostgreSQL {@link ConsentStore}: user-owned rows under row-level security. */
export function createConsentStore(database: Database): ConsentStore {
  return {
    list(principal, subject, filter) {
      return database.withScope(scopeFor(principal, subject.tenantId), async (db) => {
        const rows = await db
          .selectFrom('brigade.consents')
          .selectAll()
          .where('tenant_id', '=', subject.tenantId)
          .where('user_id', '=', subject.userId)
          .$if(filter.status !== undefined, (query) =>
            query.where('status', '=', filter.status ?? 'granted'),
          )
          .orderBy('granted_at', 'desc')
          .orderBy('id')
          .limit(1000)
          .execute();
        return rows.map(toConsent);
      });
    },
    grant(principal, subject, input) {
      return database.withScope(scopeFor(principal, subject.tenantId), async (db) => {
        await revokeRow(db, {
          principal,
          subject,
          where: { purpose: input.purpose, scope: input.scope },
          reason: 'superseded by a new grant',
        });
        const actor = actorOf(principal);
        const row = await db
          .insertInto('brigade.consents')
          .values({
            tenant_id: subject.tenantId,
            user_id: subject.userId,
            purpose: input.purpose,
            scope: input.scope,
            version: input.version,
            granted_by_kind: actor.kind,
            granted_by_user_id: actor.userId,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        const consent = toConsent(row);
        await writeAudit(db, {
          tenantId: subject.tenantId,
          principal,
          record: {
            action: 'consent.granted',
            targetType: 'consent',
            targetId: consent.id,
            outcome: 'success',
            data: {
              userId: consent.userId,
              purpose: consent.purpose,
              scope: consent.scope,
              version: consent.version,
            },
          },
        });
        return consent;
      });
    },
    revoke(principal, subject, consentId) {
      return database.withScope(scopeFor(principal, subject.tenantId), (db) =>
        revokeRow(db, {
          principal,
          subject,
          where: { id: consentId },
          reason: undefined,
          eraseMemory: true,
        }),
      );
    },
    findGranted(subject, purpose, scope) {
      return database.withScope(
        { tenantId: subject.tenantId, userId: subject.userId },
        async (db) => {
          const row = await db
            .selectFrom('brigade.consents')
            .selectAll()
            .where('tenant_id', '=', subject.tenantId)
            .where('user_id', '=', subject.userId)
            .where('purpose', '=', purpose)
            .where('status', '=', 'granted')
            .where('scope', 'in', scope === '*' ? ['*'] : [scope, '*'])
            .orderBy('granted_at', 'desc')
            .limit(1)
            .executeTakeFirst();
          return row === undefined ? undefined : toConsent(row);
        },
      );
    },
  };
}

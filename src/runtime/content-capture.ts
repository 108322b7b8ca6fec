import { sql } from 'kysely';
import type { MessageV1 } from '../plugin-api/index.ts';
import type { Database } from '../storage/postgres/database.ts';
import { createOutputGuard } from './tools/output-guard.ts';
import { createTtlCache } from './ttl-cache.ts';

const pii: readonly [RegExp, string][] = [
  [/[\w.+-]+@[\w-]+(?:\.[\w-]+)+/g, '[email]'],
  // Card and phone numbers: runs of 9+ digits, with spaces or dashes between groups.
  [/\+?\d(?:[ -]?\d){8,}/g, '[number]'],
];

const guard = createOutputGuard({ secrets: () => new Set<string>(), allowedLinkHosts: [] });

const truncatedMark = '…[truncated]';

/**
 * `text` cut to at most `maxBytes` bytes of UTF-8, the mark included, at a character's
 * boundary (a multi-byte character is never split).
 */
function cutToBytes(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const bytes = Buffer.from(text);
  let end = Math.max(0, maxBytes - Buffer.byteLength(truncatedMark));
  // Back to the first byte of a character: continuation bytes are 10xxxxxx.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return `${bytes.subarray(0, end).toString()}${truncatedMark}`;
}

/**
 * Captured content is always redacted: secrets and keys, e-mail addresses, long numbers; and
 * cut to `maxBytes` bytes of UTF-8 (16 KiB by default), `…[truncated]` included.
 */
export function redactContent(text: string, maxBytes = 16_384): string {
  let result = guard.redact(text).text;
  for (const [pattern, replacement] of pii) result = result.replace(pattern, replacement);
  return cutToBytes(result, maxBytes);
}

const uuidPattern = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/**
 * A name a caller chose (a model name) as it may appear in a span's name or attributes:
 * redacted like captured content, with ids (UUIDs) replaced too, and at most 200 bytes.
 */
export function redactName(name: string): string {
  return redactContent(name.replace(uuidPattern, '[id]'), 200);
}

/** The text of messages as the GenAI conventions put them on a span (`gen_ai.input.messages`). */
export function messagesForSpan(messages: readonly MessageV1[]): string {
  return redactContent(
    JSON.stringify(
      messages.map((message) => ({
        role: message.role,
        parts: message.content.flatMap((part): Record<string, string>[] =>
          part.type === 'text'
            ? [{ type: 'text', content: part.text }]
            : part.type === 'tool-call'
              ? [{ type: 'tool_call', name: part.toolName }]
              : [{ type: 'tool_call_response', name: part.toolName }],
        ),
      })),
    ),
  );
}

/**
 * Whether a user's model calls may put their content on spans: the tenant turned capture on
 * (`captureContent`) and the user granted `content_capture` for every agent (scope `*`) or for
 * the agent the call is made for (scope = its id; a call outside a run, such as
 * `/v1/chat/completions`, has no agent and needs `*`). Cached per user and agent for `ttlMs`.
 */
export function createContentCapturePolicy(database: Database, ttlMs = 5_000) {
  const cache = createTtlCache<boolean>({ ttlMs });
  return (subject: {
    readonly tenantId: string;
    readonly userId: string;
    readonly agentId?: string | null | undefined;
  }): Promise<boolean> => {
    const scopes = subject.agentId == null ? ['*'] : ['*', subject.agentId];
    return cache.get(`${subject.tenantId}:${subject.userId}:${subject.agentId ?? '*'}`, () =>
      database
        .withScope({ tenantId: subject.tenantId, userId: subject.userId }, async (db) => {
          const result = await sql<{ allowed: boolean }>`
            select t.capture_content and exists (
                     select 1 from brigade.consents c
                      where c.tenant_id = t.id and c.user_id = ${subject.userId}::uuid
                        and c.purpose = 'content_capture' and c.status = 'granted'
                        and c.scope = any(${scopes}::text[])) as allowed
              from brigade.tenants t where t.id = ${subject.tenantId}::uuid`.execute(db);
          return result.rows[0]?.allowed === true;
        })
        .catch(() => false),
    );
  };
}

import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { checkpointMessage, createAuditVerifier } from '../src/domain/audit/audit-signing.ts';
import { type ApiClient, apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/**
 * Signed audit checkpoints (DESIGN.md invariant 11): what the hash chain alone cannot show —
 * a cut tail with the head moved back, or rows rewritten with every later hash recomputed —
 * is detected once a checkpoint signed with a key outside the database covers it, and a
 * forged checkpoint is detected too. The runtime role may only append.
 */
const signingKey = generateKeyPairSync('ed25519')
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();
const env = { BRIGADE_AUDIT_SIGNING_KEY: signingKey };

let server: TestServer;
let operator: ApiClient;
let owner: pg.Client;

interface Verification {
  ok: boolean;
  checked: number;
  firstBrokenSeq: number | null;
  reason: string | null;
  checkpoints: { checked: number; latestSeq: number | null };
  publicKey: { keyId: string; publicKeyPem: string } | null;
}

interface Checkpoint {
  tenantId: string;
  seq: number;
  hash: string;
  signedAt: string;
  keyId: string;
  signature: string;
}

beforeAll(async () => {
  server = await startTestServer({ audit: { checkpoints: { pollMs: 3_600_000 } } }, { env });
  operator = apiClient(server.url, testOperatorKey);
  owner = new pg.Client({ connectionString: server.database.url });
  await owner.connect();
});

afterAll(async () => {
  await owner?.end();
  await server?.stop();
});

async function tamper(statements: readonly string[], values: unknown[]): Promise<void> {
  await owner.query('begin');
  try {
    for (const statement of statements) await owner.query(statement, values);
    await owner.query('commit');
  } catch (error) {
    await owner.query('rollback');
    throw error;
  }
}

let tenantId: string;
let slug: string;
let admin: ApiClient;
let adminUserId: string;
let counter = 0;

/** Adds `count` audited changes (API keys created) to the tenant. */
async function addEvents(count: number): Promise<void> {
  for (let index = 0; index < count; index += 1) {
    const created = await admin.post(`/v1/tenants/${tenantId}/users/${adminUserId}/api-keys`, {
      name: `k${index}`,
    });
    expect(created.status).toBe(201);
  }
}

async function verify(): Promise<Verification> {
  const response = await admin.post<Verification>(`/v1/tenants/${tenantId}/audit/verify`);
  expect(response.status).toBe(200);
  return response.body;
}

async function checkpointNow(): Promise<Checkpoint | null> {
  const response = await admin.post<{ checkpoint: Checkpoint | null }>(
    `/v1/tenants/${tenantId}/audit/checkpoints`,
  );
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body.checkpoint;
}

/**
 * Rewrites event `seq` (its reason) and recomputes every hash from it on with the trigger's own
 * formula, the head included: a consistent chain that only the checkpoints can catch.
 */
async function rewriteAndRecompute(seq: number): Promise<void> {
  await tamper(
    [`update brigade.audit_events set reason = 'nothing to see' where tenant_id = $1 and seq = $2`],
    [tenantId, seq],
  );
  await tamper(
    [
      `do $$
       declare r record; prev bytea;
       begin
         select hash into prev from brigade.audit_events
          where tenant_id = '${tenantId}' and seq = ${seq - 1};
         for r in select * from brigade.audit_events
                   where tenant_id = '${tenantId}' and seq >= ${seq} order by seq loop
           update brigade.audit_events set prev_hash = prev,
             hash = sha256(prev || convert_to(concat_ws(chr(10), 'v2', ${[
               'r.tenant_id::text',
               'r.seq::text',
               'r.id::text',
               `to_char(r.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
               'r.actor_kind',
               'r.actor_user_id::text',
               'r.actor_key_id::text',
               'r.action',
               'r.target_type',
               'r.target_id',
               'r.outcome',
               'r.reason',
               'r.data::text',
             ]
               .map(
                 (field) =>
                   `case when ${field} is null then '-' else octet_length(convert_to(${field}, 'UTF8'))::text || ':' || ${field} end`,
               )
               .join(', ')}), 'UTF8'))
            where tenant_id = r.tenant_id and seq = r.seq
            returning hash into prev;
         end loop;
         update brigade.audit_heads set hash = prev where tenant_id = '${tenantId}';
       end $$`,
    ],
    [],
  );
}

beforeEach(async () => {
  counter += 1;
  slug = `ckpt-${counter}`;
  tenantId = await seedTenant(operator, slug);
  const seeded = await seedUser(operator, { tenantId, role: 'admin' });
  adminUserId = seeded.userId;
  admin = apiClient(server.url, seeded.secret);
  await addEvents(3);
});

describe('signed audit checkpoints', () => {
  it('publishes the public key without credentials and signs verifiable checkpoints', async () => {
    const published = await apiClient(server.url).get<{
      checkpointsEnabled: boolean;
      publicKey: { algorithm: string; keyId: string; publicKeyPem: string };
    }>('/v1/audit/public-key');
    expect(published.status).toBe(200);
    expect(published.body.checkpointsEnabled).toBe(true);
    expect(published.body.publicKey.algorithm).toBe('Ed25519');
    expect(JSON.stringify(published.body)).not.toContain('PRIVATE');

    const checkpoint = await checkpointNow();
    expect(checkpoint).not.toBeNull();
    if (checkpoint === null) return;
    expect(await checkpointNow()).toBeNull(); // nothing new since
    // Offline: the published key, the checkpoint and the event list suffice.
    const verifier = createAuditVerifier(published.body.publicKey.publicKeyPem);
    const fields = { ...checkpoint, signedAt: new Date(checkpoint.signedAt) };
    expect(verifier.verify(fields, Buffer.from(checkpoint.signature, 'base64'))).toBe(true);
    expect(checkpointMessage(fields).toString()).toContain(checkpoint.hash);
    const events = await admin.get<{ data: { seq: number; hash: string }[] }>(
      `/v1/tenants/${tenantId}/audit-events?limit=500`,
    );
    expect(events.body.data.find((event) => event.seq === checkpoint.seq)?.hash).toBe(
      checkpoint.hash,
    );
    const listed = await admin.get<{ data: Checkpoint[] }>(
      `/v1/tenants/${tenantId}/audit/checkpoints`,
    );
    expect(listed.body.data).toEqual([checkpoint]);

    const result = await verify();
    expect(result).toMatchObject({
      ok: true,
      checkpoints: { checked: 1, latestSeq: checkpoint.seq },
      publicKey: { keyId: published.body.publicKey.keyId },
    });
  });

  it('signs due tenants in the background job, every N events or T seconds', async () => {
    expect(await server.brigade.auditCheckpointer.runOnce()).toBeGreaterThanOrEqual(1);
    const listed = await admin.get<{ data: Checkpoint[] }>(
      `/v1/tenants/${tenantId}/audit/checkpoints`,
    );
    expect(listed.body.data).toHaveLength(1);
    // The last checkpoint is fresh and fewer than 1000 events were added: not due again.
    await addEvents(1);
    await server.brigade.auditCheckpointer.runOnce();
    const again = await admin.get<{ data: Checkpoint[] }>(
      `/v1/tenants/${tenantId}/audit/checkpoints`,
    );
    expect(again.body.data).toHaveLength(1);
  });

  it('detects a truncated tail with the head moved back, once a checkpoint covers it', async () => {
    const checkpoint = await checkpointNow();
    expect(checkpoint).not.toBeNull();
    await addEvents(2);
    const last = checkpoint?.seq ?? 0;
    // The attacker cuts the last three events, including the checkpointed one, and repairs
    // the head so the chain alone looks whole.
    await tamper(
      [
        'delete from brigade.audit_events where tenant_id = $1 and seq > $2',
        `update brigade.audit_heads h set seq = e.seq, hash = e.hash
           from brigade.audit_events e
          where h.tenant_id = $1 and e.tenant_id = $1 and e.seq = $2`,
      ],
      [tenantId, last - 1],
    );
    const result = await verify();
    expect(result.ok).toBe(false);
    expect(result.firstBrokenSeq).toBe(last);
    expect(result.reason).toContain(`checkpoint ${last}`);
  });

  it('detects a rewritten row whose later hashes were all recomputed, by the signature', async () => {
    const checkpoint = await checkpointNow();
    const last = checkpoint?.seq ?? 0;
    expect(last).toBeGreaterThanOrEqual(4);
    // Rewrite event 2 and recompute every hash after it with the trigger's own formula.
    await rewriteAndRecompute(2);
    const result = await verify();
    expect(result.ok).toBe(false);
    expect(result.firstBrokenSeq).toBe(1);
    expect(result.reason).toContain(`signed checkpoint ${last}`);
    // The background job refuses to vouch for the tampered chain.
    await addEvents(1);
    const refused = await admin.post(`/v1/tenants/${tenantId}/audit/checkpoints`);
    expect(refused.status).toBe(409);
  });

  it('names the same first broken event when verifying and when refusing to sign', async () => {
    const first = (await checkpointNow())?.seq ?? 0;
    await addEvents(3);
    const second = (await checkpointNow())?.seq ?? 0;
    expect(second).toBe(first + 3);
    await rewriteAndRecompute(second - 1);
    await addEvents(1);
    const result = await verify();
    expect(result.firstBrokenSeq).toBe(first + 1);
    expect(result.reason).toBe(
      `the chain no longer matches signed checkpoint ${second}: a record in ${first + 1}–${second} was rewritten`,
    );
    const refused = await admin.post<{ detail: string }>(
      `/v1/tenants/${tenantId}/audit/checkpoints`,
    );
    expect(refused.status).toBe(409);
    expect(refused.body.detail).toContain(`at event ${first + 1} (${result.reason})`);
  });

  it('detects a forged checkpoint', async () => {
    await checkpointNow();
    const forger = generateKeyPairSync('ed25519').privateKey;
    const { sign } = await import('node:crypto');
    const head = await owner.query<{ seq: string; hash: Buffer }>(
      'select seq, hash from brigade.audit_events where tenant_id = $1 order by seq desc limit 1',
      [tenantId],
    );
    const row = head.rows[0];
    if (row === undefined) throw new Error('no events');
    await addEvents(1);
    const seq = Number(row.seq) + 1;
    const hash = (
      await owner.query<{ hash: Buffer }>(
        'select hash from brigade.audit_events where tenant_id = $1 and seq = $2',
        [tenantId, seq],
      )
    ).rows[0]?.hash;
    const signedAt = new Date();
    const published = await apiClient(server.url).get<{ publicKey: { keyId: string } }>(
      '/v1/audit/public-key',
    );
    const keyId = published.body.publicKey.keyId;
    const signature = sign(
      null,
      checkpointMessage({ tenantId, seq, hash: hash?.toString('hex') ?? '', signedAt, keyId }),
      forger,
    );
    await tamper(
      [
        `insert into brigade.audit_checkpoints (tenant_id, seq, hash, signed_at, key_id, signature)
         values ($1, $2, $3, $4, $5, $6)`,
      ],
      [tenantId, seq, hash, signedAt, keyId, signature],
    );
    const result = await verify();
    expect(result).toMatchObject({ ok: false, firstBrokenSeq: seq });
    // Signed in the trusted key's name: the signature itself is wrong.
    expect(result.reason).toBe(
      `checkpoint ${seq} has an invalid signature (forged, or the checkpoint was altered)`,
    );
  });

  it('goes on signing after a signing-key change, which verification still reports', async () => {
    // A checkpoint signed under another key (the key before a change): its (seq, hash) are the
    // chain's, so the chain is intact; only its signature is not the trusted key's.
    await addEvents(1);
    const former = generateKeyPairSync('ed25519').privateKey;
    const { sign } = await import('node:crypto');
    const head = await owner.query<{ seq: string; hash: Buffer }>(
      'select seq, hash from brigade.audit_events where tenant_id = $1 order by seq desc limit 1',
      [tenantId],
    );
    const row = head.rows[0];
    if (row === undefined) throw new Error('no events');
    const signedAt = new Date();
    const keyId = 'former-key';
    const message = checkpointMessage({
      tenantId,
      seq: Number(row.seq),
      hash: row.hash.toString('hex'),
      signedAt,
      keyId,
    });
    await tamper(
      [
        `insert into brigade.audit_checkpoints (tenant_id, seq, hash, signed_at, key_id, signature)
         values ($1, $2, $3, $4, $5, $6)`,
      ],
      [tenantId, row.seq, row.hash, signedAt, keyId, sign(null, message, former)],
    );
    await addEvents(1);
    // Signing neither stops nor re-checks every stored signature: a new checkpoint is signed.
    const signed = await checkpointNow();
    expect(signed?.seq).toBe(Number(row.seq) + 1);
    const result = await verify();
    expect(result).toMatchObject({ ok: false, firstBrokenSeq: Number(row.seq) });
    expect(result.reason).toContain('signed by key former-key');
  });

  it('is checked by `brigade audit verify` with the configured key or --public-key', async () => {
    await checkpointNow();
    const lines: string[] = [];
    const io = { out: (text: string) => lines.push(text), err: (text: string) => lines.push(text) };
    const cliEnv = { DATABASE_URL: server.database.url, LOG_LEVEL: 'silent' };
    const args = ['audit', 'verify', '--tenant', slug, '--json'];
    // Without any key the checkpoints cannot be vouched for: fail closed.
    expect(await runCli(args, io, cliEnv)).toBe(1);
    expect(JSON.parse(lines.at(-1) ?? '{}').reason).toContain('no audit public key');
    expect(await runCli(args, io, { ...cliEnv, ...env })).toBe(0);
    const directory = await mkdtemp(join(tmpdir(), 'brigade-key-'));
    try {
      const published = await apiClient(server.url).get<{ publicKey: { publicKeyPem: string } }>(
        '/v1/audit/public-key',
      );
      const file = join(directory, 'audit.pub.pem');
      await writeFile(file, published.body.publicKey.publicKeyPem);
      expect(await runCli([...args, '--public-key', file], io, cliEnv)).toBe(0);
      expect(JSON.parse(lines.at(-1) ?? '{}')).toMatchObject({ ok: true });
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('leaves the runtime role append-only on the log, its head and its checkpoints', async () => {
    const runtime = new pg.Client({
      connectionString: server.brigade.storage.runtimeConnection.url,
    });
    await runtime.connect();
    try {
      for (const statement of [
        'update brigade.audit_heads set seq = 1',
        `insert into brigade.audit_heads (tenant_id, seq, hash) values ('${tenantId}', 0, '\\x')`,
        'delete from brigade.audit_heads',
        'update brigade.audit_checkpoints set seq = 1',
        'delete from brigade.audit_checkpoints',
        'delete from brigade.audit_events',
      ]) {
        await runtime.query('begin');
        await runtime.query("select set_config('brigade.tenant_id', $1, true)", [tenantId]);
        await expect(runtime.query(statement), statement).rejects.toThrow(/permission denied/);
        await runtime.query('rollback');
      }
      // Appending still works through the (SECURITY DEFINER) chain trigger.
      await addEvents(1);
      expect((await verify()).ok).toBe(true);
    } finally {
      await runtime.end();
    }
  });
});

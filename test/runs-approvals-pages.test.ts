import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
  waitForRun,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/*
 * listRuns and listPendingApprovals page with `limit` and `after` like the API's other lists:
 * every item once, oldest first, the newest included however many there are; a cursor stays
 * valid while items are added or decided; a cursor of someone else's shows nothing of theirs.
 */
let server: TestServer;
let member: ApiClient;
let stranger: ApiClient;
let helperId: string;
let carefulId: string;

interface Page<T> {
  readonly data: T[];
  readonly nextCursor: string | null;
}
interface RunBody {
  readonly id: string;
  readonly createdAt: string;
}
interface ApprovalBody {
  readonly id: string;
  readonly runId: string;
  readonly createdAt: string;
}

/** Follows `nextCursor` from the first page of `path` to the end; returns the pages. */
async function allPages<T>(client: ApiClient, path: string, limit: number): Promise<Page<T>[]> {
  const pages: Page<T>[] = [];
  let after: string | null = null;
  do {
    const query: string = after === null ? '' : `&after=${encodeURIComponent(after)}`;
    const response = await client.get<Page<T>>(`${path}?limit=${limit}${query}`);
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    pages.push(response.body);
    after = response.body.nextCursor;
  } while (after !== null && pages.length < 100);
  return pages;
}

/** Starts a run that parks on an approval on a new thread of `client`; returns its ids. */
async function parkedRun(client: ApiClient): Promise<{ threadId: string; runId: string }> {
  const thread = await client.post<Created>('/v1/threads', {});
  const run = await client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId: carefulId,
    input: 'call calculator {"expression":"1+1"}',
  });
  expect(run.status, JSON.stringify(run.body)).toBe(201);
  const ids = { threadId: thread.body.id, runId: run.body.id };
  await waitForRun(client, ids, ['requires_action']);
  return ids;
}

/** The pending approvals of `client`, waited for until those of `runIds` are all listed. */
async function approvalsOf(client: ApiClient, runIds: readonly string[]) {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const listed = await client.get<Page<ApprovalBody>>('/v1/approvals?limit=100');
    const runs = new Set(listed.body.data.map((approval) => approval.runId));
    if (runIds.every((id) => runs.has(id))) return listed.body.data;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('approvals never listed');
}

beforeAll(async () => {
  server = await startTestServer({
    models: { local: { tokenDelayMs: 0 } },
    runs: { pollIntervalMs: 50 },
  });
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'pages');
  const admin = apiClient(
    server.url,
    (await seedUser(operator, { tenantId, role: 'admin' })).secret,
  );
  member = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  stranger = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  helperId = (await admin.post<Created>('/v1/agents', { name: 'helper' })).body.id;
  carefulId = (
    await admin.post<Created>('/v1/agents', {
      name: 'careful',
      tools: ['calculator'],
      approvalRequiredTools: ['calculator'],
    })
  ).body.id;
});

afterAll(async () => {
  await server?.stop();
});

describe('listRuns pages', () => {
  it('lists every run of a thread once, oldest first, the newest included', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const path = `/v1/threads/${thread.body.id}/runs`;
    const created: string[] = [];
    for (let index = 0; index < 11; index += 1) {
      const run = await member.post<Created>(path, { agentId: helperId, input: `run ${index}` });
      expect(run.status, JSON.stringify(run.body)).toBe(201);
      created.push(run.body.id);
    }
    const pages = await allPages<RunBody>(member, path, 4);
    expect(pages.map((page) => page.data.length)).toEqual([4, 4, 3]);
    expect(pages.flatMap((page) => page.data.map((run) => run.id))).toEqual(created);
    // Without parameters: the first page of the default size, in the same shape.
    const first = await member.get<Page<RunBody>>(path);
    expect(first.body).toEqual({ data: expect.any(Array), nextCursor: null });
    expect(first.body.data.map((run) => run.id)).toEqual(created);
  });

  it('goes on from its cursor when runs are added between pages', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const path = `/v1/threads/${thread.body.id}/runs`;
    const created: string[] = [];
    const start = async (input: string) => {
      const run = await member.post<Created>(path, { agentId: helperId, input });
      created.push(run.body.id);
    };
    for (let index = 0; index < 5; index += 1) await start(`before ${index}`);
    const first = await member.get<Page<RunBody>>(`${path}?limit=3`);
    await start('meanwhile');
    const rest = await member.get<Page<RunBody>>(
      `${path}?limit=3&after=${first.body.nextCursor ?? ''}`,
    );
    expect(rest.body.data.map((run) => run.id)).toEqual(created.slice(3, 6));
    expect(rest.body.nextCursor).toBeNull();
    expect([...first.body.data, ...rest.body.data].map((run) => run.id)).toEqual(created);
  });

  it('shows nothing of another user through their cursor', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const path = `/v1/threads/${thread.body.id}/runs`;
    for (let index = 0; index < 3; index += 1)
      await member.post(path, { agentId: helperId, input: `mine ${index}` });
    const cursor = (await member.get<Page<RunBody>>(`${path}?limit=1`)).body.nextCursor ?? '';
    // Their thread stays unknown, with or without the cursor.
    expect((await stranger.get(`${path}?limit=1&after=${cursor}`)).status).toBe(404);
    // On a thread of the stranger's own, the cursor only positions: their runs, not the member's.
    const own = await stranger.post<Created>('/v1/threads', {});
    const ownPath = `/v1/threads/${own.body.id}/runs`;
    const ownRun = await stranger.post<Created>(ownPath, { agentId: helperId, input: 'theirs' });
    const listed = await stranger.get<Page<RunBody>>(`${ownPath}?after=${cursor}`);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({
      data: [expect.objectContaining({ id: ownRun.body.id })],
      nextCursor: null,
    });
  });
});

describe('listPendingApprovals pages', () => {
  it('lists every pending approval once, oldest first, the newest included', async () => {
    const parked = await Promise.all(Array.from({ length: 7 }, () => parkedRun(member)));
    const runIds = parked.map((run) => run.runId);
    await approvalsOf(member, runIds);
    const pages = await allPages<ApprovalBody>(member, '/v1/approvals', 3);
    expect(pages.map((page) => page.data.length)).toEqual([3, 3, 1]);
    const listed = pages.flatMap((page) => page.data);
    expect(new Set(listed.map((approval) => approval.id)).size).toBe(listed.length);
    expect(listed.map((approval) => approval.runId).sort()).toEqual([...runIds].sort());
    const times = listed.map((approval) => Date.parse(approval.createdAt));
    expect(times).toEqual([...times].sort((a, b) => a - b));

    // A new approval, and the decision of the one a cursor came from: the next page goes on.
    const first = await member.get<Page<ApprovalBody>>('/v1/approvals?limit=3');
    const last = first.body.data.at(-1);
    expect(
      (await member.post(`/v1/approvals/${last?.id}/decision`, { decision: 'reject' })).status,
    ).toBe(200);
    const newest = await parkedRun(member);
    const newestId = (await approvalsOf(member, [newest.runId])).find(
      (approval) => approval.runId === newest.runId,
    )?.id;
    let after = first.body.nextCursor;
    const following: string[] = [];
    while (after !== null) {
      const page = await member.get<Page<ApprovalBody>>(`/v1/approvals?limit=3&after=${after}`);
      following.push(...page.body.data.map((approval) => approval.id));
      after = page.body.nextCursor;
    }
    expect(following).toEqual([...listed.slice(3).map((approval) => approval.id), newestId]);
  });

  it('shows nothing of another user through their cursor', async () => {
    const mine = await Promise.all([parkedRun(member), parkedRun(member)]);
    await approvalsOf(
      member,
      mine.map((run) => run.runId),
    );
    const cursor = (await member.get<Page<ApprovalBody>>('/v1/approvals?limit=1')).body.nextCursor;
    expect(cursor).not.toBeNull();
    const own = await parkedRun(stranger);
    const listed = await stranger.get<Page<ApprovalBody>>(`/v1/approvals?after=${cursor}`);
    expect(listed.status).toBe(200);
    expect(listed.body.data.map((approval) => approval.runId)).toEqual([own.runId]);
    expect(listed.body.nextCursor).toBeNull();
  });
});

describe('page queries', () => {
  it('refuses a malformed cursor or limit with 422', async () => {
    const thread = await member.post<Created>('/v1/threads', {});
    const id = thread.body.id;
    const queries = [
      'limit=0',
      'limit=101',
      'limit=ten',
      'limit=2.5',
      'after=nonsense',
      `after=${id}`,
      `after=12345678901234567_${id}`,
      `after=-1_${id}`,
      `after=1_${id}x`,
    ];
    for (const path of [`/v1/threads/${id}/runs`, '/v1/approvals']) {
      for (const query of queries) {
        const response = await member.get(`${path}?${query}`);
        expect(response.status, `${path}?${query}`).toBe(422);
        expect(response.body).toMatchObject({ code: 'validation_failed' });
      }
    }
  });
});

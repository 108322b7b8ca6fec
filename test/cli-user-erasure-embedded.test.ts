import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import {
  cleanUp,
  createWorkspace,
  operatorKeyPattern,
  spawnCli,
  startBrigade,
  stopBrigade,
  waitForExit,
} from './support/embedded-process.ts';

/**
 * `brigade users delete` in the embedded mode, with the real CLI spawned in the server's
 * working directory: a server on the embedded database does not listen for other processes,
 * so the CLI refuses while one runs (it could neither cancel the user's runs there nor drop
 * that server's cached answers) and erases once it has stopped.
 */

afterEach(cleanUp, 30_000);
afterAll(cleanUp, 30_000);

describe('brigade users delete with embedded PostgreSQL', { timeout: 90_000 }, () => {
  it('refuses while a server runs on the database, and erases once it has stopped', async () => {
    const workspace = await createWorkspace();
    const server = await startBrigade(workspace);
    const operatorKey = server.stdout().match(operatorKeyPattern)?.[0] ?? '';
    const operator = apiClient(server.url, operatorKey);
    const tenantId = await seedTenant(operator, 'embedded');
    await seedUser(operator, { tenantId, role: 'owner' });
    const member = await seedUser(operator, { tenantId, role: 'member' });
    const argv = ['users', 'delete', '--tenant', 'embedded', '--user', member.userId, '--yes'];

    const refused = spawnCli(workspace, argv);
    const refusal = await waitForExit(refused, 30_000);
    expect(refusal).toEqual({ code: 1, signal: null });
    expect(refused.stdout()).toBe('');
    const lines = refused.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^brigade: a Brigade server is running on this embedded database .* or stop the server first$/,
    );
    expect((await apiClient(server.url, member.secret).get('/v1/me')).status).toBe(200);

    expect(await stopBrigade(server)).toEqual({ code: 0, signal: null });
    const erased = spawnCli(workspace, argv);
    expect(await waitForExit(erased, 30_000), erased.stderr()).toEqual({ code: 0, signal: null });
    expect(erased.stdout()).toBe(
      `deleted user ${member.userId} and everything that was theirs; usage records and audit events are kept\n`,
    );
    const listed = spawnCli(workspace, ['users', 'list', '--tenant', 'embedded', '--json']);
    expect(await waitForExit(listed, 30_000)).toEqual({ code: 0, signal: null });
    const users = JSON.parse(listed.stdout()) as { id: string; role: string }[];
    expect(users.map((user) => user.role)).toEqual(['owner']);
  });
});

import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { createTestDatabase, type TestDatabase } from './support/test-brigade.ts';

/** Provider secrets are needed to serve, not to administer: an operator's shell lacks them. */
let database: TestDatabase;
let configPath: string;

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const status = await runCli(
    [...argv, '--config', configPath],
    { out: (text) => out.push(text), err: (text) => err.push(text) },
    { DATABASE_URL: database.url, LOG_LEVEL: 'silent' },
  );
  return { status, out, err };
}

beforeAll(async () => {
  database = await createTestDatabase();
  configPath = join(await mkdtemp(join(tmpdir(), 'brigade-cli-')), 'brigade.config.json');
  await writeFile(
    configPath,
    JSON.stringify({ providers: { openai: { type: 'openai', apiKeyEnv: 'CLI_TEST_UNSET_KEY' } } }),
  );
});

afterAll(async () => {
  await database?.drop();
});

describe('provider secrets', () => {
  it('are not needed to migrate or list tenants', async () => {
    for (const argv of [['migrate'], ['tenants', 'list', '--json']]) {
      const run = await cli(...argv);
      expect(run.err, argv.join(' ')).toEqual([]);
      expect(run.status, argv.join(' ')).toBe(0);
    }
  });

  it('are needed to serve: exit 78 naming the variable, before anything starts', async () => {
    const run = await cli('serve');
    expect(run.status).toBe(78);
    expect(run.out).toEqual([]);
    expect(run.err.join('\n')).toContain('env.CLI_TEST_UNSET_KEY: not set');
  });
});

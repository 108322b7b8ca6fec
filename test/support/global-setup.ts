import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import {
  type EmbeddedServer,
  startEmbeddedServer,
} from '../../src/storage/embedded/embedded-server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Owner URL of the PostgreSQL cluster the tests create their databases on. */
    clusterUrl: string;
    /** 'embedded' or 'external', for test names and skips. */
    databaseMode: string;
  }
}

const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };

/**
 * Starts one embedded PostgreSQL cluster for the whole run, or uses the external server in
 * DATABASE_URL. Every test file then creates its own database on it, so files run in parallel.
 */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  // biome-ignore lint/style/noProcessEnv: the test harness chooses the database mode from the environment.
  const external = process.env['DATABASE_URL'];
  if (external !== undefined) {
    project.provide('clusterUrl', external);
    project.provide('databaseMode', 'external');
    return async () => undefined;
  }
  const directory = await mkdtemp(join(tmpdir(), 'brigade-test-'));
  const { chmod } = await import('node:fs/promises');
  await chmod(directory, 0o755);
  const server: EmbeddedServer = await startEmbeddedServer({
    dataDir: join(directory, 'postgres'),
    port: undefined,
    logger: quiet,
  });
  project.provide('clusterUrl', server.ownerUrl);
  project.provide('databaseMode', 'embedded');
  return async () => {
    await server.stop();
    await rm(directory, { recursive: true, force: true });
  };
}

import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * A developer's `brigade.config.json` in the repository root (docs/configuration.md tells them
 * to create it there) must not fail `npm test`, whose first step is `biome ci .`, nor be
 * committed. Checked in a scratch repository holding the project's biome.json and .gitignore.
 */
const root = resolve(import.meta.dirname, '..');
const scratch = mkdtempSync(join(tmpdir(), 'brigade-repo-'));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('a local configuration file in the repository root', () => {
  it('is ignored by biome ci and by git', () => {
    copyFileSync(join(root, 'biome.json'), join(scratch, 'biome.json'));
    copyFileSync(join(root, '.gitignore'), join(scratch, '.gitignore'));
    execFileSync('git', ['init', '-q'], { cwd: scratch });
    writeFileSync(join(scratch, 'brigade.config.json'), '{ "server": { "port": 4731 } }');
    writeFileSync(join(scratch, 'checked.ts'), 'export const checked = 1;\n');
    const biome = spawnSync(
      join(root, 'node_modules', '.bin', 'biome'),
      ['ci', '--colors=off', '.'],
      { cwd: scratch, encoding: 'utf8' },
    );
    expect(biome.status, biome.stdout + biome.stderr).toBe(0);
    for (const name of ['brigade.config.json', 'brigade.config.yaml', 'brigade.config.yml']) {
      const ignored = spawnSync('git', ['check-ignore', '-q', name], { cwd: scratch });
      expect(ignored.status, name).toBe(0);
    }
  });
});

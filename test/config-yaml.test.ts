import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { ConfigError, loadConfig } from '../src/config/index.ts';

/**
 * The configuration file may be YAML (`brigade.config.yaml` or `.yml`, or a `--config` path
 * ending so): validated like JSON, every problem with its path, and a syntax error reported in
 * one line with exit status 78.
 */
const directories: string[] = [];

/** A fresh directory holding `files` (name → text). */
function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'brigade-yaml-'));
  directories.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function configErrorOf(load: () => unknown): ConfigError {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but the configuration loaded');
}

afterAll(() => {
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
});

const yaml = `# Brigade
server:
  port: 4731
  cors:
    origins: [https://app.example.com]
log: { level: warn }
`;

describe('a YAML configuration file', () => {
  it('is read from brigade.config.yaml, brigade.config.yml or a --config path ending so', () => {
    for (const name of ['brigade.config.yaml', 'brigade.config.yml']) {
      const cwd = folder({ [name]: yaml });
      const config = loadConfig({ env: {}, cwd });
      expect(config.server.port, name).toBe(4731);
      expect(config.server.cors.origins).toEqual(['https://app.example.com']);
      expect(config.log.level).toBe('warn');
      expect(config.configPath).toBe(join(cwd, name));
    }
    const cwd = folder({ 'settings.YML': yaml });
    expect(loadConfig({ env: {}, cwd, configPath: 'settings.YML' }).server.port).toBe(4731);
  });

  it('is validated like JSON, every problem with its path', () => {
    const cwd = folder({
      'brigade.config.yaml': 'server:\n  port: 70000\n  colour: red\n__proto__: {}\n',
    });
    const error = configErrorOf(() => loadConfig({ env: {}, cwd }));
    expect(error.issues.map((issue) => issue.path).sort()).toEqual([
      '__proto__',
      'server.colour',
      'server.port',
    ]);
  });

  it('is refused in one line naming the place when it is not valid YAML', () => {
    for (const [text, reason] of [
      ['server:\n  port: 1\nhost: x: y\n', /at line 3, column \d+$/],
      ['server:\n\tport: 1\n', /Tabs are not allowed/],
      ['a: 1\na: 2\n', /Map keys must be unique/],
      ['log: {}\n---\nserver: {}\n', /multiple documents/],
      ['log: !!js/function x\n', /Unresolved tag/],
      ['', /holds no document/],
    ] as const) {
      const cwd = folder({ 'b.yaml': text });
      const error = configErrorOf(() => loadConfig({ env: {}, cwd, configPath: 'b.yaml' }));
      expect(error.issues).toHaveLength(1);
      expect(error.issues[0]?.path).toBe(join(cwd, 'b.yaml'));
      expect(error.issues[0]?.message, text).toMatch(/^not valid YAML: /);
      expect(error.issues[0]?.message, text).toMatch(reason);
      expect(error.issues[0]?.message).not.toContain('\n');
    }
  });

  it('makes the command exit 78 with one line, as a JSON syntax error does', async () => {
    const cwd = folder({ 'bad.yaml': 'server: {port: 1\n', 'bad.json': '{"server":' });
    for (const name of ['bad.yaml', 'bad.json']) {
      const err: string[] = [];
      const status = await runCli(
        ['migrate', '--config', join(cwd, name)],
        { out: () => undefined, err: (text) => err.push(text) },
        { LOG_LEVEL: 'silent' },
      );
      expect(status, name).toBe(78);
      expect(err.join('\n').trim().split('\n'), name).toEqual([
        'brigade: invalid configuration:',
        expect.stringMatching(
          new RegExp(
            `^  - ${join(cwd, name)}: not valid ${name.endsWith('yaml') ? 'YAML' : 'JSON'}: `,
          ),
        ),
      ]);
    }
  });

  it('is refused when it sits beside another default config file', () => {
    const cwd = folder({ 'brigade.config.json': '{}', 'brigade.config.yml': 'log: {}\n' });
    const error = configErrorOf(() => loadConfig({ env: {}, cwd }));
    expect(error.issues[0]?.message).toMatch(/^more than one config file: /);
  });
});

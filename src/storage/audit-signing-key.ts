import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseSigningKey } from '../domain/audit/audit-signing.ts';

/**
 * Loads the audit checkpoint signing key: `configured` (from `BRIGADE_AUDIT_SIGNING_KEY`) when
 * set; otherwise, when `keyFile` is given (embedded mode), the key kept there, generated on the
 * first start and written with mode 0600. Returns undefined when neither applies (server mode
 * without a key: no checkpoints are written). The key never goes to the database or a log.
 */
export async function loadAuditSigningKey(options: {
  readonly configured: string | undefined;
  readonly keyFile: string | undefined;
  /** Generate the key file when it is missing (false for read-only callers such as the CLI). */
  readonly generate?: boolean;
}): Promise<KeyObject | undefined> {
  if (options.configured !== undefined) return parseSigningKey(options.configured);
  const file = options.keyFile;
  if (file === undefined) return undefined;
  try {
    return await readKeyFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (options.generate === false) return undefined;
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  await mkdir(dirname(file), { recursive: true });
  try {
    // 'wx': a process starting at the same moment keeps the key the first one wrote.
    await writeFile(file, pem, { mode: 0o600, flag: 'wx' });
    return privateKey;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return readKeyFile(file);
  }
}

async function readKeyFile(file: string): Promise<KeyObject> {
  const text = await readFile(file, 'utf8');
  if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600);
  try {
    return parseSigningKey(text);
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`);
  }
}

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type MasterKeys, parseMasterKey, type VaultKey } from '../domain/tools/vault-crypto.ts';

/**
 * Loads the vault's master keys: `configured` (`BRIGADE_MASTER_KEY`, base64 of 32 bytes) and
 * `previous` (`BRIGADE_MASTER_KEY_PREVIOUS`, during a rotation). When no key is configured and
 * `keyFile` is given (embedded mode), the key kept there, generated on the first start with
 * mode 0600. Returns undefined in server mode without a key: the vault is then unavailable
 * (credentials cannot be stored or used). Keys never go to the database or a log.
 */
export async function loadMasterKeys(options: {
  readonly configured: string | undefined;
  readonly previous: string | undefined;
  readonly keyFile: string | undefined;
  /** Generate the key file when it is missing (false for read-only callers such as the CLI). */
  readonly generate?: boolean;
}): Promise<MasterKeys | undefined> {
  const previous = options.previous === undefined ? undefined : parseMasterKey(options.previous);
  let current: VaultKey | undefined;
  if (options.configured !== undefined) current = parseMasterKey(options.configured);
  else if (options.keyFile !== undefined)
    current = await loadKeyFile(options.keyFile, options.generate !== false);
  if (current === undefined) return undefined;
  return { current, previous: previous?.id === current.id ? undefined : previous };
}

async function loadKeyFile(file: string, generate: boolean): Promise<VaultKey | undefined> {
  try {
    return await readKeyFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (!generate) return undefined;
  const encoded = randomBytes(32).toString('base64');
  await mkdir(dirname(file), { recursive: true });
  try {
    // 'wx': a process starting at the same moment keeps the key the first one wrote.
    await writeFile(file, `${encoded}\n`, { mode: 0o600, flag: 'wx' });
    return parseMasterKey(encoded);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return readKeyFile(file);
  }
}

async function readKeyFile(file: string): Promise<VaultKey> {
  const text = await readFile(file, 'utf8');
  if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600);
  try {
    return parseMasterKey(text);
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`);
  }
}

import { existsSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { parseDocument } from 'yaml';

/**
 * The configuration files looked for in the working directory, in this order, when neither
 * `--config` nor `BRIGADE_CONFIG` names one.
 */
export const defaultConfigFiles = [
  'brigade.config.json',
  'brigade.config.yaml',
  'brigade.config.yml',
] as const;

/**
 * The configuration file of `cwd`: the one of {@link defaultConfigFiles} that exists
 * (`brigade.config.json` when none does, which is then optional). Two of them are refused
 * rather than one silently winning: `others` lists the rest.
 */
export function locateConfigFile(cwd: string): { path: string; others: string[] } {
  const present = defaultConfigFiles.map((name) => resolve(cwd, name)).filter(existsSync);
  const [path = resolve(cwd, defaultConfigFiles[0]), ...others] = present;
  return { path, others };
}

/** Whether `path` holds YAML (`.yaml` or `.yml`); anything else is read as JSON. */
export function isYamlPath(path: string): boolean {
  return ['.yaml', '.yml'].includes(extname(path).toLowerCase());
}

/** A parsed configuration file, or the one-line reason it does not parse. */
export type ParsedConfigText = { readonly value: unknown } | { readonly problem: string };

/**
 * Parses a configuration file's text as JSON, or as YAML (1.2, core schema: no custom types)
 * when its name ends in `.yaml` or `.yml`. A YAML error, a warning (an unknown tag, which would
 * be read as a plain string), several documents and an empty file are all refused, with the
 * first line of the parser's message (it names the line and column).
 */
export function parseConfigText(path: string, text: string): ParsedConfigText {
  if (!isYamlPath(path)) {
    try {
      return { value: JSON.parse(text) as unknown };
    } catch (error) {
      return { problem: `not valid JSON: ${(error as Error).message}` };
    }
  }
  const document = parseDocument(text, { uniqueKeys: true });
  const [first] = [...document.errors, ...document.warnings];
  if (first !== undefined)
    return { problem: `not valid YAML: ${first.message.split('\n')[0]?.replace(/:$/, '')}` };
  if (document.contents === null)
    return { problem: 'not valid YAML: the file holds no document (write {} for the defaults)' };
  return { value: document.toJS({ maxAliasCount: 100 }) as unknown };
}

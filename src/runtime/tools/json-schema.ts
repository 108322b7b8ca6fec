import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import formats from 'ajv-formats';
import { RE2JS } from 're2js';
import { toRe2Pattern } from './re2-pattern.ts';

/** Largest tool argument schema accepted, in characters of JSON. */
export const maxSchemaChars = 32_768;

/**
 * `pattern` and `patternProperties` run on RE2 (re2js: linear time, no backtracking; rewritten
 * by `toRe2Pattern` to keep their JavaScript meaning), never on
 * the JavaScript engine: a schema is a tenant admin's (or an MCP server's) input, and a pattern
 * such as `^(a+)+$` on V8's backtracking engine would stall the event loop for every tenant on
 * an argument of 30 characters. RE2 refuses what it cannot match in linear time (back-references,
 * look-around): such a schema does not compile, so a tool definition is refused with a 422.
 */
const re2: RegExpEngine = Object.assign(
  (pattern: string, flags: string) => {
    // Ajv passes `u` (unicode); RE2 is Unicode-aware already and takes no JavaScript flags.
    void flags;
    const compiled = RE2JS.compile(toRe2Pattern(pattern));
    return { test: (text: string) => compiled.test(text) };
  },
  { code: 'RE2JS.compile' },
);

// ajv-formats is CommonJS: under NodeNext its default import is the module object.
const addFormats = ((formats as unknown as { default?: unknown }).default ?? formats) as (
  instance: Ajv,
) => Ajv;

function createAjv(): Ajv {
  const instance = new Ajv({
    allErrors: true,
    strict: false,
    validateSchema: true,
    logger: false,
    // Presence is own properties only: otherwise an optional argument named `toString` or
    // `constructor` was "present" (Object.prototype's) and failed its type in every call.
    ownProperties: true,
    code: { regExp: re2 },
    // Each schema stands alone: with Ajv's default, a schema's `$id` (and those inside it)
    // joined the instance every tenant's schemas share, so one tenant's `$id` made another's
    // schema of the same `$id` fail to compile (every call of that tool refused), and a
    // `$ref` could resolve to another tenant's schema.
    addUsedSchema: false,
  });
  // `format` is checked (email, uri, date-time…): admin schemas rely on it for recipients and URLs.
  addFormats(instance);
  return instance;
}

/**
 * Schemas one Ajv instance compiles before a fresh instance replaces it. An Ajv instance keeps
 * every schema it ever compiled (its own cache, keyed by the schema object, failed compiles
 * included), each `pattern` it saw and every `$id`, and offers no safe way to forget them; the
 * schemas are tenant admins' and MCP servers' input, so one instance for the process's life
 * grew by every distinct one (~23 KB for one of 20 properties with patterns), without bound. The validators compiled by an instance
 * keep it alive, so the instance and every validator it compiled are dropped together.
 */
const maxCompilesPerInstance = 2_000;
let ajv = createAjv();
let compiles = 0;
/** The current instance's validators by schema JSON, least recently used first. */
const compiled = new Map<string, ValidateFunction>();

function describe(error: ErrorObject): string {
  const at = error.instancePath === '' ? 'arguments' : `'${error.instancePath.slice(1)}'`;
  if (error.keyword === 'required')
    return `missing required argument '${String(error.params['missingProperty'])}'`;
  if (error.keyword === 'additionalProperties')
    return `unknown argument '${String(error.params['additionalProperty'])}'`;
  return `${at} ${error.message ?? 'is invalid'}`;
}

function compile(schema: Readonly<Record<string, unknown>>): ValidateFunction {
  const key = JSON.stringify(schema);
  const cached = compiled.get(key);
  if (cached !== undefined) {
    compiled.delete(key);
    compiled.set(key, cached);
    return cached;
  }
  if (compiles >= maxCompilesPerInstance) {
    ajv = createAjv();
    compiles = 0;
    compiled.clear();
  }
  compiles += 1;
  const validate = ajv.compile(schema);
  compiled.set(key, validate);
  return validate;
}

/**
 * Problems with a tool's argument schema, for a definition an admin submits: it must be valid
 * JSON Schema, an object schema, and reasonably small. Empty means usable.
 */
export function schemaProblems(schema: Readonly<Record<string, unknown>>): string[] {
  if (JSON.stringify(schema).length > maxSchemaChars)
    return [`the schema is larger than ${maxSchemaChars} characters`];
  if (schema['type'] !== 'object') return ["the schema's type must be 'object'"];
  // Ajv cannot tell a declared `__proto__` property from Object.prototype: refused outright.
  if (JSON.stringify(schema).includes('"__proto__"'))
    return ["'__proto__' may not be used as a property name"];
  try {
    compile(schema);
    return [];
  } catch (error) {
    return [(error as Error).message];
  }
}

/**
 * Validates tool arguments against their JSON Schema with Ajv (every keyword Ajv supports, not
 * a subset). Returns the problems; empty means valid. A schema that does not compile makes
 * every call invalid rather than letting it through.
 */
export function validateAgainstSchema(
  schema: Readonly<Record<string, unknown>>,
  input: unknown,
): string[] {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    return ['arguments must be a JSON object'];
  let validate: ValidateFunction;
  try {
    validate = compile(schema);
  } catch {
    return ["the tool's argument schema is invalid"];
  }
  if (validate(input)) return [];
  return (validate.errors ?? []).map(describe);
}

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { schemaProblems, validateAgainstSchema } from './json-schema.ts';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** A distinct object schema (its own property name and pattern). */
function schemaNumber(index: number): Record<string, unknown> {
  return {
    type: 'object',
    properties: { [`p${index}`]: { type: 'string', pattern: `^q${index}[a-z]*$` } },
  };
}

describe('tool argument schemas', () => {
  it('validate arguments against a compiled schema', () => {
    const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
    expect(schemaProblems(schema)).toEqual([]);
    expect(validateAgainstSchema(schema, { n: 1 })).toEqual([]);
    expect(validateAgainstSchema(schema, {})).toEqual(["missing required argument 'n'"]);
  });

  it('keep no schema once thousands of others were compiled after it', async () => {
    // Tenant admins and MCP servers choose schemas: compiling one must not retain it forever.
    const first = new WeakRef(schemaNumber(99_999));
    expect(schemaProblems(first.deref() ?? {})).toEqual([]);
    for (let index = 0; index < 2_100; index += 1)
      expect(schemaProblems(schemaNumber(index))).toEqual([]);
    // A WeakRef's target is kept for the job that created or read it.
    await new Promise((resolve) => setTimeout(resolve, 0));
    collectGarbage();
    expect(first.deref()).toBeUndefined();
  });

  it('keep validating with a schema compiled before the validators were renewed', () => {
    const schema = { type: 'object', properties: { s: { type: 'string', maxLength: 2 } } };
    expect(validateAgainstSchema(schema, { s: 'abc' })).toEqual([
      "'s' must NOT have more than 2 characters",
    ]);
    for (let index = 0; index < 2_100; index += 1) schemaProblems(schemaNumber(index + 5_000));
    expect(validateAgainstSchema(schema, { s: 'abc' })).toEqual([
      "'s' must NOT have more than 2 characters",
    ]);
    expect(validateAgainstSchema(schema, { s: 'ab' })).toEqual([]);
  });
});

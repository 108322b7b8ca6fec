import { describe, expect, it } from 'vitest';
import { schemaProblems, validateAgainstSchema } from './json-schema.ts';

describe('tool argument schemas', () => {
  it("stand alone: one tenant's $id neither blocks nor serves another's schema", () => {
    const first = {
      $id: 'https://schemas.example/tool',
      type: 'object',
      properties: { to: { $id: 'https://schemas.example/recipient', type: 'string' } },
    };
    // Another tenant's schema of the same $id, saying something else.
    const second = { $id: 'https://schemas.example/tool', type: 'object', required: ['amount'] };
    expect(schemaProblems(first)).toEqual([]);
    expect(schemaProblems(second)).toEqual([]);
    expect(validateAgainstSchema(first, { to: 'ada' })).toEqual([]);
    expect(validateAgainstSchema(second, { to: 'ada' })).toEqual([
      "missing required argument 'amount'",
    ]);
    // A reference to a schema another tenant defined does not resolve to it.
    const borrowing = {
      type: 'object',
      properties: { to: { $ref: 'https://schemas.example/recipient' } },
    };
    expect(schemaProblems(borrowing)).not.toEqual([]);
    // A schema's references to itself still work.
    const own = {
      $id: 'https://schemas.example/own',
      type: 'object',
      properties: { to: { $ref: '#/$defs/name' } },
      $defs: { name: { type: 'string' } },
    };
    expect(schemaProblems(own)).toEqual([]);
    expect(validateAgainstSchema(own, { to: 1 })).toEqual(["'to' must be string"]);
  });
});

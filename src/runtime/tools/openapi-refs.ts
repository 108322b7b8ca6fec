/** Why a `$ref` of an OpenAPI document could not be resolved. */
export type RefProblemCode = 'external_ref' | 'ref_not_found' | 'ref_cycle' | 'ref_too_large';

/** A `$ref` that cannot be followed; the message names the reference, never document text. */
export class RefError extends Error {
  readonly code: RefProblemCode;
  constructor(code: RefProblemCode, message: string) {
    super(message);
    this.name = 'RefError';
    this.code = code;
  }
}

/** Bounds on inlining one operation's references (a small document can expand exponentially). */
export interface RefLimits {
  /** Deepest nesting of the inlined result, in objects and arrays. */
  readonly maxDepth: number;
  /** Most values (objects, arrays and scalars) one operation may expand to. */
  readonly maxNodes: number;
}

/** The limits used when none are given. */
export const defaultRefLimits: RefLimits = { maxDepth: 64, maxNodes: 20_000 };

/** Keys whose values are data (copied as they are, never resolved). */
const dataKeys = new Set(['default', 'enum', 'const']);
/** Keys left out of inlined schemas: documentation only, and often large. */
const droppedKeys = new Set(['example', 'examples', 'xml', 'externalDocs']);
/** Keys whose values map names to schemas (a property may be called `example` or `$ref`). */
const schemaMapKeys = new Set(['properties', 'patternProperties', 'definitions', '$defs']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Looks up a local JSON pointer (`#/components/schemas/Pet`, RFC 6901) in `document`. */
function lookup(document: unknown, ref: string): unknown {
  if (!ref.startsWith('#/') && ref !== '#')
    throw new RefError('external_ref', `'${ref}' is not a local reference (#/…)`);
  let node = document;
  for (const raw of ref === '#' ? [] : ref.slice(2).split('/')) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    } catch {
      throw new RefError('ref_not_found', `'${ref}' is not a valid JSON pointer`);
    }
    // Own properties only: `__proto__` or `constructor` must not reach Object.prototype.
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, segment))
      throw new RefError('ref_not_found', `'${ref}' does not exist in the document`);
    node = (node as Record<string, unknown>)[segment];
  }
  return node;
}

/**
 * A resolver of local references for one operation: `shallow` follows a chain of `$ref`s to an
 * object (parameters, request bodies, path items), `inline` returns a schema with every
 * reference replaced by its target. Only `#/…` pointers into the same document are followed
 * (`external_ref` otherwise); a reference that reaches itself is `ref_cycle`; the expansion is
 * bounded by {@link RefLimits} (`ref_too_large`), counted over everything the resolver inlines.
 */
export function createRefResolver(document: unknown, limits: RefLimits = defaultRefLimits) {
  let nodes = 0;

  function count(depth: number): void {
    nodes += 1;
    if (nodes > limits.maxNodes)
      throw new RefError('ref_too_large', `expands to more than ${limits.maxNodes} values`);
    if (depth > limits.maxDepth)
      throw new RefError('ref_too_large', `is nested deeper than ${limits.maxDepth} levels`);
  }

  function copy(value: unknown, depth: number): unknown {
    count(depth);
    if (Array.isArray(value)) return value.map((item) => copy(item, depth + 1));
    if (!isRecord(value)) return value;
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, copy(item, depth + 1)]),
    );
  }

  function inlineAt(value: unknown, stack: readonly string[], depth: number): unknown {
    count(depth);
    if (Array.isArray(value)) return value.map((item) => inlineAt(item, stack, depth + 1));
    if (!isRecord(value)) return value;
    const ref = value['$ref'];
    if (typeof ref === 'string') {
      if (stack.includes(ref))
        throw new RefError(
          'ref_cycle',
          `'${ref}' refers to itself (${[...stack, ref].join(' → ')})`,
        );
      const target = inlineAt(lookup(document, ref), [...stack, ref], depth);
      const siblings = Object.entries(value).filter(
        ([key]) => key !== '$ref' && !droppedKeys.has(key),
      );
      if (siblings.length === 0 || !isRecord(target)) return target;
      // OpenAPI 3.1 allows keywords beside `$ref` (a description, say); they refine the target.
      return { ...target, ...inlineEntries(siblings, stack, depth) };
    }
    return inlineEntries(
      Object.entries(value).filter(([key]) => !droppedKeys.has(key)),
      stack,
      depth,
    );
  }

  function inlineEntries(
    entries: readonly (readonly [string, unknown])[],
    stack: readonly string[],
    depth: number,
  ): Record<string, unknown> {
    return Object.fromEntries(
      entries.map(([key, item]) => [key, inlineKeyword(key, item, { stack, depth: depth + 1 })]),
    );
  }

  function inlineKeyword(
    key: string,
    value: unknown,
    at: { readonly stack: readonly string[]; readonly depth: number },
  ): unknown {
    if (dataKeys.has(key)) return copy(value, at.depth);
    if (!schemaMapKeys.has(key) || !isRecord(value)) return inlineAt(value, at.stack, at.depth);
    count(at.depth);
    return Object.fromEntries(
      Object.entries(value).map(([name, schema]) => [
        name,
        inlineAt(schema, at.stack, at.depth + 1),
      ]),
    );
  }

  return {
    /** Follows `$ref`s until an object without one; undefined when `value` is not an object. */
    shallow(value: unknown): Record<string, unknown> | undefined {
      const seen: string[] = [];
      let node = value;
      while (isRecord(node) && typeof node['$ref'] === 'string') {
        const ref = node['$ref'];
        if (seen.includes(ref))
          throw new RefError(
            'ref_cycle',
            `'${ref}' refers to itself (${[...seen, ref].join(' → ')})`,
          );
        seen.push(ref);
        node = lookup(document, ref);
      }
      return isRecord(node) ? node : undefined;
    },
    /** A copy of `value` with every reference inlined and documentation-only keys left out. */
    inline(value: unknown): unknown {
      return inlineAt(value, [], 0);
    },
  };
}

/** The resolver's type. */
export type RefResolver = ReturnType<typeof createRefResolver>;

/**
 * OpenAPI 3.0's schema dialect made compilable by Ajv: a boolean `exclusiveMaximum` or
 * `exclusiveMinimum` (beside `maximum`/`minimum`) in the numeric form of later drafts, and
 * `nullable` without a `type` dropped (null is allowed anyway); everything else as it is.
 * Values of `default`, `enum` and `const` are data and names in `properties` are names.
 */
export function normalizeSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(normalizeSchema);
  if (!isRecord(schema)) return schema;
  const result: Record<string, unknown> = Object.fromEntries(
    Object.entries(schema).map(([key, value]) => {
      if (dataKeys.has(key)) return [key, value];
      if (schemaMapKeys.has(key) && isRecord(value))
        return [
          key,
          Object.fromEntries(
            Object.entries(value).map(([name, item]) => [name, normalizeSchema(item)]),
          ),
        ];
      return [key, normalizeSchema(value)];
    }),
  );
  for (const [exclusive, bound] of [
    ['exclusiveMaximum', 'maximum'],
    ['exclusiveMinimum', 'minimum'],
  ] as const) {
    if (typeof result[exclusive] !== 'boolean') continue;
    if (result[exclusive] === true && typeof result[bound] === 'number') {
      result[exclusive] = result[bound];
      delete result[bound];
    } else delete result[exclusive];
  }
  if (result['nullable'] !== undefined && result['type'] === undefined) delete result['nullable'];
  return result;
}

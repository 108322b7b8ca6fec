import type { Role } from '../../domain/identity/permissions.ts';
import { reservedHeaderNames } from '../../domain/tools/reserved-headers.ts';
import type { HttpToolDefinition, ToolAuth, ToolRisk } from '../../domain/tools/tool-types.ts';
import { toolMethods } from '../../domain/tools/tool-types.ts';
import { normalizeSchema, type RefResolver } from './openapi-refs.ts';

/** Options of an OpenAPI import that shape each generated tool. */
export interface OpenApiImportOptions {
  /** Replaces the document's server URL (required when that is relative or missing). */
  readonly baseUrl?: string | undefined;
  /** The operationIds to import; absent means every operation. */
  readonly operations?: readonly string[] | undefined;
  /** Prepended as is to every tool name (`petstore_`). */
  readonly namePrefix?: string | undefined;
  /** The risk of every tool; absent: by method (GET read, POST/PUT/PATCH write, DELETE sensitive). */
  readonly risk?: ToolRisk | undefined;
  /** Per-operation risk, by operationId; wins over `risk`. */
  readonly riskByOperation?: Readonly<Record<string, ToolRisk>> | undefined;
  /** The credential every tool presents; without `scheme`, mapped from the document's security. */
  readonly auth?:
    | {
        readonly credential: string;
        readonly scheme?: ToolAuth['scheme'] | undefined;
        readonly headerName?: string | undefined;
      }
    | undefined;
  readonly allowedRoles?: readonly Role[] | undefined;
}

/** An operation that cannot become a tool because it uses something HTTP tools do not do. */
export class UnsupportedOperation extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'UnsupportedOperation';
  }
}

/** Problem codes of one operation that are not reference problems. */
export type OperationProblemCode = 'invalid_operation' | 'invalid_path' | 'invalid_name';

/** An operation that is wrong (not merely unsupported). */
export class OperationProblem extends Error {
  readonly code: OperationProblemCode;
  constructor(code: OperationProblemCode, message: string) {
    super(message);
    this.name = 'OperationProblem';
    this.code = code;
  }
}

/** One operation of the document, with what it needs to become a tool. */
export interface OperationContext {
  readonly document: Record<string, unknown>;
  readonly resolver: RefResolver;
  /** The server URL, absolute, without a trailing slash. */
  readonly baseUrl: string;
  readonly options: OpenApiImportOptions;
  readonly path: string;
  /** Lower-case, as in the document. */
  readonly method: string;
  readonly pathItem: Record<string, unknown>;
  readonly operation: Record<string, unknown>;
  readonly operationId: string;
}

/** The default risk of each method. */
export const riskByMethod: Readonly<Record<(typeof toolMethods)[number], ToolRisk>> = {
  GET: 'read',
  POST: 'write',
  PUT: 'write',
  PATCH: 'write',
  DELETE: 'sensitive',
};

const forbiddenHeaders = reservedHeaderNames;

/** Whether a value is a plain JSON object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** An own property of a JSON object (never one inherited from Object.prototype). */
export function own(value: unknown, key: string): unknown {
  return isRecord(value) && Object.hasOwn(value, key) ? value[key] : undefined;
}

/**
 * A tool name from an operationId: camelCase split with `_`, other characters folded to `_`,
 * lower-case, the prefix in front, at most 64 characters (the tool-name rules).
 */
export function toolNameOf(operationId: string, prefix = ''): string {
  const snake = operationId
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  const name = `${prefix}${snake}`.slice(0, 64).replace(/_+$/, '');
  if (!/^[a-z][a-z0-9_]{0,63}$/.test(name))
    throw new OperationProblem(
      'invalid_name',
      `operationId '${operationId}' gives no valid tool name (lower-case letter first); use namePrefix`,
    );
  return name;
}

/** A URL-template argument name for a parameter name (`pet-id` → `pet_id`). */
function argumentName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(cleaned) ? cleaned : `_${cleaned}`;
}

function typesOf(schema: Record<string, unknown>): string[] {
  const type = schema['type'];
  return Array.isArray(type) ? type.map(String) : typeof type === 'string' ? [type] : [];
}

interface Arguments {
  readonly properties: Map<string, unknown>;
  readonly required: string[];
  readonly pathArguments: Map<string, string>;
  readonly query: string[];
}

function parametersOf(context: OperationContext): Record<string, unknown>[] {
  const merged = new Map<string, Record<string, unknown>>();
  for (const list of [own(context.pathItem, 'parameters'), own(context.operation, 'parameters')]) {
    if (list === undefined) continue;
    if (!Array.isArray(list))
      throw new OperationProblem('invalid_operation', 'parameters is not a list');
    for (const item of list) {
      const parameter = context.resolver.shallow(item);
      const name = own(parameter, 'name');
      const location = own(parameter, 'in');
      if (parameter === undefined || typeof name !== 'string' || typeof location !== 'string')
        throw new OperationProblem('invalid_operation', "a parameter has no 'name' or 'in'");
      merged.set(`${location}:${name}`, parameter);
    }
  }
  return [...merged.values()];
}

function addParameter(
  context: OperationContext,
  parameter: Record<string, unknown>,
  into: Arguments,
): void {
  const name = String(parameter['name']);
  const location = String(parameter['in']);
  if (location === 'cookie') throw new UnsupportedOperation(`cookie parameter '${name}'`);
  if (location === 'header') {
    if (parameter['required'] === true)
      throw new UnsupportedOperation(`required header parameter '${name}'`);
    return; // An optional header is left out: HTTP tools send no per-call headers.
  }
  if (location !== 'path' && location !== 'query')
    throw new OperationProblem('invalid_operation', `parameter '${name}' is in '${location}'`);
  if (own(parameter, 'schema') === undefined)
    throw new UnsupportedOperation(`parameter '${name}' has no schema ('content' parameters)`);
  const schema = context.resolver.inline(parameter['schema']);
  if (!isRecord(schema))
    throw new OperationProblem('invalid_operation', `parameter '${name}' has no schema object`);
  const types = typesOf(schema);
  if (types.includes('object')) throw new UnsupportedOperation(`object parameter '${name}'`);
  if (types.includes('array')) {
    const style = own(parameter, 'style') ?? 'form';
    if (location === 'path' || style !== 'form' || own(parameter, 'explode') === false)
      throw new UnsupportedOperation(
        `array parameter '${name}' in ${location} (only exploded form-style query arrays)`,
      );
  }
  const argument = argumentName(name);
  if (into.properties.has(argument))
    throw new UnsupportedOperation(`two parameters share the argument name '${argument}'`);
  const description = own(parameter, 'description');
  into.properties.set(
    argument,
    typeof description === 'string' && schema['description'] === undefined
      ? { ...schema, description }
      : schema,
  );
  if (location === 'path' || parameter['required'] === true) into.required.push(argument);
  if (location === 'path') into.pathArguments.set(name, argument);
  else into.query.push(`${encodeURIComponent(name)}={${argument}}`);
}

function pathTemplate(path: string, pathArguments: ReadonlyMap<string, string>): string {
  if (!path.startsWith('/') || /[?#]/.test(path))
    throw new OperationProblem(
      'invalid_path',
      'the path must start with / and have no query or fragment',
    );
  const used = new Set<string>();
  const template = path.replace(/\{([^{}]*)\}/g, (_, name: string) => {
    const argument = pathArguments.get(name);
    if (argument === undefined)
      throw new OperationProblem('invalid_path', `{${name}} is not a declared path parameter`);
    used.add(name);
    return `{${argument}}`;
  });
  for (const name of pathArguments.keys())
    if (!used.has(name))
      throw new OperationProblem('invalid_path', `path parameter '${name}' is not in the path`);
  return template;
}

/** The properties of an object schema, `allOf` parts merged; undefined when it is not one. */
function objectParts(schema: unknown): Arguments['properties'] | undefined {
  if (!isRecord(schema) || ['oneOf', 'anyOf', 'not'].some((key) => own(schema, key) !== undefined))
    return undefined;
  const types = typesOf(schema);
  if (types.length > 0 && !(types.length === 1 && types[0] === 'object')) return undefined;
  const merged = new Map<string, unknown>();
  const allOf = own(schema, 'allOf');
  if (allOf !== undefined) {
    if (!Array.isArray(allOf)) return undefined;
    for (const part of allOf) {
      const properties = objectParts(part);
      if (properties === undefined) return undefined;
      for (const [key, value] of properties) merged.set(key, value);
    }
  }
  const properties = own(schema, 'properties');
  if (isRecord(properties))
    for (const [key, value] of Object.entries(properties)) merged.set(key, value);
  if (types.length === 0 && allOf === undefined && !isRecord(properties)) return undefined;
  return merged;
}

function requiredOf(schema: unknown): string[] {
  const own_ = own(schema, 'required');
  const parts = own(schema, 'allOf');
  return [
    ...(Array.isArray(own_) ? own_.filter((item): item is string => typeof item === 'string') : []),
    ...(Array.isArray(parts) ? parts.flatMap(requiredOf) : []),
  ];
}

/** Adds the JSON body's top-level properties as arguments; returns its `additionalProperties`. */
function addBody(context: OperationContext, into: Arguments): { additional: unknown } {
  const declared = own(context.operation, 'requestBody');
  if (declared === undefined) return { additional: false };
  const body = context.resolver.shallow(declared);
  const content = own(body, 'content');
  const types = isRecord(content) ? Object.keys(content) : [];
  const json = types.find((type) => /^application\/([\w.-]+\+)?json\s*(;.*)?$/i.test(type));
  if (json === undefined)
    throw new UnsupportedOperation(
      `request body of type ${types.join(', ') || '(none)'} (only JSON bodies)`,
    );
  const method = context.method.toUpperCase();
  if (method === 'GET' || method === 'DELETE')
    throw new UnsupportedOperation(`a request body on ${method} (HTTP tools send none)`);
  const schema = context.resolver.inline(
    own(context.resolver.shallow(own(content, json)), 'schema') ?? { type: 'object' },
  );
  const properties = objectParts(schema);
  if (properties === undefined)
    throw new UnsupportedOperation('a request body that is not a JSON object with properties');
  const readOnly = new Set(
    [...properties].filter(([, value]) => own(value, 'readOnly') === true).map(([key]) => key),
  );
  for (const [key, value] of properties) {
    if (readOnly.has(key)) continue;
    if (into.properties.has(key))
      throw new UnsupportedOperation(`body property '${key}' has the name of a parameter`);
    into.properties.set(key, value);
  }
  if (own(body, 'required') === true)
    for (const key of new Set(requiredOf(schema)))
      if (properties.has(key) && !readOnly.has(key)) into.required.push(key);
  return { additional: own(schema, 'additionalProperties') };
}

function mappedScheme(
  scheme: Record<string, unknown> | undefined,
): Omit<ToolAuth, 'credential'> | string {
  const type = own(scheme, 'type');
  const httpScheme = String(own(scheme, 'scheme') ?? '').toLowerCase();
  if (type === 'http' && httpScheme === 'bearer') return { scheme: 'bearer' };
  if (type === 'http' && httpScheme === 'basic') return { scheme: 'basic' };
  if (type === 'oauth2' || type === 'openIdConnect') return { scheme: 'bearer' };
  const name = own(scheme, 'name');
  if (type === 'apiKey' && own(scheme, 'in') === 'header' && typeof name === 'string') {
    if (!/^[A-Za-z0-9-]{1,64}$/.test(name) || forbiddenHeaders.has(name.toLowerCase()))
      return `apiKey header '${name}' is not a usable header name`;
    return { scheme: 'header', headerName: name };
  }
  return `${String(type)}${type === 'apiKey' ? ` in ${String(own(scheme, 'in'))}` : ` ${httpScheme}`}`;
}

/** The tool's auth: explicit, or mapped from the operation's (else the document's) security. */
function authOf(context: OperationContext): ToolAuth | undefined {
  const auth = context.options.auth;
  if (auth === undefined) return undefined;
  if (auth.scheme !== undefined)
    return {
      credential: auth.credential,
      scheme: auth.scheme,
      ...(auth.headerName === undefined ? {} : { headerName: auth.headerName }),
    };
  const security = own(context.operation, 'security') ?? own(context.document, 'security');
  if (!Array.isArray(security) || security.length === 0) return undefined;
  const schemes = own(own(context.document, 'components'), 'securitySchemes');
  const refused: string[] = [];
  let anonymous = false;
  for (const requirement of security) {
    const names = isRecord(requirement) ? Object.keys(requirement) : [];
    if (names.length === 0) anonymous = true;
    if (names.length !== 1) continue;
    const name = names[0] ?? '';
    const mapped = mappedScheme(context.resolver.shallow(own(schemes, name)));
    if (typeof mapped !== 'string') return { credential: auth.credential, ...mapped };
    refused.push(`'${name}' (${mapped})`);
  }
  if (anonymous) return undefined;
  throw new UnsupportedOperation(
    `security ${refused.join(', ') || 'of several schemes at once'} cannot be sent by HTTP tools; pass auth.scheme to choose`,
  );
}

function descriptionOf(context: OperationContext): string {
  const parts = [own(context.operation, 'summary'), own(context.operation, 'description')]
    .filter((part): part is string => typeof part === 'string' && part.trim() !== '')
    .map((part) => part.trim());
  const text =
    parts.length === 0 ? `${context.method.toUpperCase()} ${context.path}` : parts.join('\n\n');
  return text.length > 2_000 ? `${text.slice(0, 1_999)}…` : text;
}

/**
 * The HTTP tool definition for one operation: path and query parameters and the JSON body's
 * top-level properties become the arguments (the tool sends arguments not in the URL as the
 * JSON body), `{param}` placeholders go into the path and `name={param}` pairs into the
 * query. Throws {@link UnsupportedOperation}, {@link OperationProblem} or a reference error.
 */
export function toToolDefinition(context: OperationContext): HttpToolDefinition {
  const method = context.method.toUpperCase();
  if (!(toolMethods as readonly string[]).includes(method))
    throw new UnsupportedOperation(`method ${method} (HTTP tools use ${toolMethods.join(', ')})`);
  const toolMethod = method as (typeof toolMethods)[number];
  const name = toolNameOf(context.operationId, context.options.namePrefix);
  const into: Arguments = {
    properties: new Map(),
    required: [],
    pathArguments: new Map(),
    query: [],
  };
  for (const parameter of parametersOf(context)) addParameter(context, parameter, into);
  const path = pathTemplate(context.path, into.pathArguments);
  const { additional } = addBody(context, into);
  const query = into.query.length === 0 ? '' : `?${into.query.join('&')}`;
  const inputSchema: Record<string, unknown> = {
    type: 'object',
    properties: Object.fromEntries(
      [...into.properties].map(([name, schema]) => [name, normalizeSchema(schema)]),
    ),
    ...(into.required.length === 0 ? {} : { required: [...new Set(into.required)] }),
    ...(additional === undefined ? {} : { additionalProperties: additional }),
  };
  const auth = authOf(context);
  return {
    name,
    description: descriptionOf(context),
    risk:
      (own(context.options.riskByOperation, context.operationId) as ToolRisk | undefined) ??
      context.options.risk ??
      riskByMethod[toolMethod],
    method: toolMethod,
    urlTemplate: `${context.baseUrl}${path}${query}`,
    inputSchema,
    ...(auth === undefined ? {} : { auth }),
    ...(context.options.allowedRoles === undefined
      ? {}
      : { allowedRoles: context.options.allowedRoles }),
  };
}

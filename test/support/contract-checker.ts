import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';

/**
 * Checks HTTP responses against the server's own OpenAPI 3.1 document: the operation is found
 * by method and path template, its status and media type must be declared, a JSON body must
 * validate against the declared schema (Ajv, JSON Schema 2020-12) and carry no field the
 * schema does not declare, and an error of a problem+json operation must be RFC 9457
 * problem+json whose `status` is the HTTP status.
 */

/** The parts of an OpenAPI document the checker reads. */
export interface OpenApiDocument {
  readonly paths: Record<string, Record<string, OperationObject>>;
  readonly components?: Record<string, unknown>;
}

interface MediaObject {
  readonly schema?: unknown;
}

interface ResponseObject {
  readonly content?: Record<string, MediaObject>;
}

interface OperationObject {
  readonly operationId?: string;
  readonly parameters?: readonly { readonly name: string; readonly in: string }[];
  readonly requestBody?: unknown;
  readonly security?: readonly unknown[];
  readonly responses?: Record<string, ResponseObject>;
}

/** One operation of the document, with a matcher for concrete paths. */
export interface SpecOperation {
  readonly operationId: string;
  readonly method: string;
  readonly template: string;
  readonly hasBody: boolean;
  readonly queryParameters: readonly string[];
  /** Whether the operation declares a security requirement (public ones do not). */
  readonly secured: boolean;
  readonly responses: Readonly<Record<string, ResponseObject>>;
  readonly pattern: RegExp;
  readonly literalSegments: number;
}

/** A response as the client received it. */
export interface ObservedResponse {
  readonly method: string;
  /** The path without its query string. */
  readonly path: string;
  readonly status: number;
  readonly contentType: string | null;
  readonly text: string;
}

/** The verdict on one response. */
export interface ContractVerdict {
  readonly operation: SpecOperation | undefined;
  readonly problems: readonly string[];
}

/** Checks observed responses against one OpenAPI document. */
export interface ContractChecker {
  readonly operations: readonly SpecOperation[];
  find(method: string, path: string): SpecOperation | undefined;
  check(observed: ObservedResponse): ContractVerdict;
}

const documentId = 'https://brigade.test/openapi.json';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `#/components/...` refs made absolute, so a schema compiled alone resolves them. */
function absoluteRefs(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(absoluteRefs);
  if (!isRecord(schema)) return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([key, value]) => [
      key,
      key === '$ref' && typeof value === 'string' && value.startsWith('#')
        ? `${documentId}${value}`
        : absoluteRefs(value),
    ]),
  );
}

/** A response declaration, or the `components.responses` entry its `$ref` names. */
function resolveResponse(
  response: ResponseObject & { readonly $ref?: string },
  document: OpenApiDocument,
): ResponseObject {
  const name = /^#\/components\/responses\/(.+)$/.exec(response.$ref ?? '')?.[1];
  if (name === undefined) return response;
  const shared = (
    document.components?.['responses'] as Record<string, ResponseObject> | undefined
  )?.[name];
  if (shared === undefined) throw new Error(`unresolved response ${response.$ref}`);
  return shared;
}

function toOperation(
  template: string,
  method: string,
  context: { readonly operation: OperationObject; readonly document: OpenApiDocument },
): SpecOperation {
  const { operation, document } = context;
  const segments = template.split('/');
  const source = segments
    .map((segment) =>
      /^\{\w+\}$/.test(segment) ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return {
    operationId: operation.operationId ?? `${method} ${template}`,
    method: method.toUpperCase(),
    template,
    hasBody: operation.requestBody !== undefined,
    queryParameters: (operation.parameters ?? [])
      .filter((parameter) => parameter.in === 'query')
      .map((parameter) => parameter.name),
    secured: (operation.security ?? []).length > 0,
    responses: Object.fromEntries(
      Object.entries(operation.responses ?? {}).map(([status, response]) => [
        status,
        resolveResponse(response, document),
      ]),
    ),
    pattern: new RegExp(`^${source}$`),
    literalSegments: segments.filter((segment) => !segment.startsWith('{')).length,
  };
}

/** The media type of a Content-Type header, without parameters, lower-cased. */
export function mediaTypeOf(contentType: string | null): string | null {
  if (contentType === null) return null;
  return contentType.split(';')[0]?.trim().toLowerCase() ?? null;
}

const isJsonMedia = (media: string) => /^application\/([\w.-]+\+)?json$/.test(media);

/** Creates a {@link ContractChecker} for `document`. */
export function createContractChecker(document: OpenApiDocument): ContractChecker {
  const ajv = new Ajv2020({ strict: false, allErrors: true, logger: false });
  // ajv-formats is CommonJS: under NodeNext its default import is the module object.
  const addFormats = ((formats as unknown as { default?: unknown }).default ?? formats) as (
    instance: Ajv2020,
  ) => Ajv2020;
  addFormats(ajv);
  ajv.addSchema({ ...document, $id: documentId } as Record<string, unknown>);
  const operations = Object.entries(document.paths).flatMap(([template, methods]) =>
    Object.entries(methods).map(([method, operation]) =>
      toOperation(template, method, { operation, document }),
    ),
  );
  const validators = new Map<unknown, ValidateFunction>();
  const validatorOf = (schema: unknown): ValidateFunction => {
    let validate = validators.get(schema);
    if (validate === undefined) {
      validate = ajv.compile(absoluteRefs(schema) as Record<string, unknown>);
      validators.set(schema, validate);
    }
    return validate;
  };

  const find = (method: string, path: string) =>
    operations
      .filter((operation) => operation.method === method.toUpperCase())
      .filter((operation) => operation.pattern.test(path))
      .sort((a, b) => b.literalSegments - a.literalSegments)[0];

  return {
    operations,
    find,
    check(observed) {
      const operation = find(observed.method, observed.path);
      if (operation === undefined)
        return {
          operation,
          problems: [`no operation of the document matches ${observed.method} ${observed.path}`],
        };
      return { operation, problems: checkResponse({ operation, observed, validatorOf, ajv }) };
    },
  };
}

function checkResponse(options: {
  readonly operation: SpecOperation;
  readonly observed: ObservedResponse;
  readonly validatorOf: (schema: unknown) => ValidateFunction;
  readonly ajv: Ajv2020;
}): string[] {
  const { operation, observed } = options;
  const status = String(observed.status);
  const declared =
    operation.responses[status] ??
    operation.responses[`${status[0]}XX`] ??
    operation.responses['default'];
  if (declared === undefined)
    return [
      `status ${status} is not declared (declared: ${Object.keys(operation.responses).join(', ')})`,
    ];
  const content = declared.content ?? {};
  if (Object.keys(content).length === 0)
    return observed.text === '' ? [] : [`status ${status} declares no body, but one was sent`];
  const media = mediaTypeOf(observed.contentType);
  const mediaObject = media === null ? undefined : content[media];
  if (media === null || mediaObject === undefined)
    return [
      `content-type ${observed.contentType ?? '(none)'} for ${status}; declared: ${Object.keys(content).join(', ')}`,
    ];
  const problems: string[] = [];
  // An operation answering errors as problem+json answers every error that way (RFC 9457).
  const problemOperation = Object.values(operation.responses).some(
    (response) => response.content?.['application/problem+json'] !== undefined,
  );
  if (observed.status >= 400 && problemOperation && media !== 'application/problem+json')
    problems.push(`error ${status} is ${media}, not application/problem+json`);
  if (media === 'text/event-stream') return [...problems, ...checkEventStream(observed.text)];
  if (!isJsonMedia(media)) return problems;
  let body: unknown;
  try {
    body = JSON.parse(observed.text);
  } catch {
    return [...problems, `the ${media} body is not JSON: ${observed.text.slice(0, 80)}`];
  }
  if (media === 'application/problem+json' && isRecord(body) && body['status'] !== observed.status)
    problems.push(`problem status ${String(body['status'])} differs from HTTP ${status}`);
  if (mediaObject.schema === undefined) return problems;
  const validate = options.validatorOf(mediaObject.schema);
  if (!validate(body))
    problems.push(
      ...(validate.errors ?? [])
        .slice(0, 6)
        .map((error) => `body${error.instancePath} ${error.message ?? ''} ${formatParams(error)}`),
    );
  problems.push(...undeclaredFields(body, mediaObject.schema, { ajv: options.ajv, path: 'body' }));
  return problems;
}

function formatParams(error: { readonly params: unknown }): string {
  const text = JSON.stringify(error.params);
  return text === '{}' ? '' : text;
}

/** Each `data:` of an event stream is JSON (or the OpenAI stream's closing `[DONE]`). */
function checkEventStream(text: string): string[] {
  const problems: string[] = [];
  for (const block of text.split('\n\n')) {
    const data = block
      .split('\n')
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trimStart())
      .join('\n');
    if (data === '' || data === '[DONE]') continue;
    try {
      JSON.parse(data);
    } catch {
      problems.push(`event data is not JSON: ${data.slice(0, 80)}`);
    }
  }
  return problems;
}

/** Resolves a `#/...` pointer of the document registered with Ajv. */
function resolve(schema: unknown, ajv: Ajv2020): unknown {
  let current = schema;
  for (let hops = 0; hops < 20 && isRecord(current) && typeof current['$ref'] === 'string'; hops++)
    current = ajv.getSchema(
      (current['$ref'] as string).startsWith('#')
        ? `${documentId}${current['$ref']}`
        : current['$ref'],
    )?.schema;
  return current;
}

/**
 * The fields `value` has that `schema` does not declare, recursively. Clients generated from
 * the document never see such a field, so it is part of the answer only by accident. Objects
 * whose schema allows any property (`additionalProperties`, no `properties`) are not walked.
 */
function undeclaredFields(
  value: unknown,
  schema: unknown,
  context: { readonly ajv: Ajv2020; readonly path: string },
): string[] {
  const resolved = resolve(schema, context.ajv);
  if (!isRecord(resolved)) return [];
  const branches = [
    ...((resolved['allOf'] as unknown[] | undefined) ?? []),
    ...((resolved['anyOf'] as unknown[] | undefined) ?? []),
    ...((resolved['oneOf'] as unknown[] | undefined) ?? []),
  ].map((branch) => resolve(branch, context.ajv));
  const all = [resolved, ...branches].filter(isRecord);
  if (Array.isArray(value)) {
    const items = all.map((part) => part['items']).find((part) => part !== undefined);
    return items === undefined
      ? []
      : value.flatMap((item, index) =>
          undeclaredFields(item, items, { ...context, path: `${context.path}/${index}` }),
        );
  }
  if (!isRecord(value)) return [];
  const objectParts = all.filter((part) => isRecord(part['properties']));
  if (objectParts.length === 0) return [];
  if (
    all.some(
      (part) =>
        part['additionalProperties'] !== undefined && part['additionalProperties'] !== false,
    )
  )
    return [];
  const properties = new Map<string, unknown[]>();
  for (const part of objectParts)
    for (const [name, property] of Object.entries(part['properties'] as Record<string, unknown>))
      properties.set(name, [...(properties.get(name) ?? []), property]);
  return Object.entries(value).flatMap(([name, field]) => {
    const declared = properties.get(name);
    if (declared === undefined) return [`${context.path}/${name} is not declared by the schema`];
    return declared.flatMap((property) =>
      undeclaredFields(field, property, { ...context, path: `${context.path}/${name}` }),
    );
  });
}

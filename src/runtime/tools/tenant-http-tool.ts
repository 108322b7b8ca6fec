import { createHash } from 'node:crypto';
import { canonicalJson } from '../../domain/tools/arguments-hash.ts';
import type { HttpToolDefinition } from '../../domain/tools/tool-types.ts';
import { assertEgressAllowed, type EgressPolicy } from './egress-guard.ts';
import { secretForms, withoutSecretTail } from './output-guard.ts';
import { readCapped } from './read-capped.ts';
import type { ToolDefinition } from './tool-registry.ts';

const placeholder = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** The argument names a URL template uses. */
export function templateArguments(template: string): string[] {
  return [...template.matchAll(placeholder)].map((match) => match[1] ?? '');
}

/**
 * Problems with a URL template: it must be an absolute http(s) URL with a literal host (no
 * placeholder in the scheme, host or port, so arguments can never choose where a call goes).
 */
export function templateProblems(template: string): string[] {
  const origin = /^(https?:\/\/[^/?#]*)/i.exec(template)?.[1];
  if (origin === undefined) return ['the URL template must start with http:// or https://'];
  if (origin.includes('{')) return ['placeholders may not appear in the scheme, host or port'];
  // A brace left once every {name} is taken out is a placeholder that is not one ("{", "{a-b}",
  // "}"): it would reach the upstream verbatim instead of being filled.
  if (/[{}]/.test(template.replace(placeholder, 'x'))) {
    return ['a placeholder must be {name} (letters, digits and _, not starting with a digit)'];
  }
  const hashAt = template.indexOf('#');
  if (hashAt >= 0 && templateArguments(template.slice(hashAt)).length > 0)
    return ['placeholders may not appear in the #fragment (it is never sent)'];
  try {
    new URL(template.replace(placeholder, 'x'));
  } catch {
    return ['the URL template is not a valid URL'];
  }
  return [];
}

function encodeArgument(value: unknown): string {
  return encodeURIComponent(
    value === undefined || value === null
      ? ''
      : typeof value === 'string'
        ? value
        : JSON.stringify(value),
  );
}

/** An argument the caller gave (own properties only: `{constructor}` is not Object's). */
function argument(input: Readonly<Record<string, unknown>>, name: string): unknown {
  return Object.hasOwn(input, name) ? input[name] : undefined;
}

const wholePair = /^([^=]*)=\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

/**
 * Fills one query pair. A pair that is exactly `key={arg}` is left out when the argument is
 * absent (an optional query parameter is not sent as `key=`), and repeated for each element
 * when the argument is an array (`key=a&key=b`, OpenAPI's default `form` style).
 */
function fillQueryPair(pair: string, input: Readonly<Record<string, unknown>>): string[] {
  const whole = wholePair.exec(pair);
  if (whole === null)
    return [pair.replace(placeholder, (_, name: string) => encodeArgument(argument(input, name)))];
  const [, key = '', name = ''] = whole;
  const value = argument(input, name);
  if (value === undefined || value === null) return [];
  const values = Array.isArray(value) ? value : [value];
  return values.map((item) => `${key}=${encodeArgument(item)}`);
}

/**
 * Fills `{arg}` placeholders with URL-encoded argument values. In the path, `.` and `..` are
 * refused; in the query, see {@link fillQueryPair}.
 */
export function fillTemplate(template: string, input: Readonly<Record<string, unknown>>): URL {
  const hashAt = template.indexOf('#');
  const beforeHash = hashAt < 0 ? template : template.slice(0, hashAt);
  const queryAt = beforeHash.indexOf('?');
  const path = queryAt < 0 ? beforeHash : beforeHash.slice(0, queryAt);
  const filledPath = path.replace(placeholder, (_, name: string) => {
    const value = argument(input, name);
    // `.` and `..` (in any spelling the URL parser folds) would climb out of the template's
    // path on the fixed host.
    if (typeof value === 'string' && /^(\.|%2e){1,2}$/i.test(value.trim()))
      throw new Error(`Argument '${name}' may not be '.' or '..'.`);
    return encodeArgument(value);
  });
  const pairs =
    queryAt < 0
      ? []
      : beforeHash
          .slice(queryAt + 1)
          .split('&')
          .flatMap((pair) => (pair === '' ? [] : fillQueryPair(pair, input)));
  const query = pairs.length === 0 ? '' : `?${pairs.join('&')}`;
  return new URL(`${filledPath}${query}`);
}

function authHeaders(
  auth: NonNullable<HttpToolDefinition['auth']>,
  secret: string,
): Record<string, string> {
  if (auth.scheme === 'bearer') return { authorization: `Bearer ${secret}` };
  if (auth.scheme === 'basic')
    return { authorization: `Basic ${Buffer.from(secret, 'utf8').toString('base64')}` };
  return { [(auth.headerName ?? 'x-api-key').toLowerCase()]: secret };
}

/**
 * A tenant-defined HTTP tool as the gate executes it: the URL is filled from the arguments
 * (URL-encoded, host fixed), the egress policy is checked (no private addresses unless
 * allowed), the calling user's credential is attached from the vault capability the gate
 * binds to the run's user, redirects are not followed and at most `maxResponseChars` of the
 * response is read (a longer body is cut, marked with `…`, and its connection closed).
 */
export function createTenantHttpTool(options: {
  readonly definition: HttpToolDefinition;
  readonly egress: EgressPolicy;
  readonly defaultTimeoutMs: number;
  readonly defaultMaxResponseChars: number;
  readonly fetch?: typeof fetch;
}): ToolDefinition {
  const { definition } = options;
  const request = options.fetch ?? fetch;
  const inUrl = new Set(templateArguments(definition.urlTemplate));
  const timeoutMs = definition.timeoutMs ?? options.defaultTimeoutMs;
  const maxChars = definition.maxResponseChars ?? options.defaultMaxResponseChars;
  return {
    name: definition.name,
    description: definition.description,
    inputSchema: definition.inputSchema,
    risk: definition.risk,
    kind: 'http',
    allowedRoles: definition.allowedRoles,
    provenanceRules: definition.provenanceRules,
    requiresConsent: definition.requiresConsent === true,
    timeoutMs,
    maxOutputChars: maxChars,
    definitionDigest: createHash('sha256').update(canonicalJson(definition)).digest('hex'),
    async execute(input, context) {
      const url = fillTemplate(definition.urlTemplate, input);
      await assertEgressAllowed(url, options.egress);
      const headers: Record<string, string> = { 'idempotency-key': context.idempotencyKey };
      let secret: { readonly value: string; readonly kind: string | undefined } | undefined;
      if (definition.auth !== undefined) {
        const credential = await context.credentials?.resolve(definition.auth.credential, url);
        if (credential === undefined)
          throw new Error(
            `You have no credential named '${definition.auth.credential}'; add it under /v1/me/credentials.`,
          );
        Object.assign(headers, authHeaders(definition.auth, credential.secret));
        secret = { value: credential.secret, kind: definition.auth.scheme };
      }
      const rest = Object.fromEntries(Object.entries(input).filter(([name]) => !inUrl.has(name)));
      const withBody = definition.method !== 'GET' && definition.method !== 'DELETE';
      if (withBody) headers['content-type'] = 'application/json';
      const done = new AbortController();
      const response = await request(url, {
        method: definition.method,
        redirect: 'manual',
        headers,
        ...(withBody ? { body: JSON.stringify(rest) } : {}),
        signal: AbortSignal.any([context.signal, AbortSignal.timeout(timeoutMs), done.signal]),
      });
      // At most the cap is read; a longer body is cut there and its connection closed.
      const read = await readCapped(response, { maxChars, abort: () => done.abort() });
      const { truncated } = read;
      // Whole secrets are redacted later, with every other output; the cut is only here.
      const text =
        truncated && secret !== undefined
          ? withoutSecretTail(read.text, secretForms(secret.value, secret.kind))
          : read.text;
      let parsed: unknown = truncated ? `${text}…` : text;
      if (!truncated && (response.headers.get('content-type') ?? '').includes('json')) {
        try {
          parsed = JSON.parse(text);
        } catch {
          // Keep the text.
        }
      }
      return truncated
        ? { status: response.status, body: parsed, truncated: true }
        : { status: response.status, body: parsed };
    },
  };
}

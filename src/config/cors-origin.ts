import { z } from 'zod';

/** A scheme, `://`, and an authority with no path, query or fragment. */
const originShape = /^[a-z][a-z0-9+.-]*:\/\/[^/?#@\s]+$/;

/** `value` as a URL, or null when it is not one (`URL.parse` is Node 20.18 and later). */
function parsedUrl(value: string): URL | null {
  try {
    return new URL(value);
  } catch {
    return null;
  }
}

/**
 * Why `value` can never equal the `Origin` header a browser sends, or undefined when it can.
 * Hono's CORS compares the header with each configured origin as a string, so an origin must
 * be written as browsers serialise it (RFC 6454 §6.2): `scheme://host[:port]`, lower case, with
 * no path (not even `/`) and without the scheme's default port. `*` is not a wildcard in a list.
 */
export function corsOriginProblem(value: string): string | undefined {
  if (value === '*')
    return "'*' matches no origin here: list each origin allowed (https://app.example.com)";
  const web = /^https?:\/\//i.test(value) ? parsedUrl(value) : null;
  // A trailing `/` is the one path whose origin is still plain to suggest.
  if (web !== null && web.href === `${web.origin}/` && web.origin !== value)
    return `browsers send this origin as '${web.origin}' (lower case, no path, no default port); write it so`;
  if (web !== null ? web.origin === value : originShape.test(value)) return undefined;
  return 'must be an origin, scheme://host[:port], with no path (https://app.example.com)';
}

/** One entry of `server.cors.origins`: an origin a browser can send (see {@link corsOriginProblem}). */
export const corsOriginSchema = z.string().superRefine((value, context) => {
  const problem = corsOriginProblem(value);
  if (problem !== undefined) context.addIssue({ code: 'custom', message: problem });
});

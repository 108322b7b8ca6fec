import { type PiiKind, piiTailStart, redactPii } from './pii-redaction.ts';

/** Known shapes of credentials (Brigade keys and common providers'), replaced wherever they appear. */
const secretPatterns: readonly RegExp[] = [
  /\bbrg_[A-Za-z0-9_-]{20,}/g,
  /\bsk-(?:proj-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{20,}/g,
  /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g,
  /\bgh[pousr]_[A-Za-z0-9]{30,}\b/g,
  /\bgithub_pat_[A-Za-z0-9_]{30,}/g,
  /\bxox[abposr]-[A-Za-z0-9-]{10,}/g,
  /\bAIza[0-9A-Za-z_-]{35}\b/g,
  /\bglpat-[A-Za-z0-9_-]{20,}/g,
  /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
];

const bearerPattern = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/-]{16,}=*/gi;

/**
 * `text` with every credential of a known shape (Brigade keys, common providers' keys, JWTs,
 * private keys, `Bearer`/`Basic` credentials) replaced by `[redacted]`: what the output guard
 * removes without knowing any secret, for text that goes to logs (request paths).
 */
export function redactSecretShapes(text: string): string {
  let result = text;
  for (const pattern of secretPatterns) result = result.replace(pattern, '[redacted]');
  return result.replace(bearerPattern, (_, scheme: string) => `${scheme} [redacted]`);
}

/** What the guard changed in one text. */
export interface GuardResult {
  readonly text: string;
  /** Secrets and keys replaced. */
  readonly redacted: number;
  /** Personal data replaced (`[redacted:<kind>]`). */
  readonly redactedPii: number;
  readonly blockedLinks: number;
}

/** Options for {@link createOutputGuard}. */
export interface OutputGuardOptions {
  /** Exact secrets to redact (the vault secrets used by this run's tool calls). */
  readonly secrets: () => Iterable<string>;
  /** Hosts markdown links and images may point to. */
  readonly allowedLinkHosts: readonly string[];
  /** Personal data to redact from the answer (`tools.outputGuard.redactPii`); none when absent. */
  readonly redactPii?: readonly PiiKind[];
}

/** The output guard: redacts secrets and personal data, blocks links and images to hosts not allowed. */
export interface OutputGuard {
  guard(text: string): GuardResult;
  /** Redacts secrets only (for tool output kept in the run and read by the model). */
  redact(text: string): { text: string; redacted: number };
}

function hostAllowed(target: string, hosts: readonly string[]): boolean {
  const trimmed = target.trim().replace(/^<|>$/g, '');
  // Relative links and in-page anchors stay on the client's own origin.
  if (!/^[a-z][a-z0-9+.-]*:/i.test(trimmed) && !trimmed.startsWith('//')) return true;
  try {
    const url = new URL(trimmed.startsWith('//') ? `https:${trimmed}` : trimmed);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return false;
    return hosts.some(
      (host) => url.hostname === host || url.host === host || url.hostname.endsWith(`.${host}`),
    );
  } catch {
    return false;
  }
}

/**
 * The forms of a vault secret that can come back in a tool's output or a model's answer: the
 * secret, its base64 and base64url encodings (what an HTTP `Basic` header carries), for a
 * `basic` credential (`user:password`) the password alone when it has at least eight
 * characters (a shorter one would blank common words out of every output), and the
 * URL-encoded and JSON-escaped spellings of each, and those escaped once more (an output is
 * redacted as JSON text). The guard redacts each (those shorter than six characters are left,
 * as for the secret itself).
 */
export function secretForms(secret: string, kind?: string): string[] {
  const colon = secret.indexOf(':');
  const password = kind === 'basic' && colon >= 0 ? secret.slice(colon + 1) : '';
  const forms = new Set<string>();
  for (const base of password.length >= 8 ? [secret, password] : [secret]) {
    const bytes = Buffer.from(base, 'utf8');
    forms.add(base);
    forms.add(bytes.toString('base64'));
    forms.add(bytes.toString('base64').replace(/=+$/, ''));
    forms.add(bytes.toString('base64url'));
  }
  for (const form of [...forms]) {
    forms.add(encodeURIComponent(form));
    forms.add(JSON.stringify(form).slice(1, -1));
  }
  // A tool's output is redacted as JSON text, where a form echoed JSON-escaped (in a text
  // body, or inside a JSON string) is escaped once more: `"` and `\` in a secret need that
  // spelling too (the same as the others for a secret without them).
  for (const form of [...forms]) forms.add(JSON.stringify(form).slice(1, -1));
  return [...forms];
}

/**
 * `text` cut at a length cap, without a tail that begins one of `forms` (three characters or
 * more): a cut through a secret the upstream echoed leaves its start, which whole-secret
 * redaction would not recognise. The tail becomes `[redacted]`.
 */
export function withoutSecretTail(text: string, forms: readonly string[]): string {
  let result = text;
  for (const form of forms) {
    if (form.length < 6) continue;
    for (let length = Math.min(form.length - 1, result.length); length >= 3; length -= 1) {
      if (result.endsWith(form.slice(0, length))) {
        result = `${result.slice(0, -length)}[redacted]`;
        break;
      }
    }
  }
  return result;
}

/**
 * Creates the {@link OutputGuard}. Before assistant text leaves (run events, the stored
 * message), it redacts vault secrets, `brg_` keys and common API key shapes, the personal data
 * of the configured kinds (e-mail, phone, IBAN, card, SSN), and removes
 * markdown images, links, reference definitions, autolinks and HTML images pointing to hosts
 * that are not allowed: a rendered image URL is the classic zero-click exfiltration channel.
 */
export function createOutputGuard(options: OutputGuardOptions): OutputGuard {
  function redact(text: string): { text: string; redacted: number } {
    let redacted = 0;
    let result = text;
    for (const secret of options.secrets()) {
      if (secret.length < 6) continue;
      const parts = result.split(secret);
      if (parts.length > 1) {
        redacted += parts.length - 1;
        result = parts.join('[redacted]');
      }
    }
    for (const pattern of secretPatterns)
      result = result.replace(pattern, () => {
        redacted += 1;
        return '[redacted]';
      });
    result = result.replace(bearerPattern, (_, scheme: string) => {
      redacted += 1;
      return `${scheme} [redacted]`;
    });
    return { text: result, redacted };
  }

  function guard(text: string): GuardResult {
    const secretsRemoved = redact(text);
    const personal = redactPii(secretsRemoved.text, options.redactPii ?? []);
    const cleaned = { text: personal.text, redacted: secretsRemoved.redacted };
    let blockedLinks = 0;
    const hosts = options.allowedLinkHosts;
    const block = (replacement: string) => {
      blockedLinks += 1;
      return replacement;
    };
    // A link's target may hold parentheses, balanced one level deep, as Markdown allows
    // (`javascript:alert(1)`): the whole link goes, not all but its last `)`.
    const result = cleaned.text
      .replace(
        /!\[([^\]]*)\]\(\s*(<[^>]*>|(?:[^()\s]|\([^()\s]*\))*)[^)]*\)/g,
        (match, alt: string, target: string) =>
          hostAllowed(target, hosts)
            ? match
            : block(`[image removed${alt === '' ? '' : `: ${alt}`}]`),
      )
      .replace(
        /\[([^\]]*)\]\(\s*(<[^>]*>|(?:[^()\s]|\([^()\s]*\))*)[^)]*\)/g,
        (match, label: string, target: string) =>
          hostAllowed(target, hosts) ? match : block(`${label} [link removed]`),
      )
      .replace(/^( {0,3}\[[^\]]+\]:)[ \t]*(\S+).*$/gm, (match, _label: string, target: string) =>
        hostAllowed(target, hosts) ? match : block('[link removed]'),
      )
      .replace(/<((?:https?|ftp|data|javascript):[^>\s]*)>/gi, (match, target: string) =>
        hostAllowed(target, hosts) ? match : block('[link removed]'),
      )
      .replace(/<img\b[^>]*>/gi, (match) => {
        const source = /\bsrc\s*=\s*["']?([^"'\s>]+)/i.exec(match)?.[1] ?? '';
        return hostAllowed(source, hosts) ? match : block('[image removed]');
      });
    return {
      text: result,
      redacted: cleaned.redacted,
      redactedPii: personal.redacted,
      blockedLinks,
    };
  }

  return { guard, redact };
}

/**
 * Guards streamed text: it emits only what can no longer change when more arrives (up to the
 * last whitespace, or up to the start of a line that may still be a link or image, or of a
 * run of number-like words that more digits may still extend into a phone, card or IBAN
 * number), guarded. `flush` guards and returns the rest.
 */
export function createStreamGuard(guard: OutputGuard): {
  push(delta: string): string;
  flush(): string;
} {
  let pending = '';
  return {
    push(delta) {
      pending += delta;
      const lineStart = pending.lastIndexOf('\n') + 1;
      const line = pending.slice(lineStart);
      let cut: number;
      if (/[[<]|-----BEGIN|\b(?:Bearer|Basic)\s*$/i.test(line) && pending.length < 8_192)
        cut = lineStart;
      else {
        const space = pending.search(/\s\S*$/);
        cut = space === -1 ? 0 : space + 1;
        // The word after the cut may continue a number written in groups: hold the groups back.
        if (cut > 0 && /^[0-9A-Z+(]?$/.test(pending.charAt(cut)) && pending.length < 8_192)
          cut = piiTailStart(pending.slice(0, cut));
      }
      if (cut === 0) return '';
      const ready = pending.slice(0, cut);
      pending = pending.slice(cut);
      return guard.guard(ready).text;
    },
    flush() {
      const rest = pending;
      pending = '';
      return rest.length === 0 ? '' : guard.guard(rest).text;
    },
  };
}

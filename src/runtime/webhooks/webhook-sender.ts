import { createHmac, randomBytes } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isPrivateAddress } from '../tools/egress-guard.ts';

export { isPrivateAddress };

/** A new endpoint signing secret (Standard Webhooks format: `whsec_` + base64). */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/**
 * The Standard Webhooks signature of one delivery: HMAC-SHA256 over `id.timestamp.body` with
 * the secret's bytes, as `v1,<base64>`. Receivers verify it with any Standard Webhooks library.
 */
export function signWebhook(
  secret: string,
  message: { id: string; timestamp: number; body: string },
) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const signature = createHmac('sha256', key)
    .update(`${message.id}.${message.timestamp}.${message.body}`)
    .digest('base64');
  return `v1,${signature}`;
}

/**
 * A DNS lookup that refuses private addresses, used for the connection itself, so a name that
 * resolves to a public address when checked and a private one when connecting (DNS
 * rebinding) is refused too.
 */
function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error !== null) {
        callback(error, '', 0);
        return;
      }
      const list = addresses as LookupAddress[];
      const refused = list.find((entry) => !allowPrivate && isPrivateAddress(entry.address));
      if (refused !== undefined || list.length === 0) {
        callback(
          Object.assign(new Error(`refusing to deliver to a private address (${hostname})`), {
            code: 'EPRIVATE',
          }),
          '',
          0,
        );
        return;
      }
      if ((options as { all?: boolean }).all === true) callback(null, list as never);
      else callback(null, list[0]?.address ?? '', list[0]?.family ?? 4);
    });
  };
}

/** The outcome of one delivery attempt. */
export interface DeliveryOutcome {
  readonly ok: boolean;
  readonly status: number | null;
  readonly error: string | null;
}

/**
 * POSTs a signed JSON event; 2xx is success, anything else (or no answer) a failure. The
 * status line is the answer: the receiver's body is not read (its connection is closed), and
 * `timeoutMs` bounds the whole exchange from the lookup to the status line, so a receiver
 * that trickles its headers or streams a body forever cannot hold the worker.
 */
export function sendWebhook(options: {
  readonly url: string;
  readonly secret: string;
  readonly id: string;
  readonly type: string;
  readonly payload: unknown;
  readonly timeoutMs: number;
  readonly allowPrivateNetworks: boolean;
}): Promise<DeliveryOutcome> {
  const timestamp = Math.floor(Date.now() / 1000);
  const body = JSON.stringify({
    type: options.type,
    timestamp: new Date().toISOString(),
    data: options.payload,
  });
  const url = new URL(options.url);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    const literal = isIP(url.hostname.replace(/^\[|\]$/g, ''));
    if (
      literal !== 0 &&
      !options.allowPrivateNetworks &&
      isPrivateAddress(url.hostname.replace(/^\[|\]$/g, ''))
    ) {
      resolve({ ok: false, status: null, error: 'refusing to deliver to a private address' });
      return;
    }
    const request = send(url, {
      method: 'POST',
      lookup: guardedLookup(options.allowPrivateNetworks),
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'user-agent': 'Brigade-Webhooks/1',
        'webhook-id': options.id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signWebhook(options.secret, { id: options.id, timestamp, body }),
      },
    });
    const deadline = setTimeout(
      () => request.destroy(new Error(`no answer within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    const settle = (outcome: DeliveryOutcome) => {
      clearTimeout(deadline);
      resolve(outcome);
    };
    request.on('response', (response) => {
      const status = response.statusCode ?? 0;
      const ok = status >= 200 && status < 300;
      settle({ ok, status, error: ok ? null : `HTTP ${status}` });
      response.destroy();
    });
    request.on('error', (error) =>
      settle({ ok: false, status: null, error: error.message.slice(0, 200) }),
    );
    request.end(body);
  });
}

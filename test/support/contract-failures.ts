import { randomUUID } from 'node:crypto';
import type { SpecOperation } from './contract-checker.ts';
import type { ContractClient } from './contract-client.ts';

/**
 * The common failures, tried on every operation of the document: no credential (401), a body
 * with an unknown field (422; 400 on the OpenAI-compatible paths), an unknown query parameter
 * (422) and unknown ids in the path (404). Each answer is checked against the document by the
 * client; the outcomes that differ from the expected status are returned.
 */

/** A valid body per operation that takes ids in its path, so an unknown id decides the answer. */
export const validBodies: Readonly<Record<string, unknown>> = {
  updateTenant: { name: 'Renamed' },
  createUser: { role: 'member' },
  updateUser: { displayName: 'Renamed' },
  createApiKey: { name: 'sweep' },
  rotateApiKey: { gracePeriodSeconds: 0 },
  createOidcProvider: {
    name: 'idp',
    issuer: 'https://sweep.idp.test',
    audience: 'sweep',
    jwksUrl: 'https://sweep.idp.test/jwks',
  },
  updateAgent: { instructions: 'x' },
  createRun: { agentId: randomUUID(), input: 'hello' },
  decideApproval: { decision: 'approve' },
  updateTool: { description: 'x' },
  updatePolicy: { name: 'x' },
  updateModelRoute: { deployments: [{ model: 'local' }] },
};

/** Operations whose errors are OpenAI error objects, where a bad body is a 400. */
const openAiOperations = new Set(['createChatCompletion', 'listModels']);

/** One outcome that was not the expected status. */
export interface UnexpectedOutcome {
  readonly operationId: string;
  readonly check: string;
  readonly expected: number;
  readonly status: number;
  readonly body: string;
}

function fill(template: string): string {
  return template.replace(/\{\w+\}/g, () => randomUUID());
}

/** Tries the common failures on every operation; returns the unexpected outcomes. */
export async function sweepCommonFailures(
  operations: readonly SpecOperation[],
  clients: { readonly anonymous: ContractClient; readonly caller: ContractClient },
): Promise<UnexpectedOutcome[]> {
  const unexpected: UnexpectedOutcome[] = [];
  const expect = async (
    operation: SpecOperation,
    check: string,
    attempt: { expected: number; send: () => Promise<{ status: number; text: string }> },
  ) => {
    const response = await attempt.send();
    if (response.status !== attempt.expected)
      unexpected.push({
        operationId: operation.operationId,
        check,
        expected: attempt.expected,
        status: response.status,
        body: response.text.slice(0, 200),
      });
  };
  for (const operation of operations) {
    const { method, operationId } = operation;
    const hasParams = operation.template.includes('{');
    const body = validBodies[operationId] ?? (operation.hasBody ? {} : undefined);
    if (operation.secured)
      await expect(operation, 'no credential', {
        expected: 401,
        send: () =>
          clients.anonymous.request(method, fill(operation.template), {
            ...(body === undefined ? {} : { body }),
          }),
      });
    if (operation.hasBody)
      await expect(operation, 'unknown body field', {
        expected: openAiOperations.has(operationId) ? 400 : 422,
        send: () =>
          clients.caller.request(method, fill(operation.template), {
            body: { notAField: true },
          }),
      });
    if (operation.queryParameters.length > 0)
      await expect(operation, 'unknown query parameter', {
        expected: 422,
        send: () =>
          clients.caller.request(method, `${fill(operation.template)}?notAParameter=1`, {
            ...(body === undefined ? {} : { body }),
          }),
      });
    if (hasParams && operation.secured)
      await expect(operation, 'unknown ids', {
        expected: 404,
        send: () =>
          clients.caller.request(method, fill(operation.template), {
            ...(body === undefined ? {} : { body }),
          }),
      });
  }
  return unexpected;
}

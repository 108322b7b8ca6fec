import { z } from '@hono/zod-openapi';
import { asTenantUser } from '../../domain/agents/agent-service.ts';
import { AppError } from '../../domain/errors.ts';
import { assertCan } from '../../domain/identity/principal.ts';
import type { Approval } from '../../storage/runs/approval-store.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';
import { creationPageQuerySchema, pageSchema } from '../schemas.ts';

const approvalSchema = z
  .object({
    id: z.uuid(),
    threadId: z.uuid(),
    runId: z.uuid(),
    toolCallId: z.string(),
    toolName: z.string(),
    arguments: z.unknown(),
    argumentsHash: z.string().openapi({
      description:
        'Hash of the canonical JSON of `arguments`: `hmac-sha256:` and 64 hex digits, keyed per tenant (the key never leaves the server), or 64 hex digits, the plain SHA-256 of an approval requested before hashes were keyed or on a server without a vault key.',
    }),
    reason: z.string(),
    status: z.enum(['pending', 'approved', 'rejected', 'expired']),
    decision: z.enum(['approve', 'reject', 'edit']).nullable(),
    editedArguments: z.unknown(),
    decisionReason: z.string().nullable(),
    decidedAt: z.iso.datetime().nullable(),
    expiresAt: z.iso.datetime(),
    createdAt: z.iso.datetime(),
  })
  .openapi('Approval');

const decisionSchema = z
  .strictObject({
    decision: z.enum(['approve', 'reject', 'edit']),
    arguments: z
      .unknown()
      .optional()
      .openapi({ description: 'Replacement arguments (edit only).' }),
    reason: z.string().max(2000).optional(),
    argumentsHash: z
      .string()
      .regex(/^(hmac-sha256:)?[0-9a-f]{64}$/)
      .optional()
      .openapi({
        description:
          "The hash you reviewed (the approval's `argumentsHash`), or the plain SHA-256 of the canonical JSON of its `arguments`; the decision is refused if the pending call changed.",
      }),
  })
  .refine((value) => value.decision !== 'edit' || value.arguments !== undefined, {
    message: 'edit needs arguments',
    path: ['arguments'],
  })
  // Replacement arguments sent with approve or reject would be ignored: whoever sent them
  // believes the edited call runs, while the original one would.
  .refine((value) => value.decision === 'edit' || value.arguments === undefined, {
    message: 'arguments go with decision edit only',
    path: ['arguments'],
  })
  .openapi('ApprovalDecision');

const listPendingApprovals = authedRoute({
  method: 'get',
  path: '/v1/approvals',
  operationId: 'listPendingApprovals',
  tags: ['Approvals'],
  summary: 'Tool calls waiting for your decision, with their exact arguments, oldest first',
  request: { query: creationPageQuerySchema },
  responses: {
    200: jsonResponse(
      pageSchema(approvalSchema, 'ApprovalPage'),
      'A page of pending approvals, oldest first.',
    ),
  },
});

const decideApproval = authedRoute({
  method: 'post',
  path: '/v1/approvals/{approvalId}/decision',
  operationId: 'decideApproval',
  tags: ['Approvals'],
  summary: 'Approve, reject or edit a pending tool call; the run resumes on any process',
  request: {
    params: z.object({ approvalId: idParam('approvalId') }),
    body: jsonBody(decisionSchema),
  },
  responses: {
    200: jsonResponse(approvalSchema, 'The decided approval.'),
    409: problemResponse('Already decided, expired, or changed (`approval_not_pending`).'),
  },
});

const render = (approval: Approval) => ({
  ...approval,
  decidedAt: approval.decidedAt === null ? null : approval.decidedAt.toISOString(),
  expiresAt: approval.expiresAt.toISOString(),
  createdAt: approval.createdAt.toISOString(),
});

/** Registers the approval operations. */
export function registerApprovalRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(listPendingApprovals, async (context) => {
    const user = asTenantUser(context.get('principal'));
    assertCan(user, 'thread:read');
    const page = await services.approvals.listPending(user, context.req.valid('query'));
    return context.json({ data: page.data.map(render), nextCursor: page.nextCursor }, 200);
  });
  app.openapi(decideApproval, async (context) => {
    const user = asTenantUser(context.get('principal'));
    assertCan(user, 'thread:write');
    const body = context.req.valid('json');
    const approval = await services.approvals.decide(
      user,
      context.req.valid('param').approvalId,
      body,
    );
    if (approval.status === 'expired') {
      throw new AppError(
        'approval_not_pending',
        'The approval expired before the decision; the run continues without the call.',
      );
    }
    return context.json(render(approval), 200);
  });
}

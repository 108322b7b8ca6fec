import { z } from '@hono/zod-openapi';
import {
  createThreadSchema,
  messageResponse,
  messageSchema,
  threadResponse,
  threadSchema,
} from '../agent-schemas.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse } from '../route-helpers.ts';
import { pageQuerySchema, pageSchema, seqPageQuerySchema } from '../schemas.ts';

const params = z.object({ threadId: idParam('threadId') });

const createThread = authedRoute({
  method: 'post',
  path: '/v1/threads',
  operationId: 'createThread',
  tags: ['Threads'],
  summary: 'Create a thread owned by you',
  request: { body: jsonBody(createThreadSchema) },
  responses: { 201: jsonResponse(threadSchema, 'The thread.') },
});
const listThreads = authedRoute({
  method: 'get',
  path: '/v1/threads',
  operationId: 'listThreads',
  tags: ['Threads'],
  summary: 'List your threads',
  request: { query: pageQuerySchema },
  responses: { 200: jsonResponse(pageSchema(threadSchema, 'ThreadPage'), 'A page of threads.') },
});
const getThread = authedRoute({
  method: 'get',
  path: '/v1/threads/{threadId}',
  operationId: 'getThread',
  tags: ['Threads'],
  summary: 'Get one of your threads',
  request: { params },
  responses: { 200: jsonResponse(threadSchema, 'The thread.') },
});
const deleteThread = authedRoute({
  method: 'delete',
  path: '/v1/threads/{threadId}',
  operationId: 'deleteThread',
  tags: ['Threads'],
  summary: 'Delete a thread with its messages, runs and their stored trace spans',
  request: { params },
  responses: { 204: { description: 'Deleted.' } },
});
const listMessages = authedRoute({
  method: 'get',
  path: '/v1/threads/{threadId}/messages',
  operationId: 'listMessages',
  tags: ['Threads'],
  summary: 'List the messages of a thread in order (`after` is a message `seq`)',
  description:
    "Messages are listed in the order they were written (`seq`): a run's input when the run is created, its answer when it completes. So a run queued behind another (strategy `enqueue`) shows its input before the earlier run's answer; each run's `runId` tells which exchange a message belongs to. What a run sends its model is its own history: the messages of the runs created before it, each input followed by its answer.",
  request: { params, query: seqPageQuerySchema },
  responses: { 200: jsonResponse(pageSchema(messageSchema, 'MessagePage'), 'A page of messages.') },
});

/** Registers the thread and message operations. */
export function registerThreadRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createThread, async (context) => {
    const thread = await services.threads.createThread(
      context.get('principal'),
      context.req.valid('json'),
    );
    return context.json(threadResponse(thread), 201);
  });
  app.openapi(listThreads, async (context) => {
    const page = await services.threads.listThreads(
      context.get('principal'),
      context.req.valid('query'),
    );
    return context.json({ data: page.data.map(threadResponse), nextCursor: page.nextCursor }, 200);
  });
  app.openapi(getThread, async (context) => {
    const thread = await services.threads.getThread(
      context.get('principal'),
      context.req.valid('param').threadId,
    );
    return context.json(threadResponse(thread), 200);
  });
  app.openapi(deleteThread, async (context) => {
    await services.threads.deleteThread(
      context.get('principal'),
      context.req.valid('param').threadId,
    );
    return context.body(null, 204);
  });
  app.openapi(listMessages, async (context) => {
    const page = await services.threads.listMessages(
      context.get('principal'),
      context.req.valid('param').threadId,
      context.req.valid('query'),
    );
    return context.json({ data: page.data.map(messageResponse), nextCursor: page.nextCursor }, 200);
  });
}

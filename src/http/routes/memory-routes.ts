import { z } from '@hono/zod-openapi';
import type { JSONValue } from 'hono/utils/types';
import type { MemoryEntry } from '../../domain/memory/memory-types.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonResponse } from '../route-helpers.ts';
import { pageQuerySchema, pageSchema } from '../schemas.ts';

const memorySchema = z
  .object({
    id: z.uuid(),
    scope: z.enum(['user', 'thread']).openapi({
      description:
        '`user`: long-term memory (needs `long_term_memory` consent); `thread`: one thread’s.',
    }),
    threadId: z.uuid().nullable(),
    key: z.string(),
    value: z.unknown().openapi({ description: 'The JSON value the agent stored.' }),
    runId: z.uuid().nullable().openapi({ description: 'The run that last wrote the entry.' }),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Memory');

const threadIdQuery = z.uuid().optional().openapi({ description: 'Only this thread’s memory.' });

const listQuery = pageQuerySchema.extend({
  scope: z.enum(['user', 'thread']).optional().openapi({
    description: 'Only long-term (`user`) or only thread (`thread`) memory.',
  }),
  threadId: threadIdQuery,
});

const clearQuery = z.strictObject({
  scope: z.enum(['user', 'thread', 'all']).optional().openapi({
    description: 'What to clear: long-term memory, every thread’s, or all of it.',
  }),
  threadId: threadIdQuery,
});

function memoryResponse(entry: MemoryEntry) {
  return {
    ...entry,
    // Plain JSON read back from jsonb; the plugin type's readonly arrays are not Hono's JSON.
    value: entry.value as JSONValue,
    createdAt: entry.createdAt.toISOString(),
    updatedAt: entry.updatedAt.toISOString(),
  };
}

const listMemories = authedRoute({
  method: 'get',
  path: '/v1/me/memories',
  operationId: 'listMemories',
  tags: ['Memory'],
  summary: 'What agents remember about you (your own memory only; admins never see it)',
  request: { query: listQuery },
  responses: {
    200: jsonResponse(pageSchema(memorySchema, 'MemoryPage'), 'A page of memories.'),
  },
});

const deleteMemory = authedRoute({
  method: 'delete',
  path: '/v1/me/memories/{memoryId}',
  operationId: 'deleteMemory',
  tags: ['Memory'],
  summary: 'Erase one of your memories (404 for any id that is not yours)',
  request: { params: z.object({ memoryId: idParam('memoryId') }) },
  responses: { 204: { description: 'Erased.' } },
});

const clearMemories = authedRoute({
  method: 'delete',
  path: '/v1/me/memories',
  operationId: 'clearMemories',
  tags: ['Memory'],
  summary: 'Erase your memories of a scope or of a thread (a filter is required)',
  request: { query: clearQuery },
  responses: {
    200: jsonResponse(
      z.object({ deleted: z.int().openapi({ description: 'Entries erased.' }) }),
      'How many were erased.',
    ),
  },
});

/** Registers the memory operations: a user lists and erases what agents remember. */
export function registerMemoryRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(listMemories, async (context) => {
    const page = await services.memories.list(context.get('principal'), context.req.valid('query'));
    return context.json({ data: page.data.map(memoryResponse), nextCursor: page.nextCursor }, 200);
  });
  app.openapi(deleteMemory, async (context) => {
    await services.memories.delete(context.get('principal'), context.req.valid('param').memoryId);
    return context.body(null, 204);
  });
  app.openapi(clearMemories, async (context) => {
    const deleted = await services.memories.clear(
      context.get('principal'),
      context.req.valid('query'),
    );
    return context.json({ deleted }, 200);
  });
}

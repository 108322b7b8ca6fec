/** The responses of every operation of the fixtures. */
export const ok = { '200': { description: 'OK' } };

/** A petstore-like document: refs everywhere, a multipart upload and a cookie parameter. */
export function petstore(baseUrl: string) {
  return {
    openapi: '3.0.3',
    info: { title: 'Petstore', version: '1.0.0' },
    servers: [{ url: `${baseUrl}/v1` }],
    security: [{ bearerAuth: [] }],
    paths: {
      '/pets': {
        get: {
          operationId: 'listPets',
          summary: 'List pets',
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', maximum: 100 } },
            { name: 'tag', in: 'query', schema: { type: 'array', items: { type: 'string' } } },
            { $ref: '#/components/parameters/Trace' },
          ],
          responses: ok,
        },
        post: {
          operationId: 'createPet',
          summary: 'Add a pet',
          requestBody: { $ref: '#/components/requestBodies/PetBody' },
          responses: ok,
        },
      },
      '/pets/{petId}': {
        parameters: [{ $ref: '#/components/parameters/PetId' }],
        get: { operationId: 'showPetById', description: 'One pet.', responses: ok },
        put: {
          operationId: 'updatePet',
          parameters: [{ name: 'dry-run', in: 'query', schema: { type: 'boolean' } }],
          requestBody: { $ref: '#/components/requestBodies/PetBody' },
          responses: ok,
        },
        delete: { operationId: 'deletePet', responses: ok },
      },
      '/pets/{petId}/photo': {
        parameters: [{ $ref: '#/components/parameters/PetId' }],
        post: {
          operationId: 'uploadPhoto',
          requestBody: { content: { 'multipart/form-data': { schema: { type: 'object' } } } },
          responses: ok,
        },
      },
      '/session': {
        get: {
          operationId: 'getSession',
          parameters: [{ name: 'sid', in: 'cookie', required: true, schema: { type: 'string' } }],
          responses: ok,
        },
      },
    },
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      parameters: {
        PetId: { name: 'petId', in: 'path', required: true, schema: { type: 'string' } },
        Trace: { name: 'X-Trace', in: 'header', schema: { type: 'string' } },
      },
      requestBodies: {
        PetBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Pet' } } },
        },
      },
      schemas: {
        NewPet: {
          type: 'object',
          required: ['name'],
          properties: { name: { type: 'string', example: 'Rex' }, tag: { type: 'string' } },
        },
        Pet: {
          allOf: [
            { $ref: '#/components/schemas/NewPet' },
            { type: 'object', properties: { id: { type: 'integer', readOnly: true } } },
          ],
        },
      },
    },
  };
}

/** An operation of a bad document. */
export const operation = (operationId: string, extra: Record<string, unknown> = {}) => ({
  operationId,
  responses: ok,
  ...extra,
});

/** A small OpenAPI 3.1 document with `paths`, on `baseUrl`. */
export function badDocument(options: {
  readonly baseUrl: string;
  readonly paths: Record<string, unknown>;
  readonly extra?: Record<string, unknown>;
}) {
  return {
    openapi: '3.1.0',
    info: { title: 'Bad', version: '1' },
    servers: [{ url: options.baseUrl }],
    paths: options.paths,
    ...options.extra,
  };
}

/** A JSON request body of `schema`. */
export const jsonBody = (schema: unknown) => ({
  requestBody: { content: { 'application/json': { schema } } },
});

/** Schemas `S0`…`S<depth>` where each refers to the next twice: 2^depth values inlined. */
export function exponentialSchemas(depth: number): Record<string, unknown> {
  return Object.fromEntries([
    ...Array.from({ length: depth }, (_, index) => [
      `S${index}`,
      {
        type: 'object',
        properties: {
          a: { $ref: `#/components/schemas/S${index + 1}` },
          b: { $ref: `#/components/schemas/S${index + 1}` },
        },
      },
    ]),
    [`S${depth}`, { type: 'string' }],
  ]);
}

import { describe, expect, it } from 'vitest';
import { planOpenApiImport } from './openapi-import.ts';
import { toolNameOf } from './openapi-operation.ts';

const documentWith = (operation: Record<string, unknown>, components: unknown = {}) => ({
  openapi: '3.0.3',
  servers: [
    { url: 'https://{region}.api.example.com/v1/', variables: { region: { default: 'eu' } } },
  ],
  paths: { '/things/{thing-id}': { post: { operationId: 'addThing', ...operation } } },
  components,
});
const pathParameter = { name: 'thing-id', in: 'path', required: true, schema: { type: 'string' } };

describe('planOpenApiImport', () => {
  it('turns OpenAPI 3.0 schemas into ones Ajv compiles, keeping property names as they are', () => {
    const plan = planOpenApiImport(
      documentWith({
        parameters: [pathParameter],
        requestBody: {
          content: {
            'application/json': {
              schema: {
                type: 'object',
                properties: {
                  size: { type: 'number', maximum: 9, exclusiveMaximum: true, example: 3 },
                  nullable: { type: 'string' },
                  example: { nullable: true },
                },
              },
            },
          },
        },
      }),
      {},
    );
    expect(plan.problems).toEqual([]);
    expect(plan.tools[0]?.definition).toMatchObject({
      name: 'add_thing',
      urlTemplate: 'https://eu.api.example.com/v1/things/{thing_id}',
      inputSchema: {
        properties: {
          thing_id: { type: 'string' },
          size: { type: 'number', exclusiveMaximum: 9 },
          nullable: { type: 'string' },
          example: {},
        },
        required: ['thing_id'],
      },
    });
  });

  it('maps an apiKey header scheme and refuses a reference into Object.prototype', () => {
    const security = { securitySchemes: { key: { type: 'apiKey', in: 'header', name: 'X-Key' } } };
    const mapped = planOpenApiImport(
      documentWith({ parameters: [pathParameter], security: [{ key: [] }] }, security),
      { auth: { credential: 'svc' } },
    );
    expect(mapped.tools[0]?.definition.auth).toEqual({
      credential: 'svc',
      scheme: 'header',
      headerName: 'X-Key',
    });
    const polluted = planOpenApiImport(
      documentWith({ parameters: [{ $ref: '#/components/__proto__' }] }),
      {},
    );
    expect(polluted.problems.map((problem) => problem.code)).toEqual(['ref_not_found']);
  });

  it('names tools after operationIds in snake case', () => {
    expect(toolNameOf('showPetById')).toBe('show_pet_by_id');
    expect(toolNameOf('getHTTPStatus', 'api_')).toBe('api_get_http_status');
    expect(toolNameOf('pets.list-all')).toBe('pets_list_all');
    expect(() => toolNameOf('1st')).toThrow(/namePrefix/);
  });
});

/** JSON schemas shared by the routes (they also feed the generated OpenAPI document). */
export const domParam = {
  type: 'object',
  properties: { dom: { type: 'string', description: 'domain name or id' } },
  required: ['dom'],
} as const;

export const errorResponse = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object', additionalProperties: true } },
      required: ['code', 'message'],
    },
  },
} as const;

export const okResponse = { type: 'object', properties: { ok: { type: 'boolean' } } } as const;

export const domainInfo = {
  type: 'object',
  additionalProperties: true,
  properties: {
    id: { type: 'integer' },
    name: { type: 'string' },
    uuid: { type: 'string' },
    state: { type: 'string' },
    stateFlags: { type: 'string' },
    memory: { type: 'integer' },
    maxmem: { type: 'integer' },
    vcpus: { type: 'integer' },
    maxvcpus: { type: 'integer' },
    cpuTime: { type: 'number' },
    pid: { type: 'integer' },
    uptime: { type: 'number' },
    startTime: { type: 'number' },
    machineType: { type: 'string' },
    accel: { type: 'string' },
    vnc: { type: 'string' },
    unpluggedSinceBoot: { type: 'boolean' },
  },
} as const;

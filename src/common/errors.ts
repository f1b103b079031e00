/**
 * One error catalogue: a code, its HTTP status and what it means. Modules throw XenoError with a
 * code from here; the daemon maps it to HTTP in one place; the CLI prints the message.
 */

export const ERROR_CATALOGUE = {
  CONFIG_SYNTAX: { status: 400, doc: 'A config file could not be parsed (file:line:col says where).' },
  CONFIG_INVALID: { status: 400, doc: 'A config value is out of range or inconsistent.' },
  BAD_REQUEST: { status: 400, doc: 'A request argument is malformed or out of range.' },
  INVALID_NAME: { status: 400, doc: 'A domain name is not 1-64 characters of [A-Za-z0-9_.-].' },
  NO_SUCH_DOMAIN: { status: 404, doc: 'No domain has that name or id.' },
  NO_SUCH_FILE: { status: 400, doc: 'A file the config names (kernel, ramdisk, disk) does not exist.' },
  DOMAIN_EXISTS: { status: 409, doc: 'A domain with that name already exists.' },
  NO_SUCH_SNAPSHOT: { status: 404, doc: 'The guest has no snapshot of that name.' },
  SNAPSHOT_EXISTS: { status: 409, doc: 'The guest already has a snapshot of that name.' },
  BAD_STATE: { status: 409, doc: 'The domain is not in a state that allows this operation.' },
  BUSY: { status: 409, doc: 'Another operation on this domain is in progress.' },
  NO_MEMORY: { status: 409, doc: 'The host does not have enough free memory (never over-committed).' },
  TIMEOUT: { status: 504, doc: 'The guest or QEMU did not answer in time.' },
  QEMU_ERROR: { status: 500, doc: 'QEMU refused a command or failed to start.' },
  HOST_ERROR: { status: 500, doc: 'A host resource (network, cgroup, storage) could not be set up.' },
  BOOTLOADER_ERROR: { status: 400, doc: "pygrub found no bootable kernel on the guest's disk (no readable grub.cfg, extlinux.conf or menu.lst)." },
  IMAGE_ERROR: { status: 500, doc: 'create-image could not build the guest image (debootstrap, mkfs or qemu-img failed).' },
  SAVE_FORMAT: { status: 400, doc: 'A save file is truncated, corrupted or of an unknown format.' },
  UNAUTHORIZED: { status: 401, doc: 'The web console asks for a session (log in with the web token).' },
  FORBIDDEN: { status: 403, doc: 'A web console request without its CSRF token, or from another origin.' },
  INTERNAL: { status: 500, doc: 'An unexpected error inside xenod.' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export class XenoError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'XenoError';
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status;
  }
}

export function isXenoError(e: unknown): e is XenoError {
  return e instanceof XenoError;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

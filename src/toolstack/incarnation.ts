/**
 * on_* = rename-restart, as xl does it: the stopped domain is kept (frozen, for a post-mortem)
 * under a new name, `NAME--incarnation-DOMID`, and a new domain starts under the original name.
 */
const SUFFIX = (id: number) => `--incarnation-${id}`;

/** The name the old domain is kept under: within the 64 characters a domain name may have. */
export function incarnationName(name: string, id: number): string {
  const suffix = SUFFIX(id);
  return name.slice(0, 64 - suffix.length) + suffix;
}

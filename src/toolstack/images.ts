/**
 * image-create / image-info: disk images on this host through qemu-img (hypervisor/qemu/image.ts),
 * under the same path rules as a disk target (absolute, and never one of xenod's own files).
 */
import { existsSync } from 'node:fs';
import { XenoError } from '../common/errors.js';
import { parseMemSize } from '../config/sizes.js';
import { hostPath } from '../config/validate-fields.js';
import { createImage, probeImage, type ImageInfo } from '../hypervisor/qemu/image.js';
import type { DaemonConfig } from '../model/daemon-config.js';
import { checkGuestFile, validateOptionsFor } from './config-guard.js';

export type { ImageInfo };

function imagePath(field: string, p: unknown, cfg: DaemonConfig): string {
  let file: string;
  try {
    file = hostPath(field, p, validateOptionsFor(cfg));
  } catch (e) {
    throw new XenoError('BAD_REQUEST', (e as Error).message);
  }
  try {
    checkGuestFile(field, file, cfg);
  } catch (e) {
    throw new XenoError('BAD_REQUEST', (e as Error).message);
  }
  return file;
}

const vetFor = (cfg: DaemonConfig) => (backing: string): void => void imagePath('backing file', backing, cfg);

export async function imageInfo(cfg: DaemonConfig, p: unknown): Promise<ImageInfo> {
  const file = imagePath('path', p, cfg);
  if (!existsSync(file)) throw new XenoError('NO_SUCH_FILE', `image-info: ${file} does not exist`);
  return probeImage(file, { vet: vetFor(cfg) });
}

export async function imageCreate(cfg: DaemonConfig, req: { path: unknown; size?: unknown; format?: unknown; backing?: unknown }): Promise<ImageInfo> {
  const file = imagePath('path', req.path, cfg);
  const format = req.format ?? 'qcow2';
  if (format !== 'qcow2' && format !== 'raw') throw new XenoError('BAD_REQUEST', `image-create: --format ${JSON.stringify(format)}: qcow2 or raw`);
  if (existsSync(file)) throw new XenoError('BAD_REQUEST', `image-create: ${file} exists (image-create never overwrites a file)`);
  let sizeBytes: number | undefined;
  if (req.size !== undefined && req.size !== null && req.size !== '') {
    if (typeof req.size !== 'string' && typeof req.size !== 'number') throw new XenoError('BAD_REQUEST', 'image-create: SIZE must be a size like 1g or 512m');
    try {
      sizeBytes = parseMemSize(req.size) * 1024 * 1024;
    } catch (e) {
      throw new XenoError('BAD_REQUEST', `image-create: ${(e as Error).message.replace(/memory size/g, 'size')}`);
    }
    if (sizeBytes === 0) throw new XenoError('BAD_REQUEST', 'image-create: SIZE must be above 0');
  }
  let backing: ImageInfo | undefined;
  if (req.backing !== undefined && req.backing !== null && req.backing !== '') {
    const base = imagePath('backing', req.backing, cfg);
    if (!existsSync(base)) throw new XenoError('NO_SUCH_FILE', `image-create: the base ${base} does not exist`);
    backing = await probeImage(base, { vet: vetFor(cfg) });
  }
  await createImage(file, { format, sizeBytes, backing });
  return probeImage(file, { vet: vetFor(cfg) });
}

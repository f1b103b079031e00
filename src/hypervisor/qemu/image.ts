/**
 * Disk images through qemu-img, probed safely:
 *  - always `--force-share` (-U): a running guest's image is read without taking or breaking its lock;
 *  - the top file is probed alone (qemu-img info never opens a backing file without
 *    --backing-chain), then each backing file is opened with the format the layer above RECORDED
 *    (-f), never probed: a guest that writes a qcow2 header into its raw disk cannot make xeno or
 *    QEMU read a host file through a "backing file" it names;
 *  - a backing file must be an absolute local path (no json:/nbd: pseudo-protocols) with a recorded
 *    format, the chain is at most MAX_CHAIN deep and has no loop, and the caller vets each path
 *    (xenod's own files are refused by the config guard).
 * Every argument is an argv element; nothing goes through a shell.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { XenoError } from '../../common/errors.js';

const execFileP = promisify(execFile);
const MAX_CHAIN = 16;

export interface ImageLayer {
  filename: string;
  /** qemu-img's format name (raw, qcow2, vpc...). */
  format: string;
  virtualSize: number;
  /** Bytes the file really takes on the host. */
  actualSize: number;
  backingFile?: string;
  backingFormat?: string;
}

export interface ImageInfo extends ImageLayer {
  /** The image itself first, then its backing files down to the base. */
  chain: ImageLayer[];
}

interface QemuImgInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
}

async function qemuImg(args: string[], what: string): Promise<string> {
  try {
    const { stdout } = await execFileP('qemu-img', args, { maxBuffer: 4 << 20, timeout: 120_000 });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new XenoError('HOST_ERROR', `${what}: qemu-img is not installed (apt install qemu-utils)`);
    throw new XenoError('BAD_REQUEST', `${what}: ${(err.stderr ?? err.message).trim().replace(/^qemu-img: /, '')}`);
  }
}

async function infoOne(file: string, format?: string): Promise<ImageLayer> {
  const args = ['info', '--force-share', '--output=json', ...(format ? ['-f', format] : []), file];
  const j = JSON.parse(await qemuImg(args, `image ${file}`)) as QemuImgInfo;
  const layer: ImageLayer = { filename: file, format: j.format, virtualSize: j['virtual-size'], actualSize: j['actual-size'] ?? 0 };
  const backing = j['full-backing-filename'] ?? j['backing-filename'];
  if (backing !== undefined) layer.backingFile = backing;
  if (j['backing-filename-format'] !== undefined) layer.backingFormat = j['backing-filename-format'];
  return layer;
}

/**
 * The image at `file` and its backing chain, checked as the module comment says. `vet` is called
 * for every backing file (throws to refuse it). `format`: open the top with this format instead of
 * probing it.
 */
export async function probeImage(file: string, opts: { format?: string; vet?: (backing: string, of: string) => void } = {}): Promise<ImageInfo> {
  const top = await infoOne(file, opts.format);
  const chain = [top];
  const seen = new Set([path.resolve(file)]);
  for (let layer = top; layer.backingFile !== undefined; ) {
    const b = layer.backingFile;
    const where = `image ${file}: backing file ${JSON.stringify(b)} of ${layer.filename}`;
    if (!b.startsWith('/') || /^[a-z]+:/i.test(b)) throw new XenoError('CONFIG_INVALID', `${where} is not an absolute local path: refused`);
    if (layer.backingFormat === undefined) {
      throw new XenoError('CONFIG_INVALID', `${where} has no recorded format (QEMU would have to probe it): refused; set one with qemu-img rebase -u -F FORMAT -b ${b} ${layer.filename}`);
    }
    if (seen.has(path.resolve(b))) throw new XenoError('CONFIG_INVALID', `${where} makes a loop: refused`);
    if (chain.length >= MAX_CHAIN) throw new XenoError('CONFIG_INVALID', `image ${file}: its backing chain is deeper than ${MAX_CHAIN}: refused`);
    opts.vet?.(b, layer.filename);
    seen.add(path.resolve(b));
    layer = await infoOne(b, layer.backingFormat);
    chain.push(layer);
  }
  return { ...top, chain };
}

/** xeno's format names -> qemu-img's. */
export const qemuFormatName = (f: string): string => (f === 'vhd' ? 'vpc' : f);

/**
 * `image-create`: a new image (never over an existing file: qemu-img would truncate it). With a
 * base: a thin clone, its backing format recorded (-F) from the base's probed, checked format.
 */
export async function createImage(file: string, opts: { format: 'qcow2' | 'raw'; sizeBytes?: number; backing?: ImageInfo }): Promise<void> {
  const args = ['create', '-q', '-f', opts.format];
  if (opts.backing) {
    if (opts.format !== 'qcow2') throw new XenoError('BAD_REQUEST', 'image-create: a backing file needs --format qcow2 (raw images have no backing)');
    args.push('-b', opts.backing.filename, '-F', opts.backing.format);
  }
  args.push(file);
  if (opts.sizeBytes !== undefined) args.push(String(opts.sizeBytes));
  else if (!opts.backing) throw new XenoError('BAD_REQUEST', 'image-create: a SIZE is needed (only a clone with --backing inherits its base\'s size)');
  await qemuImg(args, `image-create ${file}`);
}

/**
 * A one-partition MBR disk layout, written into a raw file before mkfs.ext4 fills the partition
 * (`-E offset=`): the disk looks like an installed system's (xvda1 / vda1 exists, so an xm-era
 * `root=/dev/xvda1` has a partition to name), without a partitioning tool or a loop device.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

export const PARTITION_OFFSET = 1024 * 1024;

/** Makes `file` a sparse disk of `bytes` with one Linux partition from 1 MiB to the end. */
export function writeMbrDisk(file: string, bytes: number): { offset: number; partitionBytes: number } {
  const sectors = Math.floor(bytes / 512);
  const start = PARTITION_OFFSET / 512;
  const count = Math.min(sectors - start, 0xffffffff);
  const mbr = Buffer.alloc(512);
  randomBytes(4).copy(mbr, 440); // disk identifier
  const e = 446;
  mbr[e + 1] = 0xfe; // CHS fields: "use LBA"
  mbr[e + 2] = 0xff;
  mbr[e + 3] = 0xff;
  mbr[e + 4] = 0x83;
  mbr[e + 5] = 0xfe;
  mbr[e + 6] = 0xff;
  mbr[e + 7] = 0xff;
  mbr.writeUInt32LE(start, e + 8);
  mbr.writeUInt32LE(count, e + 12);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = openSync(file, 'w');
  try {
    ftruncateSync(fd, sectors * 512);
    writeSync(fd, mbr, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  return { offset: PARTITION_OFFSET, partitionBytes: count * 512 };
}

/**
 * An offset inside a guest RAM page of a save/migration stream: the middle of the kernel's banner
 * ("Linux version"), whose bytes only page contents hold. Flipping it changes guest memory, not the
 * stream's structure, so QEMU accepts the stream and only a checksum can tell.
 */
export function ramByteOffset(file: Buffer, payloadOffset: number, payloadLength: number): number {
  const at = file.subarray(payloadOffset, payloadOffset + payloadLength).indexOf('Linux version 6.');
  if (at < 0) throw new Error('no kernel banner in the save payload');
  return payloadOffset + at + 6;
}

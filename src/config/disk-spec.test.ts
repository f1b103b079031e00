import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { XenoError } from '../common/errors.js';
import type { DiskSpec } from '../model/domain-config.js';
import { formatDiskSpec, parseDiskSpec } from './disk-spec.js';

function invalid(spec: string, expected: RegExp): void {
  assert.throws(
    () => parseDiskSpec(spec),
    (e: unknown) => {
      assert.ok(e instanceof XenoError);
      assert.equal(e.code, 'CONFIG_INVALID');
      assert.match(e.message, expected);
      return true;
    },
  );
}

/** Golden sets: every spelling in a group means the same disk (as libxl's check-xl-disk-parse). */
const GOLDEN: Array<{ disk: DiskSpec; spellings: string[] }> = [
  {
    disk: { target: '/dev/vg/guest-volume', format: 'raw', vdev: 'hda', access: 'rw', devtype: 'disk' },
    spellings: [
      '/dev/vg/guest-volume,,hda',
      '/dev/vg/guest-volume,raw,hda,rw',
      '/dev/vg/guest-volume,raw,hda,w',
      '/dev/vg/guest-volume, raw, hda, rw',
      'format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume',
      'vdev=hda,target=/dev/vg/guest-volume',
      '/dev/vg/guest-volume,,hda,,',
      '/dev/vg/guest-volume,vdev=hda',
      '/dev/vg/guest-volume,format=raw,vdev=hda,access=w',
      '/dev/vg/guest-volume,,vdev=hda',
      'raw:/dev/vg/guest-volume,hda,w',
      'phy:/dev/vg/guest-volume,hda,w',
      'phy:vg/guest-volume,hda,rw',
      'file:/dev/vg/guest-volume,hda,w',
      'aio:/dev/vg/guest-volume,hda,w',
      'tap:aio:/dev/vg/guest-volume,hda,w',
      'tap2:aio:/dev/vg/guest-volume,hda,w',
      'backendtype=phy,/dev/vg/guest-volume,,hda',
      '  /dev/vg/guest-volume , raw , hda , rw  ',
    ],
  },
  {
    disk: { target: '/root/image.iso', format: 'raw', vdev: 'hdc', access: 'ro', devtype: 'cdrom' },
    spellings: [
      '/root/image.iso,,hdc,cdrom',
      '/root/image.iso,,hdc,devtype=cdrom',
      '/root/image.iso,raw,hdc,ro,cdrom',
      '/root/image.iso,raw,hdc:cdrom,r',
      'format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso',
      'vdev=hdc, devtype=cdrom, target=/root/image.iso',
      'raw:/root/image.iso,hdc:cdrom,ro',
      'file:/root/image.iso,hdc:cdrom,r',
      'cdrom,vdev=hdc,target=/root/image.iso',
    ],
  },
  {
    disk: { target: '', format: 'raw', vdev: 'hdc', access: 'ro', devtype: 'cdrom' },
    spellings: [
      'format=raw, vdev=hdc, access=ro, devtype=cdrom',
      ',,hdc:cdrom,r',
      ',hdc:cdrom,r',
      'vdev=hdc,cdrom',
      'vdev=hdc:cdrom',
      ',raw,hdc,ro,devtype=cdrom',
    ],
  },
  {
    disk: { target: '/srv/web.qcow2', format: 'qcow2', vdev: 'xvda', access: 'rw', devtype: 'disk' },
    spellings: [
      'tap:qcow2:/srv/web.qcow2,xvda,w',
      'qcow2:/srv/web.qcow2,xvda,w',
      '/srv/web.qcow2,qcow2,xvda,rw',
      '/srv/web.qcow2,qcow2,xvda',
      'format=qcow2,vdev=xvda,target=/srv/web.qcow2',
      '/srv/web.qcow2,format=qcow2,vdev=xvda,access=rw',
      'file:/srv/web.qcow2,qcow2,xvda,w!',
    ],
  },
  {
    disk: { target: '/dev/hda1', format: 'raw', vdev: 'hda1', access: 'ro', devtype: 'disk' },
    spellings: ['phy:hda1,hda1,r', 'phy:/dev/hda1,hda1,ro', '/dev/hda1,,hda1,r', 'vdev=hda1,access=ro,target=/dev/hda1'],
  },
  {
    disk: { target: '/path/with,commas and spaces/disk.img', format: 'vhd', vdev: 'sdb', access: 'rw', devtype: 'disk' },
    spellings: [
      'format=vhd, vdev=sdb, target=/path/with,commas and spaces/disk.img',
      'format=vhd,vdev=sdb,target=/path/with,commas and spaces/disk.img',
      ',vhd,sdb,rw,target=/path/with,commas and spaces/disk.img',
    ],
  },
];

describe('parseDiskSpec golden spellings', () => {
  for (const { disk, spellings } of GOLDEN) {
    it(`${disk.target || '(empty)'} ${disk.vdev} ${disk.devtype}`, () => {
      for (const s of spellings) assert.deepEqual(parseDiskSpec(s), disk, `spelling: ${s}`);
    });
  }
});

describe('parseDiskSpec forms', () => {
  it('reads the legacy xm form with every mode', () => {
    assert.equal(parseDiskSpec('file:/srv/web.img,xvda,w').access, 'rw');
    assert.equal(parseDiskSpec('file:/srv/web.img,xvda,rw').access, 'rw');
    assert.equal(parseDiskSpec('file:/srv/web.img,xvda,w!').access, 'rw');
    assert.equal(parseDiskSpec('file:/srv/web.img,xvda,r').access, 'ro');
    assert.equal(parseDiskSpec('file:/srv/web.img,xvda,ro').access, 'ro');
    assert.deepEqual(parseDiskSpec('phy:sda7,sda7,w'), {
      target: '/dev/sda7',
      format: 'raw',
      vdev: 'sda7',
      access: 'rw',
      devtype: 'disk',
    });
    assert.equal(parseDiskSpec('phy:mapper/vg-lv,xvdb,w').target, '/dev/mapper/vg-lv');
  });

  it("takes xeno's cache= key (per disk), round-trips it, and refuses an unknown mode", () => {
    const d = parseDiskSpec('format=qcow2, vdev=xvdb, access=rw, cache=writeback, target=/srv/d.qcow2');
    assert.equal(d.cache, 'writeback');
    assert.deepEqual(parseDiskSpec(formatDiskSpec(d)), d);
    assert.equal(parseDiskSpec('/srv/a.img,raw,xvda,rw,cache=none').cache, 'none');
    assert.equal(parseDiskSpec('file:/srv/a.img,xvda,w').cache, undefined);
    assert.throws(() => parseDiskSpec('vdev=xvda, cache=fast, target=/a'), /unknown cache mode "fast"/);
  });

  it('takes target= verbatim (no prefix stripping, commas and colons kept)', () => {
    assert.equal(parseDiskSpec('vdev=xvda, target=/srv/a:b,c=d').target, '/srv/a:b,c=d');
    assert.equal(parseDiskSpec('vdev=xvda,target=/srv/file:x').target, '/srv/file:x');
  });

  it('defaults a cdrom to read-only but honours an explicit access', () => {
    assert.equal(parseDiskSpec('/x.iso,,hdc,cdrom').access, 'ro');
    assert.equal(parseDiskSpec('/x.iso,,hdc,rw,cdrom').access, 'rw');
  });

  it('accepts other formats and vdev families', () => {
    assert.equal(parseDiskSpec('/a,qed,vdb').format, 'qed');
    assert.equal(parseDiskSpec('/a,qcow,sdc').format, 'qcow');
    assert.equal(parseDiskSpec('/a,vhd,xvdaa').vdev, 'xvdaa');
    assert.equal(parseDiskSpec('/a,,xvdb,ro,discard').access, 'ro');
  });

  it('resolves relative targets against baseDir when given', () => {
    assert.equal(parseDiskSpec('disks/a.img,,xvda', { baseDir: '/srv/vm' }).target, '/srv/vm/disks/a.img');
    assert.equal(parseDiskSpec('phy:sdb,xvda,w', { baseDir: '/srv/vm' }).target, '/dev/sdb');
    invalid('disks/a.img,,xvda', /the target "disks\/a\.img" is not an absolute path/);
  });

  it('formats to the keyword form and reads it back', () => {
    for (const { disk } of GOLDEN) {
      const text = formatDiskSpec(disk);
      assert.match(text, /^format=\w+, vdev=\w+, access=r[ow]/);
      assert.deepEqual(parseDiskSpec(text), disk);
    }
    assert.equal(
      formatDiskSpec(parseDiskSpec('file:/srv/web.img,xvda,w')),
      'format=raw, vdev=xvda, access=rw, target=/srv/web.img',
    );
  });
});

describe('parseDiskSpec errors', () => {
  it('names the problem and the spec', () => {
    invalid('', /empty disk specification/);
    invalid('/a,raw', /invalid disk "\/a,raw": no vdev/);
    invalid(',,xvda', /no target/);
    invalid('/a,foo,xvda', /unknown format "foo"/);
    invalid('/a,xvda', /"xvda" is in the place of the format/);
    invalid('/a,xvda,x', /"xvda" is in the place of the format/);
    invalid('/a,,xvda,x', /invalid access "x"/);
    invalid('/a,,floppy0', /invalid vdev "floppy0"/);
    invalid('/a,,xvda,rw,extra', /too many fields/);
    invalid('/a,,xvda,color=red', /unknown parameter "color"/);
    invalid('/a,,xvda,devtype=floppy', /unknown devtype "floppy"/);
    invalid('/a,,xvda,backendtype=nbd', /unknown backendtype "nbd"/);
    invalid('/a,raw,xvda,format=qcow2', /format is given twice/);
    invalid('qcow2:/a,raw,xvda', /format is given twice/);
    invalid('/a,,xvda,target=/b', /the target is given twice/);
    invalid('format=raw,vdev=xvda,target=relative.img', /not an absolute path/);
    invalid('vdev=xvda,format=raw', /no target/);
    invalid('/a,,xvda,constructor', /too many fields|invalid access/);
    invalid('/a,xvda,constructor', /in the place of the format/);
  });
});

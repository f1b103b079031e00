import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseEntry, parseExtlinux, parseGrub2, parseMenuLst, parsePygrubArgs } from './boot-menu.js';

const GRUB = `
set default="1"
menuentry 'Debian GNU/Linux' --class debian {
  load_video
  linux /boot/vmlinuz-6.1.0-9-amd64 root=UUID=abcd ro quiet
  initrd /boot/initrd.img-6.1.0-9-amd64
}
submenu 'Advanced options' {
  menuentry 'Debian, with Linux 6.1.0-9 (recovery mode)' {
    linux /boot/vmlinuz-6.1.0-9-amd64 root=UUID=abcd ro single
  }
}
menuentry "Older" {
  linux (hd0,msdos1)/boot/vmlinuz-old root=LABEL=r ro
  initrd (hd0,msdos1)/boot/initrd.img-old
}
`;

test('grub.cfg: top-level entries, device prefixes dropped, set default by index', () => {
  const m = parseGrub2(GRUB);
  assert.deepEqual(m.entries.map((e) => e.title), ['Debian GNU/Linux', 'Older']);
  assert.equal(m.default, '1');
  const e = chooseEntry(m);
  assert.deepEqual(e, { title: 'Older', kernel: '/boot/vmlinuz-old', initrd: '/boot/initrd.img-old', args: 'root=LABEL=r ro' });
  assert.equal(chooseEntry(m, { entry: '0' }).args, 'root=UUID=abcd ro quiet');
  assert.equal(chooseEntry(m, { entry: 'Debian GNU/Linux' }).kernel, '/boot/vmlinuz-6.1.0-9-amd64');
  assert.throws(() => chooseEntry(m, { entry: '5' }), /has 2 entries/);
  assert.equal(chooseEntry(parseGrub2(GRUB.replace('set default="1"', 'set default="${saved_entry}"'))).title, 'Debian GNU/Linux');
});

test('extlinux.conf: DEFAULT label, relative paths, initrd= in APPEND', () => {
  const m = parseExtlinux('DEFAULT linux\nLABEL rescue\n  KERNEL vmlinuz-r\nLABEL linux\n  LINUX ../vmlinuz\n  APPEND root=/dev/xvda1 initrd=../initrd.img ro\n', '/boot/extlinux');
  const e = chooseEntry(m);
  assert.equal(e.title, 'linux');
  assert.equal(e.kernel, '/boot/extlinux/../vmlinuz');
  assert.equal(e.initrd, '/boot/extlinux/../initrd.img');
  assert.equal(e.args, 'root=/dev/xvda1 ro');
});

test('menu.lst: default N, title, kernel with args, initrd', () => {
  const m = parseMenuLst('default 0\ntimeout 5\ntitle Debian\n root (hd0,0)\n kernel /boot/vmlinuz root=/dev/xvda1 ro console=hvc0\n initrd /boot/initrd.img\n');
  assert.deepEqual(chooseEntry(m), { title: 'Debian', kernel: '/boot/vmlinuz', initrd: '/boot/initrd.img', args: 'root=/dev/xvda1 ro console=hvc0' });
});

test("pygrub's flags: --entry, --kernel, --ramdisk, --args; others refused", () => {
  assert.deepEqual(parsePygrubArgs(['--entry=1', '--args', 'quiet']), { entry: '1', args: 'quiet' });
  assert.throws(() => parsePygrubArgs(['--isconfig']), /unknown pygrub flag/);
  assert.throws(() => parsePygrubArgs(['--kernel']), /needs a value/);
  assert.throws(() => chooseEntry({ entries: [] }), /no bootable entry/);
});

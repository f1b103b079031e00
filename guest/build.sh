#!/usr/bin/env bash
# Build the xeno test guest from Debian packages:
#   guest/out/vmlinuz     Debian cloud kernel (linux-image-6.1.0-N-cloud-amd64)
#   guest/out/vmlinux     the same kernel uncompressed (ELF, booted through its PVH entry)
#   guest/out/initrd.img  busybox initramfs with virtio/ext4/acpi modules, /init = guest/init.sh
#   guest/out/disk.ext4   16 MiB ext4 data disk holding hello.txt
# Downloads are cached in guest/cache/. A second run is a no-op while
# build.sh, init.sh and the chosen kernel package are unchanged (and the apt
# lists have not been updated since). Environment:
#   XENO_GUEST_KERNEL=linux-image-...  pin the kernel package
#   XENO_GUEST_FORCE=1                 rebuild even if the stamp matches
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$HERE/cache
OUT=$HERE/out
STAMP=$OUT/.stamp
OUTPUTS=("$OUT/vmlinuz" "$OUT/vmlinux" "$OUT/initrd.img" "$OUT/disk.ext4")

# Modules wanted in the initramfs (with their dependencies). Names use "_";
# "-" in file names is treated the same. Built-in ones are skipped.
REQUIRED_MODULES="virtio_pci virtio_blk virtio_net ext4"
OPTIONAL_MODULES="virtio_balloon virtio_console pvpanic pvpanic_pci pvpanic_mmio button evdev af_packet"

say() { echo "build.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

print_outputs() {
	local f
	for f in "${OUTPUTS[@]}"; do echo "$f"; done
}

stamp_for() { # $1 = kernel package name
	{ cat "$HERE/build.sh" "$HERE/init.sh"; echo "kernel=$1 pinned=${XENO_GUEST_KERNEL:-}"; } |
		sha256sum | cut -d' ' -f1
}

outputs_exist() {
	local f
	for f in "${OUTPUTS[@]}"; do [ -s "$f" ] || return 1; done
}

# ---- fast path: nothing changed -----------------------------------------
# Querying apt takes ~1 s, so reuse the kernel name recorded in the stamp as
# long as the apt lists are older than the stamp.
if [ "${XENO_GUEST_FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && outputs_exist; then
	old_hash=$(sed -n 1p "$STAMP")
	old_kpkg=$(sed -n 2p "$STAMP")
	kpkg=${XENO_GUEST_KERNEL:-}
	if [ -z "$kpkg" ] && { [ ! -d /var/lib/apt/lists ] || [ "$STAMP" -nt /var/lib/apt/lists ]; }; then
		kpkg=$old_kpkg
	fi
	if [ -n "$kpkg" ] && [ "$kpkg" = "$old_kpkg" ] && [ "$(stamp_for "$kpkg")" = "$old_hash" ]; then
		say "up to date ($kpkg)"
		print_outputs
		exit 0
	fi
fi

for tool in apt-get apt-cache dpkg-deb cpio gzip mkfs.ext4 sha256sum awk python3; do
	command -v "$tool" >/dev/null || die "missing tool: $tool"
done
mkdir -p "$CACHE" "$OUT"

APT_OPTS=(-q -o APT::Sandbox::User=root)

# ---- kernel package ------------------------------------------------------
kernel_candidates() { # newest first
	apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' 2>/dev/null |
		awk '{print $1}' | sort -t- -k4,4nr
}

# apt-get download into the cache (skipped when a .deb of that package is
# there); prints the .deb path, or fails.
fetch_deb() { # $1 = package name
	local pkg=$1 deb
	deb=$(ls -1 "$CACHE/${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
	if [ -z "$deb" ]; then
		say "downloading $pkg"
		(cd "$CACHE" && apt-get "${APT_OPTS[@]}" download "$pkg" >&2) || return 1
		deb=$(ls -1 "$CACHE/${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
		[ -n "$deb" ] || return 1
	fi
	echo "$deb"
}

if [ -n "${XENO_GUEST_KERNEL:-}" ]; then
	candidates=$XENO_GUEST_KERNEL
else
	candidates=$(kernel_candidates)
	if [ -z "$candidates" ]; then
		say "apt lists have no cloud kernel; running apt-get update"
		apt-get "${APT_OPTS[@]}" update >&2 || die "apt-get update failed"
		candidates=$(kernel_candidates)
	fi
	[ -n "$candidates" ] || die "no linux-image-6.1.0-*-cloud-amd64 package found"
fi
# Take the newest one that is cached or can be downloaded (try at most 3).
kpkg=
kdeb=
for cand in $(echo "$candidates" | head -n3); do
	if kdeb=$(fetch_deb "$cand"); then
		kpkg=$cand
		break
	fi
	say "could not download $cand"
done
[ -n "$kpkg" ] || die "no kernel package could be downloaded"
say "kernel package: $kpkg"
# Same kernel as last time (apt lists were merely refreshed): keep the outputs.
if [ "${XENO_GUEST_FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && outputs_exist &&
	[ "$(sed -n 1p "$STAMP")" = "$(stamp_for "$kpkg")" ]; then
	touch "$STAMP"
	say "up to date ($kpkg)"
	print_outputs
	exit 0
fi

KROOT=$CACHE/${kpkg}.root
if [ ! -f "$KROOT/.unpacked" ] || [ "$KROOT/.unpacked" -ot "$kdeb" ]; then
	say "unpacking $(basename "$kdeb")"
	rm -rf "$KROOT"
	mkdir -p "$KROOT"
	dpkg-deb -x "$kdeb" "$KROOT"
	touch "$KROOT/.unpacked"
fi
KVER=${kpkg#linux-image-}
MODDIR=$KROOT/lib/modules/$KVER
VMLINUZ=$KROOT/boot/vmlinuz-$KVER
[ -f "$VMLINUZ" ] || die "no $VMLINUZ in $kdeb"
[ -d "$MODDIR" ] || die "no $MODDIR in $kdeb"

# ---- uncompressed kernel -------------------------------------------------
# QEMU boots an ELF vmlinux through its PVH entry note: no bzImage decompressing itself, which
# under TCG is about half a second of every boot of the test guest. The payload's compression is
# the kernel's choice (Debian 12's: lz4), so the tool goes by the payload's magic.
extract_vmlinux() { # $1 = bzImage, $2 = output
	python3 - "$1" "$2" <<'PY'
import struct, subprocess, sys
src, out = sys.argv[1], sys.argv[2]
d = open(src, 'rb').read()
if d[0x202:0x206] != b'HdrS':
    sys.exit(f'{src}: not a bzImage')
start = (d[0x1f1] + 1) * 512 + struct.unpack_from('<I', d, 0x248)[0]
payload = d[start:start + struct.unpack_from('<I', d, 0x24c)[0]]
tools = [(b'\x1f\x8b', ['gzip', '-dc']), (b'\xfd7zXZ\x00', ['xz', '-dc']), (b'\x28\xb5\x2f\xfd', ['zstd', '-dcq']),
         (b'\x02\x21\x4c\x18', ['lz4', '-dc']), (b'\x5d\x00\x00', ['xz', '--format=lzma', '-dc'])]
cmd = next((t for m, t in tools if payload.startswith(m)), None)
if cmd is None:
    sys.exit(f'{src}: unknown payload compression {payload[:4].hex()}')
# the decompressors may complain of the size word the kernel appends: judge by the output
elf = subprocess.run(cmd, input=payload, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
if elf[:4] != b'\x7fELF':
    sys.exit(f'{src}: {cmd[0]} gave no ELF kernel')
# PT_NOTE segments: the Xen note XEN_ELFNOTE_PHYS32_ENTRY (18) is what QEMU's PVH boot needs
phoff, = struct.unpack_from('<Q', elf, 0x20)
phentsize, phnum = struct.unpack_from('<HH', elf, 0x36)
pvh = False
for i in range(phnum):
    ptype, _f, off, _v, _p, filesz = struct.unpack_from('<IIQQQQ', elf, phoff + i * phentsize)
    if ptype != 4:
        continue
    pos = off
    while pos + 12 <= off + filesz:
        namesz, descsz, ntype = struct.unpack_from('<III', elf, pos)
        name = elf[pos + 12:pos + 12 + namesz].rstrip(b'\0')
        pvh |= name == b'Xen' and ntype == 18
        pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
if not pvh:
    sys.exit(f'{src}: the kernel has no PVH entry note (CONFIG_PVH)')
open(out, 'wb').write(elf)
PY
}

# ---- busybox (static) ----------------------------------------------------
BUSYBOX=
if [ -x /bin/busybox ] && [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ]; then
	BUSYBOX=/bin/busybox
else
	bbdeb=$(fetch_deb busybox-static) || die "apt-get download busybox-static failed"
	BBROOT=$CACHE/busybox-static.root
	rm -rf "$BBROOT"
	mkdir -p "$BBROOT"
	dpkg-deb -x "$bbdeb" "$BBROOT"
	BUSYBOX=$BBROOT/bin/busybox
fi
[ -x "$BUSYBOX" ] || die "no static busybox"

# ---- module dependency resolution ---------------------------------------
# Debian's package ships no modules.dep (depmod runs in postinst), so make
# one with busybox depmod when missing.
if [ ! -s "$MODDIR/modules.dep" ]; then
	say "generating modules.dep"
	"$BUSYBOX" depmod -b "$KROOT" "$KVER"
	[ -s "$MODDIR/modules.dep" ] || die "depmod produced no modules.dep"
fi

# Prints the module paths (relative to $MODDIR) to load, dependencies first;
# reports per wanted module whether it is a module, built in or missing.
resolve_modules() {
	awk -v required="$REQUIRED_MODULES" -v optional="$OPTIONAL_MODULES" '
		function norm(p,  b) {
			b = p; sub(/.*\//, "", b); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", b); gsub(/-/, "_", b)
			return b
		}
		function visit(p,  n, i, arr) {
			if (p in done) return
			if (p in active) { print "dependency cycle at " p > "/dev/stderr"; return }
			active[p] = 1
			n = split(deps[p], arr, " ")
			for (i = 1; i <= n; i++) visit(arr[i])
			delete active[p]
			done[p] = 1
			print p
		}
		FILENAME == ARGV[1] {            # modules.builtin
			builtin[norm($1)] = 1; next
		}
		{                                # modules.dep: "path: dep dep ..."
			key = $1; sub(/:$/, "", key)
			path[norm(key)] = key
			d = ""
			for (i = 2; i <= NF; i++) d = d " " $i
			deps[key] = d
		}
		END {
			nw = split(required, w, " ")
			for (i = 1; i <= nw; i++) want(w[i], 1)
			nw = split(optional, w, " ")
			for (i = 1; i <= nw; i++) want(w[i], 0)
			if (failed) exit 1
		}
		function want(m, req,  k) {
			k = norm(m)
			if (k in path) { printf "  %-16s module\n", m > "/dev/stderr"; visit(path[k]) }
			else if (k in builtin) printf "  %-16s built in\n", m > "/dev/stderr"
			else if (req) { printf "  %-16s MISSING (required)\n", m > "/dev/stderr"; failed = 1 }
			else printf "  %-16s not available (optional)\n", m > "/dev/stderr"
		}
	' "$MODDIR/modules.builtin" "$MODDIR/modules.dep"
}

# ---- initramfs -----------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xeno-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,proc,sys,dev,tmp,run,mnt,root,var/log,lib/modules/"$KVER"}
ln -s ../run "$ROOT/var/run"

cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
# One symlink per applet, at the path busybox itself reports.
"$BUSYBOX" --list-full | while read -r applet; do
	[ -e "$ROOT/$applet" ] || [ -L "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
done
[ -L "$ROOT/bin/sh" ] || die "busybox provided no sh"

say "modules:"
resolve_modules > "$WORK/modules.list" || die "module resolution failed"
: > "$ROOT/lib/modules/xeno-modules.list"
while read -r rel; do
	src=$MODDIR/$rel
	dst_rel=${rel%.xz}; dst_rel=${dst_rel%.zst}; dst_rel=${dst_rel%.gz}
	dst=$ROOT/lib/modules/$KVER/$dst_rel
	mkdir -p "$(dirname "$dst")"
	case "$rel" in
		*.ko.xz) xz -dc "$src" > "$dst" ;;
		*.ko.zst) zstd -qdc "$src" > "$dst" ;;
		*.ko.gz) gzip -dc "$src" > "$dst" ;;
		*.ko) cp "$src" "$dst" ;;
		*) die "unexpected module file $rel" ;;
	esac
	echo "$dst_rel" >> "$ROOT/lib/modules/xeno-modules.list"
done < "$WORK/modules.list"
say "  load order: $(sed 's|.*/||; s|\.ko$||' "$ROOT/lib/modules/xeno-modules.list" | tr '\n' ' ')"

install -m 0755 "$HERE/init.sh" "$ROOT/init"

cat > "$ROOT/etc/profile" <<'EOF'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
export PS1='xeno# '
# busybox poweroff/reboot/halt would only signal PID 1 (a shell here).
poweroff() { /sbin/xeno-shutdown poweroff; }
reboot() { /sbin/xeno-shutdown reboot; }
halt() { /sbin/xeno-shutdown halt; }
EOF
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' > "$ROOT/etc/group"

# Clean shutdown used by the ACPI power button and by the poweroff/reboot/halt
# shell functions of /etc/profile.
cat > "$ROOT/sbin/xeno-shutdown" <<'EOF'
#!/bin/sh
# usage: xeno-shutdown [poweroff|reboot|halt]
act=${1:-poweroff}
case "$act" in poweroff|reboot|halt) ;; *) act=poweroff ;; esac
echo "xeno-guest: $act" > /dev/console
sync
umount /mnt 2>/dev/null || mount -o remount,ro /mnt 2>/dev/null
sync
exec /bin/busybox "$act" -f
EOF
chmod 0755 "$ROOT/sbin/xeno-shutdown"

# busybox acpid: KEY_POWER -> "button/power PWRF 00000080" (built-in map) ->
# action below, run relative to the -c dir (/etc/acpi).
cat > "$ROOT/etc/acpid.conf" <<'EOF'
PWRF PWRF/00000080
PWRB PWRF/00000080
EOF
cat > "$ROOT/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
exec /sbin/xeno-shutdown poweroff
EOF
chmod 0755 "$ROOT/etc/acpi/PWRF/00000080"

cat > "$ROOT/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# busybox udhcpc hook: $1 = deconfig|bound|renew|leasefail|nak
case "$1" in
	deconfig)
		ip addr flush dev "$interface"
		ip link set "$interface" up
		;;
	bound|renew)
		cur=$(cat "/run/xeno/dhcp.$interface" 2>/dev/null)
		if [ "$1" = bound ] || [ "$cur" != "$ip/${mask:-24}" ]; then
			ip addr flush dev "$interface"
			ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
			if [ -n "$router" ]; then
				while ip route del default dev "$interface" 2>/dev/null; do :; done
				for r in $router; do
					ip route add default via "$r" dev "$interface" && break
				done
			fi
			echo "$ip/${mask:-24}" > "/run/xeno/dhcp.$interface"
			echo "xeno-guest: net $interface $ip/${mask:-24}" > /dev/console
		fi
		if [ -n "$dns" ]; then
			for d in $dns; do echo "nameserver $d"; done > /etc/resolv.conf
		fi
		;;
esac
exit 0
EOF
chmod 0755 "$ROOT/etc/udhcpc.script"

# /dev/console for the kernel to open before /init (the kernel's built-in
# initramfs normally has it too); needs root, harmless to skip otherwise.
mknod -m 0600 "$ROOT/dev/console" c 5 1 2>/dev/null || true

say "writing initrd.img"
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) |
	gzip -9n > "$WORK/initrd.img"

# ---- data disk -----------------------------------------------------------
say "writing disk.ext4"
mkdir -p "$WORK/disk"
printf 'hello from xeno disk\n' > "$WORK/disk/hello.txt"
rm -f "$WORK/disk.ext4"
truncate -s 16M "$WORK/disk.ext4"
mkfs.ext4 -q -F -L xeno-data -E root_owner=0:0 -d "$WORK/disk" "$WORK/disk.ext4" >&2

# ---- publish -------------------------------------------------------------
rm -f "$STAMP"
install -m 0644 "$VMLINUZ" "$OUT/vmlinuz"
say "writing vmlinux"
extract_vmlinux "$VMLINUZ" "$WORK/vmlinux" || die "could not extract an uncompressed kernel from $VMLINUZ"
mv -f "$WORK/vmlinux" "$OUT/vmlinux"
mv -f "$WORK/initrd.img" "$OUT/initrd.img"
mv -f "$WORK/disk.ext4" "$OUT/disk.ext4"
printf '%s\n%s\n' "$(stamp_for "$kpkg")" "$kpkg" > "$STAMP"
say "done ($kpkg)"
print_outputs

#!/bin/sh
# /init of the xeno test guest (busybox ash, runs as PID 1 from the initramfs).
# Built into guest/out/initrd.img by guest/build.sh; see guest/README.md for
# the kernel command-line contract and the console lines printed here.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
umask 022

log() { echo "xeno-guest: $*"; }

# --- pseudo filesystems ---------------------------------------------------
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/xeno

# --- kernel modules (list is already in dependency order) -----------------
KVER=$(uname -r)
if [ -r /lib/modules/xeno-modules.list ]; then
	while read -r m; do
		[ -n "$m" ] || continue
		insmod "/lib/modules/$KVER/$m" 2>/dev/null || log "insmod $m failed"
	done < /lib/modules/xeno-modules.list
fi

# --- kernel command line --------------------------------------------------
read -r CMDLINE < /proc/cmdline
XHOST=
HOST=
NETS=
set -f
for arg in $CMDLINE; do
	case "$arg" in
		xeno.hostname=*) XHOST=${arg#xeno.hostname=} ;;
		hostname=*) HOST=${arg#hostname=} ;;
		xeno.net=*) NETS="$NETS ${arg#xeno.net=}" ;;
	esac
done
set +f
[ -n "$XHOST" ] && HOST=$XHOST
[ -n "$HOST" ] || HOST=xeno
hostname "$HOST"
echo "$HOST" > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$HOST" > /etc/hosts

# --- network --------------------------------------------------------------
ip link set lo up
for spec in $NETS; do
	dev=${spec%%:*}
	rest=${spec#"$dev"}
	rest=${rest#:}
	i=0
	while [ ! -e "/sys/class/net/$dev" ] && [ $i -lt 30 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if [ ! -e "/sys/class/net/$dev" ]; then
		log "net $dev missing"
		continue
	fi
	ip link set "$dev" up
	case "$rest" in
		dhcp)
			# The script prints the "xeno-guest: net DEV ADDR" line once bound.
			udhcpc -i "$dev" -b -t 3 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1
			;;
		?*)
			addr=${rest%%:*}
			gw=
			case "$rest" in *:*) gw=${rest#*:} ;; esac
			if ip addr add "$addr" dev "$dev"; then
				[ -n "$gw" ] && ip route add default via "$gw" dev "$dev"
				log "net $dev $addr"
			else
				log "net $dev failed"
			fi
			;;
	esac
done

# --- data disk ------------------------------------------------------------
# Wait briefly for /dev/vda only when a virtio block device (id 0x0002) exists.
for d in /sys/bus/virtio/devices/*/device; do
	[ -r "$d" ] || continue
	read -r id < "$d"
	[ "$id" = 0x0002 ] || continue
	i=0
	while [ ! -b /dev/vda ] && [ $i -lt 30 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	break
done
if [ -b /dev/vda ]; then
	mkdir -p /mnt
	# (busybox mount itself falls back to ro for a write-protected device)
	if mount -t ext4 /dev/vda /mnt 2>/dev/null ||
		mount -t ext4 -o ro /dev/vda /mnt 2>/dev/null ||
		mount -t ext4 -o ro,noload /dev/vda /mnt 2>/dev/null; then
		log "mounted /dev/vda"
		while read -r _dev mp _fs opts _rest; do
			[ "$mp" = /mnt ] || continue
			case "$opts" in ro|ro,*) log "/dev/vda is read-only" ;; esac
		done < /proc/mounts
	else
		log "mount /dev/vda failed"
	fi
fi

# --- ACPI power button ----------------------------------------------------
# busybox acpid reads /dev/input/event0.. (the ACPI "Power Button" input
# device comes from button.ko + evdev.ko), maps KEY_POWER to the action
# "PWRF/00000080" (/etc/acpid.conf) and runs /etc/acpi/PWRF/00000080, which
# calls xeno-shutdown: sync, unmount, poweroff -f.
if [ -e /dev/input/event0 ]; then
	acpid -c /etc/acpi -a /etc/acpid.conf -l /run/acpid.log -p /run/acpid.pid
else
	log "no input event device; acpid not started"
fi

log "up hostname=$HOST"

# --- heartbeat + vcpu onlining --------------------------------------------
HB=/dev/ttyS0
[ -c "$HB" ] || HB=/dev/console
(
	n=0
	while :; do
		n=$((n + 1))
		echo "heartbeat $n" > "$HB"
		for f in /sys/devices/system/cpu/cpu*/online; do
			[ -e "$f" ] || continue
			read -r v < "$f"
			[ "$v" = 0 ] && echo 1 > "$f" 2>/dev/null
		done
		sleep 1
	done
) &

# --- interactive shell on the console, respawned --------------------------
# PID 1 stays in this loop. Note busybox poweroff/reboot/halt without -f only
# signal PID 1, which this shell does not act on while it waits for the
# foreground shell; /etc/profile therefore defines poweroff/reboot/halt as
# functions calling /sbin/xeno-shutdown.
while :; do
	setsid cttyhack sh -l
done

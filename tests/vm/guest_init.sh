#!/bin/busybox sh
# /init of the test guests (tests/vm/image.py packs it into the initramfs).
#
# Brings up eth0.. from the kernel command line, then serves a line-based
# command runner on the serial console so a test can drive the guest:
#   the test writes   "ID COMMAND...\n"
#   the guest answers "VSBEGIN ID\n" COMMAND's output "VSEND ID RC\n"
# Kernel command line keys (ours, so the kernel's own ip= autoconfig, which
# needs the driver built in, stays out of the way):
#   vs.ip=CIDR          address of eth0 (same as vs.eth0=CIDR)
#   vs.ethN=CIDR        address of ethN
#   vs.gw=ADDR          default route
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run /root
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# Keep kernel chatter off the console the runner talks on.
echo 1 > /proc/sys/kernel/printk

# Modules in dependency order (image.py writes the list; built-in ones are absent).
for m in $(cat /etc/modules.order); do
    insmod "/lib/modules/$m.ko" || echo "insmod $m failed"
done

ip link set lo up
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vs.ip=*) ifc=eth0; cidr="${arg#vs.ip=}" ;;
        vs.eth[0-9]*=*) ifc="${arg%%=*}"; ifc="${ifc#vs.}"; cidr="${arg#*=}" ;;
        vs.gw=*) gw="${arg#vs.gw=}"; continue ;;
        *) continue ;;
    esac
    # The NIC may appear a moment after its driver loads.
    n=0
    while [ ! -e "/sys/class/net/$ifc" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    ip addr add "$cidr" dev "$ifc"
    ip link set "$ifc" up
done
[ -n "$gw" ] && ip route add default via "$gw"

exec </dev/ttyS0 >/dev/ttyS0 2>&1
# No echo (the test would read its own commands back), plain "\n" line ends.
stty -echo -onlcr
echo "VSREADY"
# PID 1 must never exit (the kernel would panic): a read error just loops.
while true; do
    while read -r id cmd; do
        [ -z "$id" ] && continue
        echo "VSBEGIN $id"
        sh -c "$cmd" </dev/null
        echo "VSEND $id $?"
    done
    sleep 1
done

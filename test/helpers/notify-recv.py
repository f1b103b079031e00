# A stand-in for systemd's notification socket (Node cannot receive Unix datagrams): prints each
# datagram on one line (fields joined by |) and closes the file descriptors passed along, as the
# manager does, which completes systemd-notify's BARRIER=1. Usage: notify-recv.py SOCKET
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    data, anc, _flags, _addr = s.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            for fd in fds:
                os.close(fd)
    print(data.decode(errors="replace").strip().replace("\n", "|"), flush=True)

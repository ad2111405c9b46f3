"""The first process of a grading sandbox (standard library only; run as ``python -I -S``).

Started by :mod:`mlsys_labs.grading.sandbox` with one argument, a JSON spec.  It

1. joins the grade's memory cgroup (when the parent made one) and unshares the mount,
   PID, network, IPC and UTS namespaces (and a user namespace when not root);
2. forks: the child is PID 1 of the new PID namespace and dies with this process, which
   dies with the grader (``PR_SET_PDEATHSIG``); when PID 1 exits the kernel kills every
   process left in the namespace — a daemon, a ``setsid`` child, anything;
3. PID 1 builds a new root on a tmpfs holding only what the tests need — the system's
   ``/usr``, ``/etc``, Python and its virtual environment read-only, the grading bundle
   read-only, one scratch folder writable, fresh ``/proc``, ``/dev``, ``/dev/shm``, ``/tmp``
   — and ``pivot_root``\\ s into it (the old root is detached: the instructor's checkout,
   the results file and the submission's original folder are not reachable);
4. brings the loopback interface up (the namespace has no other: no network);
5. forks the command: rlimits (processes, CPU time, file size, open files, no core dumps),
   an unprivileged user (``nobody``) when run as root, every capability dropped, no new
   privileges, then ``execve``.  PID 1 reaps orphans until the command exits and exits
   with its status.
"""
import ctypes
import errno
import json
import os
import platform
import resource
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 1, 24, 28, 38
SECBITS_LOCKED_NOROOT = 0x2F  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED and their locks
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
EXIT_SETUP = 125  # the sandbox itself could not be built

libc = ctypes.CDLL(None, use_errno=True)


def fail(what: str) -> None:
    err = ctypes.get_errno()
    sys.stderr.write(f"mlsys-labs sandbox: {what} failed: {os.strerror(err) if err else 'error'}\n")
    sys.stderr.flush()
    os._exit(EXIT_SETUP)


def check(rc: int, what: str) -> None:
    if rc != 0:
        fail(what)


def mount(src, target, fstype, flags, data=None) -> None:
    enc = (lambda s: s.encode() if isinstance(s, str) else s)
    check(libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          f"mount {src} on {target}")


def locked_flags(path: str) -> int:
    """The flags a remount must keep (a user namespace may not clear them)."""
    f = os.statvfs(path).f_flag
    out = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                   (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if f & st:
            out |= ms
    return out


def bind(src: str, target: str, *, readonly: bool) -> None:
    if os.path.isdir(src):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(src, target, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(target))


def build_root(spec: dict) -> None:
    new = spec["newroot"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64m")
    os.makedirs(new + "/proc", exist_ok=True)
    mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = new + "/dev"
    os.makedirs(dev, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=1m")
    for name in ["null", "zero", "full", "random", "urandom"] + spec.get("devices", []):
        if os.path.exists("/dev/" + name):
            bind("/dev/" + name, dev + "/" + name, readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    for path, size in (("/dev/shm", spec["shm_size"]), ("/tmp", spec["tmp_size"])):
        os.makedirs(new + path, exist_ok=True)
        mount("tmpfs", new + path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={size}")
    for path in spec["ro"]:
        if os.path.exists(path):
            bind(path, new + path, readonly=True)
    for src, target in spec["rw"]:
        bind(src, new + target, readonly=False)
    os.chdir(new)
    os.makedirs(".oldroot", exist_ok=True)
    check(libc.syscall(SYS_PIVOT_ROOT[platform.machine()], b".", b".oldroot"), "pivot_root")
    os.chdir("/")
    check(libc.umount2(b"/.oldroot", MNT_DETACH), "detaching the old root")
    os.rmdir("/.oldroot")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def loopback_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        import fcntl
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, 0x8913, ifreq))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b""))  # SIOCSIFFLAGS IFF_UP
    finally:
        s.close()


def drop_privileges(spec: dict) -> None:
    for name, (soft_hard) in spec["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft_hard, soft_hard))
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    else:  # root of a user namespace: give up every capability for good
        check(libc.prctl(PR_SET_SECUREBITS, SECBITS_LOCKED_NOROOT, 0, 0, 0), "securebits")
        for cap in range(64):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
                break
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)()
        check(libc.capset(header, data), "dropping capabilities")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")


def run_command(spec: dict) -> int:
    """As PID 1: start the command, reap every orphan, return the command's status."""
    pid = os.fork()
    if pid == 0:
        try:
            drop_privileges(spec)
            os.chdir(spec["cwd"])
            os.execve(spec["argv"][0], spec["argv"], spec["env"])
        except OSError as exc:
            sys.stderr.write(f"mlsys-labs sandbox: starting {spec['argv'][0]}: {exc}\n")
        os._exit(EXIT_SETUP)
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return EXIT_SETUP
        if done == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    if spec.get("cgroup_procs"):
        with open(spec["cgroup_procs"], "w") as f:
            f.write(str(os.getpid()))
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if spec["userns"]:
        flags |= CLONE_NEWUSER
    check(libc.unshare(flags), "unshare")
    if spec["userns"]:
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    child = os.fork()
    if child:  # outside the namespace: wait for PID 1, pass a stop signal on as SIGKILL
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: os.kill(child, signal.SIGKILL))
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    build_root(spec)
    loopback_up()
    libc.sethostname(b"sandbox", 7)
    os._exit(run_command(spec))


if __name__ == "__main__":
    main()

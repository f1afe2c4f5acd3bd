"""badged's Python stack runs under MemoryDenyWriteExecute=yes.

systemd implements MemoryDenyWriteExecute= as a seccomp filter: mmap() with PROT_WRITE and
PROT_EXEC together, mprotect()/pkey_mprotect() with PROT_EXEC, and shmat() with SHM_EXEC
fail with EPERM. systemd is not needed to test it: a child process installs the same filter
(a classic BPF program through prctl, like systemd does via libseccomp), then execs the
venv's Python, which imports and exercises what the daemon loads: libffi closures
(ctypes callbacks), pycryptodome's .so (through ctypes or cffi), pyscard's SWIG module,
pydantic-core, libyaml, sqlite3 in WAL mode, ssl.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

# Syscall numbers and audit arch per machine: (AUDIT_ARCH, mmap, mprotect, pkey_mprotect,
# shmat).
ARCHES = {
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}

INSTALL_FILTER = textwrap.dedent(
    """
    import ctypes, os, sys

    audit_arch, nr_mmap, nr_mprotect, nr_pkey_mprotect, nr_shmat = map(int, sys.argv[1:6])
    PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
    LD_W_ABS, JEQ_K, AND_K, RET_K = 0x20, 0x15, 0x54, 0x06
    ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1
    ARG2 = 16 + 2 * 8  # seccomp_data.args[2], low 32 bits (little endian)

    # (code, jump-if-true label, jump-if-false label, k); labels resolved below.
    prog = [
        ("start", LD_W_ABS, None, None, 4),
        (None, JEQ_K, None, "allow", audit_arch),
        (None, LD_W_ABS, None, None, 0),
        (None, JEQ_K, "mmap", None, nr_mmap),
        (None, JEQ_K, "exec", None, nr_mprotect),
        (None, JEQ_K, "exec", None, nr_pkey_mprotect),
        (None, JEQ_K, "shm", "allow", nr_shmat),
        ("mmap", LD_W_ABS, None, None, ARG2),
        (None, AND_K, None, None, PROT_WRITE | PROT_EXEC),
        (None, JEQ_K, "deny", "allow", PROT_WRITE | PROT_EXEC),
        ("exec", LD_W_ABS, None, None, ARG2),
        (None, AND_K, None, None, PROT_EXEC),
        (None, JEQ_K, "deny", "allow", PROT_EXEC),
        ("shm", LD_W_ABS, None, None, ARG2),
        (None, AND_K, None, None, SHM_EXEC),
        (None, JEQ_K, "deny", "allow", SHM_EXEC),
        ("allow", RET_K, None, None, ALLOW),
        ("deny", RET_K, None, None, EPERM),
    ]
    where = {label: pc for pc, (label, *_rest) in enumerate(prog) if label}

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8),
                    ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    def rel(pc, label):
        return 0 if label is None else where[label] - pc - 1

    filters = (SockFilter * len(prog))(
        *(SockFilter(code, rel(pc, jt), rel(pc, jf), k)
          for pc, (_label, code, jt, jf, k) in enumerate(prog))
    )
    fprog = SockFprog(len(prog), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p,
                           ctypes.c_ulong, ctypes.c_ulong]
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        sys.exit(f"PR_SET_NO_NEW_PRIVS: errno {ctypes.get_errno()}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        sys.exit(f"PR_SET_SECCOMP: errno {ctypes.get_errno()}")
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[6]])
    """
)

WORKLOAD = textwrap.dedent(
    """
    import ctypes, mmap, os, sqlite3, ssl, sys, tempfile

    # The filter is active: a writable+executable mapping is refused.
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        sys.exit("the MemoryDenyWriteExecute filter is not active")

    # libffi closures: a C library calling back into Python (ctypes, cffi callbacks).
    libc = ctypes.CDLL(None)
    values = (ctypes.c_int * 5)(5, 1, 4, 2, 3)
    CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                           ctypes.POINTER(ctypes.c_int))
    libc.qsort(values, 5, ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
    assert list(values) == [1, 2, 3, 4, 5]

    # pycryptodome: DESFire session crypto (AES, 3DES, CMAC).
    from Crypto.Cipher import AES, DES3
    from Crypto.Hash import CMAC
    AES.new(bytes(16), AES.MODE_CBC, iv=bytes(16)).encrypt(bytes(32))
    DES3.new(bytes(range(24)), DES3.MODE_CBC, iv=bytes(8)).encrypt(bytes(16))
    CMAC.new(bytes(16), ciphermod=AES).update(b"badged").digest()

    # pyscard's SWIG module (loads libpcsclite); no pcscd needed for the import.
    import smartcard.scard  # noqa: F401
    from smartcard.System import readers  # noqa: F401

    # Config stack: libyaml, pydantic-core (Rust).
    import yaml, pydantic
    assert yaml.load("a: [1, 2]", Loader=yaml.CSafeLoader) == {"a": [1, 2]}
    class M(pydantic.BaseModel):
        a: list[int]
    M.model_validate({"a": [1, 2]})

    # Store: SQLite in WAL mode (shared-memory index mapped read/write).
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(os.path.join(tmp, "state.db"))
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        db.commit()
        db.close()

    # SMTP STARTTLS / API CROUS HTTPS; metrics.
    ssl.create_default_context()
    import prometheus_client
    prometheus_client.generate_latest()
    print("OK")
    """
)


def test_python_stack_runs_under_memory_deny_write_execute():
    machine = platform.machine()
    if machine not in ARCHES:
        pytest.fail(
            f"no seccomp syscall table for {machine} in this test; add one to ARCHES",
            pytrace=False,
        )
    args = [str(n) for n in ARCHES[machine]]
    proc = subprocess.run(
        [sys.executable, "-c", INSTALL_FILTER, *args, WORKLOAD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "OK"), proc.stdout + proc.stderr

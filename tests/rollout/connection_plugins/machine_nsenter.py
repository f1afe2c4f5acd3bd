"""Ansible connection into a booted systemd-nspawn machine, through nsenter.

The rollout test's controller runs on the host (the role's `delegate_to: localhost` tasks
really run on the controller) and reaches the machine without ssh: `ansible_host` is the
host PID of the machine's PID 1, every command runs in all its namespaces. Built on the
`local` connection, which handles become (sudo inside the machine) and pipelining; only
the commands and the file copies are routed into the machine.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection.local import Connection as LocalConnection

DOCUMENTATION = """
    name: machine_nsenter
    short_description: run in a systemd-nspawn machine through nsenter (badged's tests)
    description:
        - ansible_host is the host PID of the machine's PID 1; needs root on the host.
    author: badged maintainers
    options:
        become_success_timeout:
            type: int
            default: 10
            description: Seconds to wait for become to succeed.
            vars:
                - name: ansible_local_become_success_timeout
        become_strip_preamble:
            type: bool
            default: true
            description: Strip internal become output preceding command execution.
            vars:
                - name: ansible_local_become_strip_preamble
    extends_documentation_fragment:
        - connection_pipelining
"""

PATH_IN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Connection(LocalConnection):
    transport = "machine_nsenter"
    has_pipelining = True

    def _prefix(self) -> list[str]:
        pid = str(self._play_context.remote_addr)
        if not pid.isdigit():
            raise AnsibleConnectionFailure(
                f"machine_nsenter: ansible_host must be the PID of the machine's init, "
                f"not {pid!r}")
        return ["nsenter", f"--target={pid}", "--all", "--", "/usr/bin/env", "-i",
                f"PATH={PATH_IN}", "HOME=/root", "LANG=C.UTF-8", "USER=root",
                "LOGNAME=root"]

    def exec_command(self, cmd, in_data=None, sudoable=True):  # type: ignore[no-untyped-def]
        inside = shlex.join([*self._prefix(), "/bin/sh", "-c", cmd])
        return super().exec_command(inside, in_data=in_data, sudoable=sudoable)

    def put_file(self, in_path: str, out_path: str) -> None:
        with Path(in_path).open("rb") as src:
            proc = subprocess.run(
                [*self._prefix(), "/bin/sh", "-c", 'cat > "$1"', "put", out_path],
                stdin=src, capture_output=True, check=False)
        if proc.returncode != 0:
            raise AnsibleError(f"machine_nsenter: cannot write {out_path}: "
                               f"{proc.stderr.decode(errors='replace')}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        with Path(out_path).open("wb") as dst:
            proc = subprocess.run([*self._prefix(), "cat", in_path], stdout=dst,
                                  stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise AnsibleError(f"machine_nsenter: cannot read {in_path}: "
                               f"{proc.stderr.decode(errors='replace')}")

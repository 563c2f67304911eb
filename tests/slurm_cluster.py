"""A throw-away single-node SLURM cluster for the cluster integration test.

Debian's slurm-wlm and munge, set up as anchors.md section 6 describes: a
private munge daemon (own key and socket), ``slurmctld`` and ``slurmd`` for
this host, no accounting database but a job completion log (every finished
job's id, name, partition and state, however long ago it ended). State, spool
and logs live in a temporary folder; only ``/etc/slurm/slurm.conf`` is written
outside it, because the jobs' nested ``srun`` (snakemake's slurm-jobstep
executor drops ``SLURM_CONF``) reads the standard path. It is removed again on
shutdown.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# lesionseg test cluster"
PACKAGES = ["slurm-wlm", "munge"]
PROGRAMS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel"]
PARTITION = "debug"


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def install_packages() -> str | None:
    """Install slurm-wlm and munge when missing; None on success, else why it cannot be done."""
    if not missing_programs():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (f"SLURM is not installed ({', '.join(missing_programs())} missing) and the test can only install it "
                "as root with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr[-1500:]}"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SingleNodeSlurm:
    """slurmctld + slurmd on this host with one partition; start() and stop()."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname()
        # Twice the cores: the workflow's jobs are short and mostly single-threaded, and two at a time per
        # core keep the test short (config_overrides lets slurmd accept more CPUs than it finds).
        self.cpus = 2 * (os.cpu_count() or 1)
        self.munge_socket = root / "munge" / "munge.socket"
        self.job_completion_log = root / "log" / "jobcomp.txt"
        self.started: list[str] = []

    def config_text(self) -> str:
        root, host = self.root, self.host
        # Leave the system some memory; jobs ask for what their rules declare.
        real_memory = max(2000, memory_mb() - 2000)
        # MinJobAge: Snakemake's squeue status checks need a finished job to stay known until they see it end,
        # and a day outlasts a run on any machine, however loaded. MessageTimeout: a busy host answers late.
        return f"""{MARKER} (removed when the test ends)
ClusterName=lesionseg-test
SlurmctldHost={host}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.job_completion_log}
MpiDefault=none
MinJobAge=86400
MessageTimeout=60
ReturnToService=2
SchedulerParameters=sched_interval=1
SlurmdParameters=config_overrides
NodeName={host} CPUs={self.cpus} RealMemory={real_memory} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""

    def start(self) -> None:
        if SLURM_CONF.exists() and MARKER not in SLURM_CONF.read_text():
            raise RuntimeError(f"{SLURM_CONF} exists and is not the test's: not touching a real SLURM set-up")
        for folder in ("munge", "state", "spool", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        munge = self.root / "munge"
        munge.chmod(0o711)  # clients must reach the socket
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        subprocess.run([program("munged"), "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                        f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log",
                        f"--seed-file={munge}/munged.seed"], check=True, capture_output=True, timeout=60)
        self.started.append("munged")
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(self.config_text())
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([program(daemon)], check=True, capture_output=True, timeout=60)
            self.started.append(daemon)
        self.wait_until_idle()

    def wait_until_idle(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
            state = result.stdout.strip()
            if state == "idle":
                return
            time.sleep(1)
        raise RuntimeError(f"the SLURM node did not become idle (state {state!r}); logs in {self.root / 'log'}")

    def finished_jobs(self) -> dict[str, dict[str, str]]:
        """Every job that has ended, by id: its job completion record (JobState, Partition, Name, ExitCode, ...)."""
        if not self.job_completion_log.exists():
            return {}
        records = [completion_record(line) for line in self.job_completion_log.read_text().splitlines()]
        return {record["JobId"]: record for record in records}

    def finished_jobs_once_recorded(self, job_ids: Collection[str],
                                    timeout_s: float = 120) -> dict[str, dict[str, str]]:
        """finished_jobs() as soon as it holds all of ``job_ids``, or as it is after ``timeout_s``.

        The controller writes a record as it ends a job, which may be just after a client saw the job end.
        """
        deadline = time.monotonic() + timeout_s
        while not set(job_ids) <= self.finished_jobs().keys() and time.monotonic() < deadline:
            time.sleep(1)
        return self.finished_jobs()

    def stop(self) -> None:
        if "slurmctld" in self.started:
            subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True, timeout=30)
        for daemon in ("slurmd", "slurmctld"):
            if daemon in self.started:
                stop_pid_file(self.root / f"{daemon}.pid")
        if "munged" in self.started:
            subprocess.run([program("munged"), "--stop", f"--socket={self.munge_socket}"], capture_output=True,
                           timeout=60)
        if SLURM_CONF.exists() and MARKER in SLURM_CONF.read_text():
            SLURM_CONF.unlink()
        self.started.clear()


def completion_record(line: str) -> dict[str, str]:
    """The fields of one jobcomp/filetxt line ("JobId=7 UserId=root(0) ... JobState=COMPLETED ...")."""
    return dict(re.findall(r"(\w+)=(\S*)", line))


def stop_pid_file(pid_file: Path, timeout_s: float = 30) -> None:
    """SIGTERM the daemon of ``pid_file`` and wait until it is gone."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, 9)

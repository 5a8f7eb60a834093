#!/usr/bin/python3
"""agentryd vs supervisord vs PM2, measured the same way in one run.

Run it through compare.sh, which installs the tools, builds the helpers and starts this
script under `procwatch reap` (a child subreaper that reaps daemons orphaned by their
launchers and kills anything of this run left behind). Standard library only.

What is measured, for each tool, as the median over --repeats runs:

  spawn       wall time from forking the launch command (agentryd -c CFG, supervisord -n -c
              CFG, `pm2 start ecosystem.json` with no PM2 daemon running; so each includes
              its daemon's own start) until N sleepers run. "Runs" = /proc/PID/cmdline
              shows the sleeper binary as argv[0] (fork and exec done), checked by procwatch
              for all three; not the tools' own notion of RUNNING.
  floor       a bare, serial posix_spawn loop of N sleepers (spawn_floor --hold; glibc's
              posix_spawn returns once the child has exec'd), launched and timed by the same
              procwatch launch-wait as the supervisors, right before and right after each
              tool's spawn; the tool's ratio is taken against the mean of those two, per
              repeat, and the median of the ratios is the reported figure.
  rss         VmRSS of the daemon process alone (agentryd's main process, not its orphan
              guard; supervisord; PM2's God daemon) with no process, N/10 and N sleepers,
              2 s after the last one started.
  list        end-to-end wall time of the CLI listing all N processes (agentry list --json,
              supervisorctl status, pm2 jlist), output to /dev/null; median of 5 calls.
  list during one list call issued once N/10 sleepers run during a mass spawn of N.
  restart     SIGKILL of one sleeper to a new process with the same command line in /proc
              (procwatch polls every ~50 us); median of --kills kills, 200 ms apart.
  shutdown    the way a service manager stops each tool (SIGTERM to agentryd and supervisord;
              `pm2 kill`, which PM2's own systemd unit runs) until the daemon (for agentryd
              also its guard) and all N sleepers have terminated (pidfd). In the first
              repeat also the other way (supervisorctl shutdown; SIGTERM to PM2's daemon,
              given at most --alt-stop-cap seconds).
  capture     a writer writes B bytes to stdout: alone into a file, or under each tool with
              stdout logged to a file; from the writer's own start stamp until the file
              holds all B bytes. Bulk (64 KiB writes) and lines (one write per 100 bytes).
              --capture-pairs pairs (alone, then the tool) per mode and repeat; the ratio
              is taken per pair, as the machine's load drifts.
  rotation    L numbered lines, one write each, logged with rotation at 1 MiB; lines missing
              from all files together afterwards. PM2 rotates with its pm2-logrotate module.
  orphans     SIGKILL of the daemon while a child has a child of its own: who survives.
"""

import argparse
import atexit
import json
import math
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOOLS = ["agentryd", "supervisord", "pm2"]
MIB = 1024 * 1024


def log(msg):
    sys.stderr.write(time.strftime("%H:%M:%S ") + msg + "\n")
    sys.stderr.flush()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------- /proc


def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return b"" if "b" in mode else ""


def rss_kib(pid):
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def alive(pid):
    s = read(f"/proc/{pid}/stat")
    if not s:
        return False
    return s[s.rfind(")") + 2] not in "ZX"


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def find_cmdline(argv):
    want = b"\0".join(a.encode() for a in argv) + b"\0"
    return [p for p in pids() if read(f"/proc/{p}/cmdline", "rb") == want and alive(p)]


def children_of(pid):
    out = []
    for p in pids():
        s = read(f"/proc/{p}/stat")
        if s and int(s[s.rfind(")") + 2:].split()[1]) == pid:
            out.append((p, read(f"/proc/{p}/comm").strip()))
    return out


def loadavg():
    return read("/proc/loadavg").split()[:3]


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy over the next `seconds` (anything on the machine)."""
    def snap():
        f = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:]]
        return sum(f), f[3] + f[4]  # total, idle + iowait
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


# ---------------------------------------------------------------------------- context


class Ctx:
    def __init__(self, args):
        self.args = args
        self.token = os.environ.get("AGENTRY_BENCH_TOKEN") or secrets.token_hex(6)
        os.environ["AGENTRY_BENCH_TOKEN"] = self.token
        self.run = args.run_dir or os.path.join("/tmp", "agentry-bench-" + self.token)
        os.makedirs(self.run, exist_ok=True)
        self.bin = os.path.join(self.run, "bin")
        os.makedirs(self.bin, exist_ok=True)
        h = args.helpers_dir
        self.procwatch = os.path.join(h, "procwatch")
        self.spawn_floor = os.path.join(h, "spawn_floor")
        self.writer = os.path.join(h, "writer")
        self.agentryd = os.path.join(args.agentry_bin_dir, "agentryd")
        self.agentry = os.path.join(args.agentry_bin_dir, "agentry")
        self.pm2 = args.pm2
        self.supervisord = shutil.which("supervisord")
        self.supervisorctl = shutil.which("supervisorctl")
        self.daemons = set()  # pids of daemons started and not yet seen gone
        # One copy of sleep per tool, so that procwatch can tell their children apart.
        self.sleeper = {}
        for name in TOOLS + ["floor"]:
            path = os.path.join(self.bin, "sleep-" + name)
            shutil.copy2("/bin/sleep", path)
            self.sleeper[name] = path
        self.n = 100 if args.quick else 1000
        self.n_mid = self.n // 10
        q = 8 if args.quick else 1
        # Multiples of 100, so that the output ends with a complete line.
        self.bulk_bytes = 256_000_000 // q
        self.lines_bytes = 100_000_000 // q
        self.rot_lines = 2_000_000 // (10 if args.quick else 1)
        self.rot_keep = 64 if not args.quick else 16
        self.kills = args.kills
        self.poll_us = args.poll_us

    def pw(self, *argv, env=None, timeout=900):
        r = subprocess.run([self.procwatch, *argv], capture_output=True, text=True, env=env,
                           timeout=timeout)
        if r.stderr.strip():
            log("procwatch: " + r.stderr.strip())
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"procwatch {argv[0]} printed {r.stdout!r} {r.stderr!r}")


# ---------------------------------------------------------------------------- tools
#
# Each tool writes its config into its own fresh directory (an "instance"), is started by
# one launch command, and is stopped with SIGTERM to its daemon.


class Instance:
    def __init__(self, ctx, tool, phase):
        self.dir = os.path.join(ctx.run, f"{tool.name}-{phase}")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.logdir = os.path.join(self.dir, "logs")
        os.makedirs(self.logdir)
        self.daemon_log = os.path.join(self.dir, "daemon.out")
        self.cfg = None


class Agentryd:
    name = "agentryd"
    is_cli = False

    def __init__(self, ctx):
        self.ctx = ctx

    def env(self, inst):
        return dict(os.environ)

    def sock(self, inst):
        return os.path.join(inst.dir, "rt", "manager.sock")

    def _write(self, inst, procs):
        lines = [f"state_dir: {inst.dir}/state", "log_level: warn", "processes:" + ("" if procs else " []")]
        for p in procs:
            lines.append(f"  - id: {p['id']}")
            lines.append(f"    command: {p['command']}")
            lines.append("    args: [" + ", ".join(json.dumps(a) for a in p["args"]) + "]")
            lines.append(f"    restart: {p['restart']}")
            lines.append("    start_window: 0s")
            lines.append("    backoff: {initial: 0s, jitter: 0}")
            if "file" in p:
                rot = ""
                if p.get("rotate"):
                    rot = f", rotate: {{size: 1MiB, keep: {p['rotate']}}}"
                lines.append(f"    logs: {{file: {p['file']}{rot}}}")
        inst.cfg = os.path.join(inst.dir, "agentry.yaml")
        with open(inst.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")

    def config_sleepers(self, inst, n):
        exe = self.ctx.sleeper[self.name]
        self._write(inst, [dict(id=f"s{i}", command=exe, args=["100000", str(i)], restart="always")
                           for i in range(n)])

    def config_one(self, inst, command, args, logfile=None, rotate=None):
        p = dict(id="w", command=command, args=args, restart="never")
        if logfile:
            p["file"] = logfile
            p["rotate"] = rotate
        self._write(inst, [p])

    def launch_argv(self, inst):
        return [self.ctx.agentryd, "-c", inst.cfg, "--runtime-dir", os.path.join(inst.dir, "rt"),
                "--log-level", "warn"]

    def daemon_pid(self, inst, launcher_pid):
        return launcher_pid

    def extra_pids(self, inst, dpid):
        # The orphan guard: part of the daemon, so shutdown waits for it too.
        return [p for p, comm in children_of(dpid) if comm.startswith("agentry-guard")]

    def ready_argv(self, inst):
        return [self.ctx.agentry, "--socket", self.sock(inst), "info"]

    def list_argv(self, inst):
        return [self.ctx.agentry, "--socket", self.sock(inst), "list", "--json"]

    def stop_all_argv(self, inst):
        return None  # the CLI has no stop-everything command: SIGTERM is the way

    # (description, through stop_all_argv?): how a service manager stops it, and another way.
    primary_stop = ("SIGTERM", False)
    alt_stop = None

    def version(self):
        return subprocess.run([self.ctx.agentryd, "--version"], capture_output=True,
                              text=True).stdout.strip()


class Supervisord:
    name = "supervisord"
    is_cli = False

    def __init__(self, ctx):
        self.ctx = ctx

    def env(self, inst):
        return dict(os.environ)

    def _write(self, inst, programs):
        d = inst.dir
        out = [
            "[unix_http_server]", f"file={d}/supervisor.sock", "",
            "[supervisord]", f"logfile={d}/supervisord.log", f"pidfile={d}/supervisord.pid",
            f"childlogdir={d}", "loglevel=warn", "nodaemon=true", "minfds=10000", "minprocs=200", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{d}/supervisor.sock", "",
        ]
        for p in programs:
            out += [f"[program:{p['id']}]", "command=" + " ".join([p["command"]] + p["args"]),
                    "autostart=true", f"autorestart={p['autorestart']}", "startsecs=0",
                    "stopsignal=TERM", "stopwaitsecs=10"]
            if "file" in p:
                out += [f"stdout_logfile={p['file']}", "redirect_stderr=true"]
                if p.get("rotate"):
                    out += ["stdout_logfile_maxbytes=1MB", f"stdout_logfile_backups={p['rotate']}"]
                else:
                    out += ["stdout_logfile_maxbytes=0"]
            else:
                # Output is still read from the pipes (as agentryd does into its ring), but
                # not written to a file, like agentryd's default and PM2's /dev/null below.
                out += ["stdout_logfile=NONE", "stderr_logfile=NONE"]
            out.append("")
        inst.cfg = os.path.join(d, "supervisord.conf")
        with open(inst.cfg, "w") as f:
            f.write("\n".join(out))

    def config_sleepers(self, inst, n):
        exe = self.ctx.sleeper[self.name]
        self._write(inst, [dict(id=f"s{i}", command=exe, args=["100000", str(i)], autorestart="true")
                           for i in range(n)])

    def config_one(self, inst, command, args, logfile=None, rotate=None):
        p = dict(id="w", command=command, args=args, autorestart="false")
        if logfile:
            p["file"] = logfile
            p["rotate"] = rotate
        self._write(inst, [p])

    def launch_argv(self, inst):
        return [self.ctx.supervisord, "-n", "-c", inst.cfg]

    def daemon_pid(self, inst, launcher_pid):
        return launcher_pid

    def extra_pids(self, inst, dpid):
        return []

    def ready_argv(self, inst):
        return [self.ctx.supervisorctl, "-c", inst.cfg, "pid"]

    def list_argv(self, inst):
        return [self.ctx.supervisorctl, "-c", inst.cfg, "status"]

    def stop_all_argv(self, inst):
        return [self.ctx.supervisorctl, "-c", inst.cfg, "shutdown"]

    primary_stop = ("SIGTERM", False)
    alt_stop = ("supervisorctl shutdown", True)

    def version(self):
        return subprocess.run([self.ctx.supervisord, "--version"], capture_output=True,
                              text=True).stdout.strip()


class PM2:
    name = "pm2"
    is_cli = True  # `pm2 start` is a client that spawns the daemon and exits

    def __init__(self, ctx):
        self.ctx = ctx
        self.home_override = None

    def home(self, inst):
        return self.home_override or os.path.join(inst.dir, "home")

    def env(self, inst):
        e = dict(os.environ)
        e["PM2_HOME"] = self.home(inst)
        return e

    def _write(self, inst, apps):
        inst.cfg = os.path.join(inst.dir, "ecosystem.json")
        with open(inst.cfg, "w") as f:
            json.dump({"apps": apps}, f)

    def _app(self, name, command, args, autorestart, out="/dev/null"):
        return {
            "name": name, "script": command, "args": args, "interpreter": "none",
            "exec_mode": "fork", "autorestart": autorestart, "restart_delay": 0,
            "max_restarts": 1000000, "out_file": out, "error_file": "/dev/null",
            "vizion": False,
        }

    def config_sleepers(self, inst, n):
        exe = self.ctx.sleeper[self.name]
        self._write(inst, [self._app(f"s{i}", exe, ["100000", str(i)], True) for i in range(n)])

    def config_one(self, inst, command, args, logfile=None, rotate=None):
        # Rotation is pm2-logrotate's job; its settings live in the PM2 home (see setup_rotation).
        self._write(inst, [self._app("w", command, args, False, out=logfile or "/dev/null")])

    def launch_argv(self, inst):
        return [self.ctx.pm2, "start", inst.cfg]

    def daemon_pid(self, inst, launcher_pid):
        deadline = time.time() + 30
        path = os.path.join(self.home(inst), "pm2.pid")
        while time.time() < deadline:
            s = read(path).strip()
            if s.isdigit() and alive(int(s)):
                return int(s)
            time.sleep(0.05)
        raise RuntimeError("PM2 daemon pid file did not appear")

    def extra_pids(self, inst, dpid):
        return []

    def ready_argv(self, inst):
        return [self.ctx.pm2, "ping"]

    def list_argv(self, inst):
        return [self.ctx.pm2, "jlist"]

    def stop_all_argv(self, inst):
        return [self.ctx.pm2, "kill"]

    # PM2's generated systemd unit stops it with `pm2 kill`; a plain SIGTERM to its daemon
    # stops the apps one after the other and takes minutes with 1000 of them.
    primary_stop = ("pm2 kill", True)
    alt_stop = ("SIGTERM", False)

    def version(self):
        pkg = os.path.join(os.path.dirname(os.path.realpath(self.ctx.pm2)), "..", "package.json")
        try:
            return "pm2 " + json.load(open(pkg))["version"]
        except (OSError, ValueError, KeyError):
            return "pm2 ?"


# ---------------------------------------------------------------------------- phases


class Bench:
    def __init__(self, ctx):
        self.ctx = ctx
        self.tools = {"agentryd": Agentryd(ctx), "supervisord": Supervisord(ctx), "pm2": PM2(ctx)}
        self.samples = {t: {} for t in TOOLS + ["floor"]}
        self.details = {t: {} for t in TOOLS + ["floor"]}
        self.errors = []
        self.load = []
        self.capped = set()  # (tool, metric): the sample is a time limit, the true value is higher
        self.pm2_rot_home = None

    def add(self, tool, metric, value, detail=None):
        self.samples[tool].setdefault(metric, []).append(value)
        if detail is not None:
            self.details[tool].setdefault(metric, []).append(detail)

    # -- daemon lifecycle

    def start(self, tool, inst, count=None, during=False):
        """Launches the tool; with count, waits (timed) until that many sleepers run."""
        ctx = self.ctx
        env = tool.env(inst)
        if count:
            argv = ["launch-wait", "--exe", ctx.sleeper[tool.name], "--count", str(count),
                    "--timeout", "600", "--poll-us", str(ctx.poll_us), "--log", inst.daemon_log]
            if tool.is_cli:
                argv.append("--cli")
            if during:
                argv += ["--during-at", str(max(1, count // 10)), "--during", " ".join(tool.list_argv(inst))]
            r = ctx.pw(*argv, "--", *tool.launch_argv(inst), env=env)
            if not tool.is_cli:
                ctx.daemons.add(r["launcher_pid"])
            dpid = tool.daemon_pid(inst, r["launcher_pid"])
            ctx.daemons.add(dpid)
            if not r["ok"]:
                raise RuntimeError(f"{tool.name}: only {r['count']} of {count} started: {r}")
            return dpid, r
        # Untimed start, ready when the tool's own client gets an answer.
        with open(inst.daemon_log, "ab") as out:
            if tool.is_cli:
                subprocess.run(tool.ready_argv(inst), stdout=out, stderr=out, env=env, timeout=120,
                               start_new_session=True)
                dpid = tool.daemon_pid(inst, None)
            else:
                p = subprocess.Popen(tool.launch_argv(inst), stdout=out, stderr=out, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
                dpid = p.pid
        ctx.daemons.add(dpid)
        deadline = time.time() + 60
        while time.time() < deadline:
            r = subprocess.run(tool.ready_argv(inst), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
            if r.returncode == 0:
                return dpid, None
            if not alive(dpid):
                raise RuntimeError(f"{tool.name} exited at start; see {inst.daemon_log}")
            time.sleep(0.05)
        raise RuntimeError(f"{tool.name} not ready after 60 s")

    def stop(self, tool, inst, dpid, exe=None, use_cli=False, timeout=300, may_time_out=False):
        """SIGTERM to the daemon (or, with use_cli, the tool's stop-everything command); waits
        until the daemon, its extra processes and exe's processes are gone. With may_time_out,
        a shutdown still going after `timeout` s is returned (ok false) instead of raised."""
        run = tool.stop_all_argv(inst) if use_cli else None
        if run:
            argv = ["wait-gone", "--signal", "none", "--run", " ".join(run),
                    "--run-log", inst.daemon_log + ".stop"]
        else:
            argv = ["wait-gone", "--signal", "TERM"]
        argv += ["--timeout", str(timeout), "--pid", str(dpid)]
        for p in tool.extra_pids(inst, dpid):
            argv += ["--pid", str(p)]
        if exe:
            argv += ["--exe", exe]
        r = self.ctx.pw(*argv, env=tool.env(inst))
        if r["ok"]:
            self.ctx.daemons.discard(dpid)
        elif may_time_out:
            return r
        else:
            raise RuntimeError(f"{tool.name}: shutdown left {r['left']} processes")
        self.reap_quietly()
        return r

    def teardown_fast(self, tool, inst, dpid):
        """Untimed: SIGKILL the daemon and whatever still runs its sleepers (saves minutes with PM2)."""
        exe = self.ctx.sleeper[tool.name]
        extra = tool.extra_pids(inst, dpid)
        for p in [dpid] + extra:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.time() + 30
        while time.time() < deadline:
            left = [p for p in pids() if read(f"/proc/{p}/cmdline", "rb").split(b"\0")[0] == exe.encode()
                    and alive(p)]
            if not left and not any(alive(p) for p in [dpid] + extra):
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        self.ctx.daemons.discard(dpid)
        self.reap_quietly()

    def reap_quietly(self):
        # Daemons started with Popen are our children: collect them.
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass

    def emergency_cleanup(self):
        for pid in list(self.ctx.daemons):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline and any(alive(p) for p in self.ctx.daemons):
            time.sleep(0.1)
        self.ctx.daemons.clear()
        r = self.ctx.pw("sweep", "--token", self.ctx.token)
        if r.get("killed"):
            log(f"cleanup: killed {r['killed']} leftover processes")
        self.reap_quietly()

    def wait_quiet(self, threshold, max_wait):
        """Waits (at most max_wait s) for the machine to be less than `threshold` busy; other
        work on the machine skews every number, so each tool's block starts on a quiet one
        when possible. Returns the last busy fraction seen."""
        deadline = time.time() + max_wait
        busy = cpu_busy()
        while busy > threshold and time.time() < deadline:
            busy = cpu_busy()
        return busy

    def phase(self, name, fn, *a):
        t0 = time.time()
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001 - one failed phase must not stop the others
            msg = f"{name}: {type(e).__name__}: {e}"
            log("ERROR " + msg)
            self.errors.append(msg)
            self.emergency_cleanup()
        log(f"  {name}: {time.time() - t0:.1f}s (load {' '.join(loadavg())})")

    # -- the measurements

    def floor(self):
        """One bare loop, launched and timed exactly like a supervisor: procwatch launch-wait
        starts `spawn_floor --hold` and polls /proc until N sleepers run. Returns its ms."""
        ctx = self.ctx
        exe = ctx.sleeper["floor"]
        out = os.path.join(ctx.run, f"floor-{len(self.samples['floor'].get('spawn_ms', []))}.out")
        r = ctx.pw("launch-wait", "--exe", exe, "--count", str(ctx.n), "--timeout", "300",
                   "--poll-us", str(ctx.poll_us), "--log", out, "--",
                   ctx.spawn_floor, "--hold", str(ctx.n), exe, "100000")
        ctx.daemons.add(r["launcher_pid"])
        if not r["ok"]:
            raise RuntimeError(f"spawn_floor: only {r['count']} of {ctx.n} started: {r}")
        g = ctx.pw("wait-gone", "--signal", "TERM", "--timeout", "60", "--pid", str(r["launcher_pid"]),
                   "--exe", exe)
        if not g["ok"]:
            raise RuntimeError(f"spawn_floor did not stop: {g}")
        ctx.daemons.discard(r["launcher_pid"])
        self.reap_quietly()
        own = json.loads(read(out).strip().splitlines()[-1])
        self.add("floor", "spawn_ms", r["elapsed_ms"],
                 {"first_ms": r["first_ms"], "loop_ms": own["loop_ms"]})
        return r["elapsed_ms"]

    def empty(self, tool, rep):
        inst = Instance(self.ctx, tool, f"empty-{rep}")
        tool.config_sleepers(inst, 0)
        dpid, _ = self.start(tool, inst)
        time.sleep(2)
        self.add(tool.name, "rss0_mib", rss_kib(dpid) / 1024)
        self.stop(tool, inst, dpid)

    def mid(self, tool, rep):
        ctx = self.ctx
        inst = Instance(ctx, tool, f"mid-{rep}")
        tool.config_sleepers(inst, ctx.n_mid)
        dpid, _ = self.start(tool, inst, count=ctx.n_mid)
        time.sleep(2)
        self.add(tool.name, "rss_mid_mib", rss_kib(dpid) / 1024)
        target = find_cmdline([ctx.sleeper[tool.name], "100000", "0"])
        if len(target) != 1:
            raise RuntimeError(f"restart target: found {target}")
        r = ctx.pw("restart", "--pid", str(target[0]), "--kills", str(ctx.kills), "--gap-ms", "200",
                   "--timeout", "10")
        if not r["ok"]:
            raise RuntimeError(f"restart: {r}")
        self.add(tool.name, "restart_ms", median(r["latencies_ms"]), r["latencies_ms"])
        self.teardown_fast(tool, inst, dpid)

    def full(self, tool, rep):
        ctx = self.ctx
        inst = Instance(ctx, tool, f"full-{rep}")
        tool.config_sleepers(inst, ctx.n)
        # The floor right before the tool and again right after it, so that the ratio
        # compares like with like on a machine whose load drifts (other work shares these cores).
        floor_before = self.floor()
        dpid, r = self.start(tool, inst, count=ctx.n)
        spawn_ms = r["elapsed_ms"]
        time.sleep(2)
        self.add(tool.name, "rss_full_mib", rss_kib(dpid) / 1024)
        for p in tool.extra_pids(inst, dpid):
            self.details[tool.name].setdefault("guard_rss_full_mib", []).append(rss_kib(p) / 1024)
        lr = ctx.pw("timecmd", "--repeat", "5", "--", *tool.list_argv(inst), env=tool.env(inst))
        self.add(tool.name, "list_ms", median(lr["ms"]), lr)
        out = subprocess.run(tool.list_argv(inst), capture_output=True, env=tool.env(inst)).stdout
        self.details[tool.name].setdefault("list_output_bytes", []).append(len(out))
        how, use_cli = tool.primary_stop
        sr = self.stop(tool, inst, dpid, exe=ctx.sleeper[tool.name], use_cli=use_cli)
        if sr["children"] != ctx.n:
            raise RuntimeError(f"shutdown saw {sr['children']} children, expected {ctx.n}")
        self.add(tool.name, "shutdown_ms", sr["elapsed_ms"], dict(sr, how=how))
        floor_after = self.floor()
        floor_ms = (floor_before + floor_after) / 2
        self.add(tool.name, "spawn_ms", spawn_ms,
                 {"first_child_ms": r["first_ms"], "floor_before_ms": floor_before, "floor_after_ms": floor_after})
        self.add(tool.name, "spawn_x_floor", spawn_ms / floor_ms)

    def during(self, tool, rep):
        ctx = self.ctx
        inst = Instance(ctx, tool, f"during-{rep}")
        tool.config_sleepers(inst, ctx.n)
        dpid, r = self.start(tool, inst, count=ctx.n, during=True)
        detail = {k: r[k] for k in r if k.startswith("during") or k == "elapsed_ms"}
        # Answered during the spawn = the reply came back before all N were running.
        detail["answered_during_spawn"] = r["during_done_ms"] < r["elapsed_ms"] and r["during_status"] == 0
        self.add(tool.name, "list_during_ms", r["during_ms"], detail)
        if rep > 0 or tool.alt_stop is None:
            self.teardown_fast(tool, inst, dpid)
            return
        # First repeat only: the tool's other way to stop everything (supervisorctl shutdown;
        # SIGTERM to PM2's daemon, which is slow enough to need a cap).
        time.sleep(2)
        how, use_cli = tool.alt_stop
        cap = ctx.args.alt_stop_cap
        sr = self.stop(tool, inst, dpid, exe=ctx.sleeper[tool.name], use_cli=use_cli, timeout=cap,
                       may_time_out=True)
        if not sr["ok"]:
            log(f"  {tool.name}: {how} had not finished after {cap:.0f} s; {sr['left']} processes left")
            self.add(tool.name, "shutdown_alt_ms", cap * 1000.0, dict(sr, how=how, capped=True))
            self.capped.add((tool.name, "shutdown_alt_ms"))
            self.teardown_fast(tool, inst, dpid)
            return
        if sr["children"] != ctx.n:
            raise RuntimeError(f"shutdown saw {sr['children']} children, expected {ctx.n}")
        self.add(tool.name, "shutdown_alt_ms", sr["elapsed_ms"], dict(sr, how=how))

    def _capture_one(self, tool, inst, mode, nbytes):
        """Starts the writer (alone when tool is None); returns bytes/s from its start stamp."""
        ctx = self.ctx
        out = os.path.join(inst.logdir, "w.log")
        stamp = os.path.join(inst.dir, "stamp")
        args = [mode, str(nbytes), stamp]
        watcher = subprocess.Popen([ctx.procwatch, "wait-file", "--path", out, "--bytes", str(nbytes),
                                    "--timeout", "300"], stdout=subprocess.PIPE, text=True)
        dpid = None
        try:
            if tool is None:
                with open(out, "wb") as f:
                    subprocess.run([ctx.writer, *args], stdout=f, check=True, timeout=300)
            else:
                tool.config_one(inst, ctx.writer, args, logfile=out)
                dpid, _ = self.start(tool, inst) if not tool.is_cli else self._start_cli(tool, inst)
            w = json.loads(watcher.communicate(timeout=320)[0])
        finally:
            if watcher.poll() is None:
                watcher.kill()
        if w["size"] <= 0:
            raise RuntimeError("nothing reached the log file")
        t0 = int(read(stamp).split()[0])
        if dpid:
            self._wait_writer_done(stamp)
            self.stop(tool, inst, dpid)
        size = os.path.getsize(out)
        lost = nbytes - size
        if lost < 0:
            raise RuntimeError(f"log file holds {size} bytes, more than the {nbytes} written")
        if lost:
            log(f"  {getattr(tool, 'name', 'alone')}: {lost} of {nbytes} bytes never reached the log file")
        # With a loss, the rate is that of the bytes that did arrive, up to the last one.
        secs = (w["done_realtime_ns"] - t0) / 1e9
        os.unlink(out)
        return size / secs, lost

    def _start_cli(self, tool, inst):
        # `pm2 start ecosystem.json`: the CLI spawns the daemon, which starts the app.
        with open(inst.daemon_log, "ab") as out:
            subprocess.run(tool.launch_argv(inst), stdout=out, stderr=out, env=tool.env(inst),
                           timeout=300, start_new_session=True)
        dpid = tool.daemon_pid(inst, None)
        self.ctx.daemons.add(dpid)
        return dpid, None

    def _wait_writer_done(self, stamp, timeout=300):
        deadline = time.time() + timeout
        while len(read(stamp).split()) < 2:
            if time.time() > deadline:
                raise RuntimeError("writer did not finish")
            time.sleep(0.05)

    def capture(self, tool, rep):
        """For each mode, --capture-pairs times: the writer alone into a file, then the same
        writer under the tool, back to back, so each ratio compares the two under the same
        machine load."""
        ctx = self.ctx
        for mode, nbytes in [m for m in (("bulk", ctx.bulk_bytes), ("lines", ctx.lines_bytes))
                             for _ in range(ctx.args.capture_pairs)]:
            rates = {}
            for who in (None, tool):
                name = who.name if who else "floor"
                inst = Instance(ctx, who or Alone, f"capture-{mode}-{rep}")
                bps, lost = self._capture_one(who, inst, mode, nbytes)
                self.add(name, f"capture_{mode}_mbps", bps / 1e6)
                self.add(name, f"capture_{mode}_lost_bytes", lost)
                shutil.rmtree(inst.dir, ignore_errors=True)
                rates[name] = bps
            self.add(tool.name, f"capture_{mode}_x_alone", rates[tool.name] / rates["floor"])

    def setup_pm2_rotation(self):
        """pm2-logrotate in a PM2 home of its own: copied from --pm2-rotate-cache when that
        holds one, else installed from the npm registry (`pm2 install`) and saved there."""
        ctx = self.ctx
        home = os.path.join(ctx.run, "pm2-rot-home")
        cache = ctx.args.pm2_rotate_cache
        module = os.path.join("modules", "pm2-logrotate")
        shutil.rmtree(home, ignore_errors=True)
        if cache and os.path.isdir(os.path.join(cache, module)):
            shutil.copytree(cache, home, symlinks=True)
        else:
            os.makedirs(home)
            env = dict(os.environ, PM2_HOME=home)
            logf = os.path.join(ctx.run, "pm2-logrotate-install.log")
            with open(logf, "wb") as out:
                r = subprocess.run([ctx.pm2, "install", "pm2-logrotate"], stdout=out, stderr=out, env=env,
                                   timeout=300, start_new_session=True)
            # `pm2 install` leaves its daemon running: stop it before the home is used.
            pidf = os.path.join(home, "pm2.pid")
            if read(pidf).strip().isdigit():
                dpid = int(read(pidf).strip())
                ctx.daemons.add(dpid)
                ctx.pw("wait-gone", "--signal", "TERM", "--pid", str(dpid), "--timeout", "60")
                ctx.daemons.discard(dpid)
            if r.returncode != 0 or not os.path.isdir(os.path.join(home, module)):
                raise RuntimeError(f"pm2 install pm2-logrotate failed (exit {r.returncode}); see {logf}")
            if cache:
                shutil.rmtree(cache, ignore_errors=True)
                shutil.copytree(home, cache, symlinks=True,
                                ignore=shutil.ignore_patterns("*.sock", "*.pid", "logs", "pids"))
        modconf = os.path.join(home, "module_conf.json")
        # Written directly rather than with `pm2 set`, which stored {} for some values in our
        # tries with pm2 7.0.4 when several were set in a row.
        conf = json.load(open(modconf))
        conf.setdefault("pm2-logrotate", {}).update({
            "max_size": "1M", "retain": str(ctx.rot_keep), "workerInterval": "1", "compress": False,
            "rotateModule": False})
        with open(modconf, "w") as f:
            json.dump(conf, f, indent=4)
        self.pm2_rot_home = home
        with open(os.path.join(ctx.run, "pm2-logrotate-version"), "w") as f:
            pkg = os.path.join(home, "modules", "pm2-logrotate", "node_modules", "pm2-logrotate", "package.json")
            f.write(json.load(open(pkg)).get("version", "?"))

    def rotation(self, tool, rep):
        ctx = self.ctx
        inst = Instance(ctx, tool, f"rotation-{rep}")
        if tool.name == "pm2":
            if not self.pm2_rot_home:
                raise RuntimeError("pm2-logrotate is not installed")
            tool.home_override = self.pm2_rot_home
        try:
            out = os.path.join(inst.logdir, "w.log")
            stamp = os.path.join(inst.dir, "stamp")
            tool.config_one(inst, ctx.writer, ["numbered", str(ctx.rot_lines), stamp], logfile=out,
                            rotate=ctx.rot_keep)
            dpid, _ = self.start(tool, inst) if not tool.is_cli else self._start_cli(tool, inst)
            self._wait_writer_done(stamp)
            # Settled = the files' total size has not changed for 3 s (pm2-logrotate checks every 1 s).
            last, since = -1, time.time()
            deadline = time.time() + 120
            while time.time() - since < 3 and time.time() < deadline:
                total = sum(os.path.getsize(os.path.join(inst.logdir, f)) for f in os.listdir(inst.logdir))
                if total != last:
                    last, since = total, time.time()
                time.sleep(0.2)
            self.stop(tool, inst, dpid)
            counts = count_numbered(inst.logdir, ctx.rot_lines)
            counts["max_file_bytes"] = max(os.path.getsize(os.path.join(inst.logdir, f))
                                           for f in os.listdir(inst.logdir))
            self.add(tool.name, "rotation_lost_lines", counts["lost"], counts)
        finally:
            tool.home_override = None
            shutil.rmtree(inst.dir, ignore_errors=True)

    def orphans(self, tool):
        """SIGKILL the daemon while its child has a child; who is still alive 3 s later?"""
        ctx = self.ctx
        inst = Instance(ctx, tool, "orphans")
        exe = os.path.join(ctx.bin, f"sleep-orphan-{tool.name}")
        shutil.copy2("/bin/sleep", exe)
        script = f"{exe} 100000 1 & exec {exe} 100000 2"
        tool.config_one(inst, "/bin/sh", ["-c", script] if tool.name != "supervisord" else
                        ["-c", "'" + script + "'"])
        dpid, _ = self.start(tool, inst) if not tool.is_cli else self._start_cli(tool, inst)
        deadline = time.time() + 20
        child = grandchild = []
        while time.time() < deadline:
            grandchild = find_cmdline([exe, "100000", "1"])
            child = find_cmdline([exe, "100000", "2"])
            if child and grandchild:
                break
            time.sleep(0.05)
        if not (child and grandchild):
            raise RuntimeError("orphan test: child or grandchild did not start")
        extra = tool.extra_pids(inst, dpid)
        os.kill(dpid, signal.SIGKILL)
        time.sleep(3)
        res = {"child_survived": alive(child[0]), "grandchild_survived": alive(grandchild[0])}
        if extra:
            res["guard_exited"] = not alive(extra[0])
        res["instances_found"] = {"child": len(child), "grandchild": len(grandchild)}
        self.details[tool.name]["orphans"] = res
        ctx.daemons.discard(dpid)
        for p in extra:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline:
            left = [p for p in pids() if read(f"/proc/{p}/cmdline", "rb").split(b"\0")[0] == exe.encode()
                    and alive(p)]
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        self.reap_quietly()


class Alone:
    name = "alone"


def count_numbered(logdir, n):
    """Lines 'line %010d' across every file in logdir: distinct, duplicated, damaged, lost."""
    seen = bytearray(n)
    valid = damaged = 0
    files = sorted(os.listdir(logdir))
    for name in files:
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        for line in data.split(b"\n"):
            if not line:
                continue
            if len(line) == 15 and line.startswith(b"line ") and line[5:].isdigit():
                i = int(line[5:])
                if i < n:
                    valid += 1
                    seen[i] = 1
                    continue
            damaged += 1
    distinct = sum(seen)
    return {"files": len(files), "distinct": distinct, "duplicates": valid - distinct,
            "damaged_lines": damaged, "lost": n - distinct}


# ---------------------------------------------------------------------------- report

# metric, label, unit, lower-is-better, reference column meaning, target for agentryd
METRICS = [
    ("spawn_ms", "spawn N to running", "ms", True),
    ("rss0_mib", "daemon RSS, 0 children", "MiB", True),
    ("rss_mid_mib", "daemon RSS, N/10 children", "MiB", True),
    ("rss_full_mib", "daemon RSS, N children", "MiB", True),
    ("list_ms", "list N (idle)", "ms", True),
    ("list_during_ms", "list N during mass spawn", "ms", True),
    ("restart_ms", "restart after kill -9", "ms", True),
    ("shutdown_ms", "shutdown with N children (SIGTERM; PM2: pm2 kill)", "ms", True),
    ("shutdown_alt_ms", "shutdown with N, other way (supervisorctl shutdown; PM2: SIGTERM), 1st repeat",
     "ms", True),
    ("capture_bulk_mbps", "log capture, 64 KiB writes", "MB/s", False),
    ("capture_lines_mbps", "log capture, 100 B lines", "MB/s", False),
    ("capture_bulk_lost_bytes", "bytes lost in capture, 64 KiB writes (worst run)", "bytes", True),
    ("capture_lines_lost_bytes", "bytes lost in capture, 100 B lines (worst run)", "bytes", True),
    ("rotation_lost_lines", "lines lost through rotation (worst run)", "lines", True),
]


def fmt(v, unit, capped=False):
    if v is None:
        return "n/a"
    if capped:
        return "> " + fmt(v, unit)
    if unit in ("lines", "bytes"):
        return f"{v:.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None:
        return None
    if b == 0:
        return None if a != 0 else 1.0
    return a / b


def build_report(bench, ctx, meta):
    # Losses: the worst repeat (a loss in any run counts); everything else: the median.
    med = {t: {m: (max(v) if m.endswith("_lost_bytes") or m.endswith("_lost_lines") else median(v))
               for m, v in bench.samples[t].items()} for t in bench.samples}
    a = med["agentryd"]
    during = bench.details["agentryd"].get("list_during_ms", [])
    answered = bool(during) and all(d["answered_during_spawn"] for d in during)
    # Against the floor / the writer alone: the median of ratios taken back to back.
    paired = {"spawn_ms": "spawn_x_floor", "capture_bulk_mbps": "capture_bulk_x_alone",
              "capture_lines_mbps": "capture_lines_x_alone"}
    cap = {m: a.get(paired[m]) for m in ("capture_bulk_mbps", "capture_lines_mbps")}
    targets = {
        "spawn_ms": ("<= 1.5x floor", a.get("spawn_x_floor"), lambda r: r <= 1.5),
        "rss_full_mib": ("<= 20 MiB", a.get("rss_full_mib"), lambda v: v <= 20),
        "list_ms": ("<= 50 ms", a.get("list_ms"), lambda v: v <= 50),
        "list_during_ms": ("answered mid-spawn, <= 50 ms", a.get("list_during_ms"),
                           lambda v: True if answered and v <= 50 else ("partly" if answered else False)),
        "restart_ms": ("<= 10 ms", a.get("restart_ms"), lambda v: v <= 10),
        "shutdown_ms": ("<= 2000 ms", a.get("shutdown_ms"), lambda v: v <= 2000),
        "capture_bulk_mbps": (">= 0.95x alone", cap["capture_bulk_mbps"], lambda r: r >= 0.95),
        "capture_lines_mbps": (">= 0.95x alone", cap["capture_lines_mbps"], lambda r: r >= 0.95),
        "rotation_lost_lines": ("0", a.get("rotation_lost_lines"), lambda v: v == 0),
        "capture_bulk_lost_bytes": ("0", a.get("capture_bulk_lost_bytes"), lambda v: v == 0),
        "capture_lines_lost_bytes": ("0", a.get("capture_lines_lost_bytes"), lambda v: v == 0),
    }
    rows = []
    for key, label, unit, lower in METRICS:
        ref = med["floor"].get(key)
        row = {
            "metric": key, "label": label.replace("N/10", str(ctx.n_mid)).replace("N", str(ctx.n)),
            "unit": unit, "lower_is_better": lower,
            "agentryd": a.get(key), "supervisord": med["supervisord"].get(key), "pm2": med["pm2"].get(key),
            "reference": ref,
            "agentryd_over_supervisord": ratio(a.get(key), med["supervisord"].get(key)),
            "agentryd_over_pm2": ratio(a.get(key), med["pm2"].get(key)),
            "agentryd_over_reference": a.get(paired[key]) if key in paired else ratio(a.get(key), ref),
            "over_reference_paired": {t: med[t].get(paired[key]) for t in TOOLS} if key in paired else None,
            "capped": sorted(t for t in TOOLS if (t, key) in bench.capped),
        }
        if key in targets:
            text, value, ok = targets[key]
            row["target"] = text
            met = None if value is None else ok(value)
            row["target_met"] = met if met in (None, "partly") else bool(met)
        rows.append(row)
    return {"meta": meta, "rows": rows, "samples": bench.samples, "details": bench.details,
            "errors": bench.errors, "load": bench.load}


def print_table(report):
    hdr = ["metric", "unit", "agentryd", "supervisord", "PM2", "floor/alone",
           "a/supervisord", "a/PM2", "a/floor or alone", "target (agentryd)", "met"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in report["rows"]:
        def rt(v):
            return "n/a" if v is None else f"{v:.2f}x"
        met = {True: "yes", False: "**no**", None: "n/a", "partly": "**answered, but slower**"}[
            r.get("target_met")] if "target" in r else ""
        lines.append("| " + " | ".join([
            r["label"], r["unit"], fmt(r["agentryd"], r["unit"], "agentryd" in r["capped"]),
            fmt(r["supervisord"], r["unit"], "supervisord" in r["capped"]),
            fmt(r["pm2"], r["unit"], "pm2" in r["capped"]), fmt(r["reference"], r["unit"]) if r["reference"] is not None else "",
            ("< " if "supervisord" in r["capped"] else "") + rt(r["agentryd_over_supervisord"]),
            ("< " if "pm2" in r["capped"] else "") + rt(r["agentryd_over_pm2"]),
            rt(r["agentryd_over_reference"]) if r["reference"] is not None else "",
            r.get("target", ""), met]) + " |")
    return "\n".join(lines)


def plot(report, png, workdir):
    """Grouped bars drawn by gnuplot: one panel per measurement, log scale where the tools
    differ by orders of magnitude, a dashed red line at agentryd's target."""
    gp = shutil.which("gnuplot")
    if not gp:
        log("gnuplot not found: no chart")
        return
    rows = {r["metric"]: dict(r) for r in report["rows"]}
    # Capture as a fraction of the writer alone, which is how its target is stated.
    for key in ("capture_bulk_mbps", "capture_lines_mbps"):
        r = rows[key]
        paired = r.get("over_reference_paired") or {}
        rows[key + "_x"] = {t: paired[t] if paired.get(t) is not None else ratio(r[t], r["reference"])
                            for t in TOOLS}
        rows[key + "_x"]["reference"] = None
    # Processes of the daemon's tree still alive after a kill -9 of the daemon.
    survivors = {"reference": None}
    for t in TOOLS:
        o = report["details"][t].get("orphans")
        survivors[t] = None if not o else float(o["child_survived"]) + float(o["grandchild_survived"])
    rows["orphans"] = survivors
    floor = rows["spawn_ms"]["reference"]
    d = os.path.join(workdir, "plot")
    os.makedirs(d, exist_ok=True)
    n, n_mid = report["meta"]["n"], report["meta"]["n_mid"]

    def val(r, k):
        v = r.get(k)
        return "NaN" if v is None else repr(float(v))

    def label(r, k):
        v = r.get(k)
        if v is None:
            return '""'
        text = f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"
        return '"' + ("> " if k in r.get("capped", []) else "") + text + '"'

    # name, title, log scale, [(row, category)], target for agentryd (None: no line)
    panels = [
        ("spawn", f"spawn {n} sleepers to running (ms, log)", True, [("spawn_ms", "")],
         1.5 * floor if floor else None),
        ("rss", "daemon RSS by number of children (MiB, log)", True,
         [("rss0_mib", "0"), ("rss_mid_mib", str(n_mid)), ("rss_full_mib", str(n))], 20),
        ("list", f"list {n} processes, CLI end to end (ms, log)", True,
         [("list_ms", "idle"), ("list_during_ms", "during mass spawn")], 50),
        ("restart", "restart after kill -9 of a child (ms, log)", True, [("restart_ms", "")], 10),
        ("shutdown", f"shutdown with {n} children (ms, log)", True,
         [("shutdown_ms", "usual way"), ("shutdown_alt_ms", "other way")], 2000),
        ("capture", "log capture, fraction of the writer alone", False,
         [("capture_bulk_mbps_x", "64 KiB writes"), ("capture_lines_mbps_x", "100 B lines")], 0.95),
        ("lost", "lines lost through rotation", False, [("rotation_lost_lines", "")], None),
        ("orphans", "processes surviving kill -9 of the daemon (of 2)", False, [("orphans", "")], None),
    ]
    repeats = report["meta"].get("repeats_done", 0)
    script = [
        "set terminal pngcairo size 1500,860 font 'DejaVu Sans,9'",
        f"set output '{png}'",
        "set datafile missing 'NaN'",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set grid ytics",
        "set key top left font ',8'",
        "set xtics nomirror",
        "set termoption noenhanced",
        f"set multiplot layout 2,4 title \"agentryd vs supervisord vs PM2 on {report['meta']['host']['nproc']} cores, "
        f"{n} children, medians of {repeats} repeat(s); grey = bare posix_spawn loop; "
        "dashed red = agentryd's target\"",
    ]
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f"]
    names = ["agentryd", "supervisord", "PM2", "bare loop"]
    keys = ["agentryd", "supervisord", "pm2", "reference"]
    for name, title, logscale, cats, target in panels:
        # Only columns with at least one value: gnuplot refuses a plot with no valid point.
        present = [i for i in range(4) if any(rows[key].get(keys[i]) is not None for key, _ in cats)]
        if not present:
            script.append("set multiplot next")
            continue
        values = [rows[key].get(keys[i]) for key, _ in cats for i in present]
        top = max([v for v in values if v is not None] + [target or 0, 1e-9])
        path = os.path.join(d, name + ".dat")
        with open(path, "w") as f:
            f.write("# category " + " ".join(names[i].replace(" ", "_") for i in present) + "\n")
            for key, cat in cats:
                f.write(f"\"{cat}\" " + " ".join(val(rows[key], keys[i]) for i in present) + " "
                        + " ".join(label(rows[key], keys[i]) for i in present) + "\n")
        script.append(f"set title \"{title}\"")
        script.append("unset arrow")
        if logscale:
            low = min([v for v in values if v is not None and v > 0] + [target or top])
            script.append("set logscale y")
            script.append(f"set yrange [{10 ** math.floor(math.log10(low)):g}:{10 ** math.ceil(math.log10(top) + 0.6):g}]")
        else:
            script.append("unset logscale y")
            script.append(f"set yrange [0:{max(top * 1.3, 1):g}]")
        if target is not None:
            script.append(f"set arrow from graph 0, first {target:g} to graph 1, first {target:g} nohead "
                          "dt 2 lw 1.5 lc rgb '#d62728' front")
        script.append(f"set xrange [-0.6:{len(cats) - 0.4}]")
        k = len(present)
        plots = []
        for col, i in enumerate(present):
            plots.append(f"'{path}' using {col + 2}:xtic(1) title '{names[i]}' lc rgb '{colors[i]}'")
        for col, i in enumerate(present):
            # The value above each bar; bar j of k in a cluster is centred at (j - (k - 1) / 2) / (k + 1).
            plots.append(f"'{path}' using ($0 + ({col} - {(k - 1) / 2}) / {k + 1}.0):{col + 2}:"
                         f"{col + 2 + k} with labels offset 0,0.6 font ',7' notitle")
        script.append("plot " + ", ".join(plots))
    script.append("unset multiplot")
    gpfile = os.path.join(d, "chart.gp")
    with open(gpfile, "w") as f:
        f.write("\n".join(script) + "\n")
    r = subprocess.run([gp, gpfile], capture_output=True, text=True)
    if r.returncode != 0:
        log("gnuplot failed: " + r.stderr[-2000:])


# ---------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="100 children instead of 1000 (smoke run)")
    ap.add_argument("--kills", type=int, default=10, help="kill -9 rounds per repeat for the restart test")
    ap.add_argument("--tools", default=",".join(TOOLS), help="subset, e.g. agentryd,supervisord")
    ap.add_argument("--skip", default="", help="phases to skip: empty,mid,full,during,capture,rotation,orphans")
    ap.add_argument("--agentry-bin-dir", default="/tmp/agentry-bench-bin")
    ap.add_argument("--helpers-dir", default="/tmp/agentry-bench-bin/helpers")
    ap.add_argument("--pm2", default="/tmp/agentry-bench-cache/node_modules/.bin/pm2")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--out-json", default=os.path.join(REPO, "bench", "results", "supervisor-compare.json"))
    ap.add_argument("--out-png", default=os.path.join(REPO, "bench", "results", "supervisor-compare.png"))
    ap.add_argument("--keep", action="store_true", help="keep the run directory under /tmp")
    ap.add_argument("--quiet-busy", type=float, default=0.25,
                    help="before each tool's block, wait until the CPUs are less busy than this")
    ap.add_argument("--quiet-wait", type=float, default=15, help="... but at most this many seconds")
    ap.add_argument("--budget-min", type=float, default=0,
                    help="start another repeat only if it should end within this many minutes of the start")
    ap.add_argument("--capture-pairs", type=int, default=3,
                    help="writer alone / writer under the tool pairs per mode and repeat")
    ap.add_argument("--poll-us", type=int, default=2000, help="how often procwatch scans /proc while timing spawns")
    ap.add_argument("--alt-stop-cap", type=float, default=60,
                    help="seconds given to the 'other way' shutdown (PM2's SIGTERM takes minutes)")
    ap.add_argument("--pm2-rotate-cache", default="/tmp/agentry-bench-cache/pm2-rotate-home",
                    help="a PM2 home with pm2-logrotate installed, reused between runs ('' to install afresh)")
    ap.add_argument("--replot", metavar="JSON", help="only redraw the chart of an earlier run's JSON into --out-png")
    args = ap.parse_args()
    if args.replot:
        with open(args.replot) as f:
            report = json.load(f)
        with tempfile.TemporaryDirectory() as tmp:
            plot(report, args.out_png, tmp)
        return

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    ctx = Ctx(args)
    if not args.keep:
        # Also on failure and Ctrl-C: the capture phases leave hundreds of MB in there.
        atexit.register(shutil.rmtree, ctx.run, True)
    bench = Bench(ctx)
    tools = [t for t in args.tools.split(",") if t]
    skip = set(s for s in args.skip.split(",") if s)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = time.time()
    meta = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"nproc": os.cpu_count(), "kernel": os.uname().release,
                 "mem_total_kib": int(read("/proc/meminfo").split()[1]),
                 "cpu": next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines()
                              if l.startswith("model name")), "?"),
                 "os": next((l.split("=", 1)[1].strip('"') for l in read("/etc/os-release").splitlines()
                             if l.startswith("PRETTY_NAME=")), "?")},
        "versions": {t.name: t.version() for t in bench.tools.values()},
        "n": ctx.n, "n_mid": ctx.n_mid, "repeats": args.repeats, "repeats_done": 0, "quick": args.quick,
        "bulk_bytes": ctx.bulk_bytes, "lines_bytes": ctx.lines_bytes, "rotation_lines": ctx.rot_lines,
        "rotation": {"size": "1 MiB", "keep": ctx.rot_keep}, "restart_kills_per_repeat": ctx.kills,
        "load_at_start": loadavg(),
        "uptime_at_start": uptime(),
    }
    meta["versions"]["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    log(f"run dir {ctx.run}, N={ctx.n}, repeats={args.repeats}, versions {meta['versions']}")
    try:
        if "pm2" in tools and "rotation" not in skip:
            bench.phase("pm2-logrotate install", bench.setup_pm2_rotation)
            meta["versions"]["pm2-logrotate"] = read(os.path.join(ctx.run, "pm2-logrotate-version")) or "not installed"
        loop_started = time.time()
        for rep in range(args.repeats):
            if rep > 0 and args.budget_min > 0:
                per_repeat = (time.time() - loop_started) / rep
                if time.time() + per_repeat - started > args.budget_min * 60:
                    log(f"stopping after {rep} repeats: another one ({per_repeat:.0f} s) would end past "
                        f"the {args.budget_min:g} min budget")
                    break
            meta["repeats_done"] = rep + 1
            # Rotate the order so no tool always runs first (or right after a heavy one).
            order = tools[rep % len(tools):] + tools[:rep % len(tools)]
            log(f"repeat {rep + 1}/{args.repeats}: order {order}")
            for name in order:
                tool = bench.tools[name]
                busy = bench.wait_quiet(args.quiet_busy, args.quiet_wait)
                bench.load.append({"repeat": rep, "tool": name, "cpu_busy_before": round(busy, 3),
                                   "loadavg": loadavg()})
                log(f" {name} (machine {busy * 100:.0f}% busy before it)")
                for ph in ("empty", "mid", "full", "during", "capture", "rotation"):
                    if ph not in skip:
                        bench.phase(f"{name} {ph}", getattr(bench, ph), tool, rep)
        if "orphans" not in skip:
            for name in tools:
                bench.phase(f"{name} orphans", bench.orphans, bench.tools[name])
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'SIGINT'}); cleaning up")
        bench.emergency_cleanup()
        raise SystemExit(130)
    finally:
        bench.emergency_cleanup()

    meta["load_at_end"] = loadavg()
    meta["uptime_at_end"] = uptime()
    meta["wall_seconds"] = round(time.time() - started, 1)
    report = build_report(bench, ctx, meta)
    table = print_table(report)
    report["table_markdown"] = table
    os.makedirs(os.path.dirname(args.out_json), exist_ok=True)
    with open(args.out_json, "w") as f:
        json.dump(report, f, indent=2)
    plot(report, args.out_png, ctx.run)

    print()
    print(f"agentryd vs supervisord vs PM2: N={ctx.n}, medians of {meta.get('repeats_done', 0)} repeats, "
          f"{meta['wall_seconds']} s, load at start {' '.join(meta['load_at_start'])}, "
          f"at end {' '.join(meta['load_at_end'])}")
    print("Ratios are agentryd / other: below 1 is better for times, sizes and lost lines, above 1 for "
          "MB/s. 'floor/alone' = the bare posix_spawn loop (spawn) or the writer alone into a file "
          "(capture), measured right before each tool; 'a/floor or alone' is the median of those "
          "back-to-back ratios, not the ratio of the two medians.")
    print()
    print(table)
    print()
    for t in TOOLS:
        o = bench.details[t].get("orphans")
        if o:
            print(f"after kill -9 of {t}: " + ", ".join(f"{k}={v}" for k, v in o.items()))
    for t in TOOLS:
        for d in bench.details[t].get("rotation_lost_lines", []):
            print(f"rotation {t}: {d}")
    for t in TOOLS:
        for d in bench.details[t].get("list_during_ms", []):
            print(f"list during spawn {t}: {d}")
    if bench.errors:
        print("\nerrors:")
        for e in bench.errors:
            print("  " + e)
    print(f"\nwrote {args.out_json} and {args.out_png}")


if __name__ == "__main__":
    main()

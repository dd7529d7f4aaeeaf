/**
 * Server processes for the bench that cannot outlive it (a copy of test/helpers/child.ts, so the
 * bench does not depend on test code, plus the server's own PID).
 *
 * A server runs under a small sh watchdog that holds the read end of a pipe from this process;
 * when that pipe closes, however the bench ended (Ctrl-C, SIGKILL, a crash), the watchdog stops
 * the server and removes its folder. The watchdog writes the server's PID to a file: the bench
 * reads the server's CPU time and peak RSS from /proc/<pid> and stops it by that PID.
 */
import { type ChildProcess, spawn, type SpawnOptions } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

// $1 = a folder to remove once the server has exited ("" for none), $2 = the file to write the
// server's PID to, $3 = command, the rest = its arguments. fd 3 = the pipe from the bench. The
// watchdog's own output goes to /dev/null once the server runs: a write to the pipes of a dead
// bench would kill it (SIGPIPE).
const WATCHDOG = `
cleanup=$1; pidfile=$2; shift 2
exec 3<&0
"$@" </dev/null 3<&- &
server=$!
echo "$server" > "$pidfile.tmp" && mv -f "$pidfile.tmp" "$pidfile"
{ read -r _ <&3; kill -TERM "$server" 2>/dev/null; } &
reader=$!
exec >/dev/null 2>&1
trap 'kill -TERM "$server" 2>/dev/null' TERM INT
while :; do
  wait "$server"; status=$?
  kill -0 "$server" 2>/dev/null || break
done
kill "$reader" 2>/dev/null
[ -n "$cleanup" ] && rm -rf -- "$cleanup"
exit "$status"
`;

export interface TiedChild {
  /** The watchdog (its stdout and stderr are the server's). */
  child: ChildProcess;
  /** The server's own PID (not the watchdog's); resolves once the watchdog has written it. */
  pid(): Promise<number>;
  /** Stops the server by its PID: SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const exited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null;

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

export interface TiedOptions extends Omit<SpawnOptions, "stdio"> {
  /** A folder the watchdog removes once the server has exited (also when the bench was killed). */
  removeAfter?: string;
  /** Where the watchdog writes the server's PID. */
  pidFile: string;
}

/** Spawns `command args` under the watchdog; stdout and stderr are piped as usual. */
export function spawnTied(command: string, args: string[], options: TiedOptions): TiedChild {
  const { removeAfter = "", pidFile, ...spawnOptions } = options;
  const child = spawn("sh", ["-c", WATCHDOG, "watchdog", removeAfter, pidFile, command, ...args], {
    ...spawnOptions,
    stdio: ["pipe", "pipe", "pipe"],
  });
  // The pipe stays open for the life of this process; nothing is ever written to it.
  child.stdin?.on("error", () => {});
  let serverPid: number | undefined;
  const pid = async (): Promise<number> => {
    for (let i = 0; serverPid === undefined; i++) {
      if (existsSync(pidFile)) {
        const n = Number(readFileSync(pidFile, "utf8").trim());
        if (Number.isInteger(n) && n > 0) serverPid = n;
      }
      if (serverPid === undefined) {
        if (exited(child) || i > 200) throw new Error(`the watchdog wrote no server PID to ${pidFile}`);
        await sleep(10);
      }
    }
    return serverPid;
  };
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 10_000): Promise<void> => {
    stopping ??= (async () => {
      if (exited(child)) return;
      const target = await pid().catch(() => undefined);
      // TERM to the server itself; the watchdog exits once the server has (and removes the folder).
      if (target !== undefined) signal(target, "SIGTERM");
      else child.kill("SIGTERM");
      if (!(await waitForExit(child, graceMs))) {
        if (target !== undefined) signal(target, "SIGKILL");
        child.stdin?.destroy();
        if (!(await waitForExit(child, 5000))) child.kill("SIGKILL");
        await waitForExit(child, 5000);
      }
      child.stdin?.destroy();
    })();
    return stopping;
  };
  return { child, pid, stop };
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** Peak resident set size in MB, from /proc/<pid>/status (VmHWM). */
export function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "latin1");
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * Resets the peak RSS (VmHWM) of a process so that the next `peakRssMb` is the peak of what
 * follows (Linux: "5" to /proc/<pid>/clear_refs; needs to own the process, which the bench does).
 * False when the kernel refused (then the peak is since the process started).
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * Server processes that cannot outlive the test process. A plain child keeps running when the
 * test process is killed (SIGTERM from a runner's timeout, SIGKILL, a crash): no "exit" handler
 * runs then. Here the server runs under a small sh watchdog that holds the read end of a pipe
 * from the test process; when that pipe closes, however the test process ended, the watchdog
 * stops the server (and removes its folder).
 */
import { type ChildProcess, spawn, type SpawnOptions } from "node:child_process";

// $1 = a folder to remove once the server has exited ("" for none), $2 = command, the rest = its
// arguments. fd 3 = the pipe from the test process. The watchdog's own output goes to /dev/null
// once the server runs: a write to the pipes of a dead test process would kill it (SIGPIPE).
const WATCHDOG = `
cleanup=$1; shift
exec 3<&0
"$@" </dev/null 3<&- &
server=$!
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
  child: ChildProcess;
  /** Stops the server: SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
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

export interface TiedOptions extends Omit<SpawnOptions, "stdio"> {
  /** A folder the watchdog removes once the server has exited (also when the test process was killed). */
  removeAfter?: string;
}

/** Spawns `command args` under the watchdog; stdout and stderr are piped as usual. */
export function spawnTied(command: string, args: string[], options: TiedOptions = {}): TiedChild {
  const { removeAfter = "", ...spawnOptions } = options;
  const child = spawn("sh", ["-c", WATCHDOG, "watchdog", removeAfter, command, ...args], {
    ...spawnOptions,
    stdio: ["pipe", "pipe", "pipe"],
  });
  // The pipe stays open for the life of this process; nothing is ever written to it.
  child.stdin?.on("error", () => {});
  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 10_000): Promise<void> => {
    stopping ??= (async () => {
      if (exited(child)) return;
      child.kill("SIGTERM");
      if (!(await waitForExit(child, graceMs))) {
        // The watchdog did not end in time: closing the pipe makes its reader stop the server;
        // then the watchdog itself goes.
        child.stdin?.destroy();
        child.kill("SIGKILL");
        await waitForExit(child, 5000);
      }
      child.stdin?.destroy();
    })();
    return stopping;
  };
  return { child, stop };
}

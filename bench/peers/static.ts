/**
 * Starts bench/peers/static-server.ts as a child process (tied to the bench, see child.ts) over
 * a temporary folder the caller fills with files.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnTied } from "./child.js";
import type { PeerServer } from "./orthanc.js";

const SCRIPT = new URL("./static-server.js", import.meta.url).pathname;

export interface StaticServer extends PeerServer {
  /** Writes a file the server then serves at `url + name`. */
  put(name: string, bytes: Uint8Array): void;
}

export async function startStaticServer(startTimeoutMs = 10_000): Promise<StaticServer> {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-bench-static-"));
  const files = join(dir, "files");
  mkdirSync(files);
  const tied = spawnTied(process.execPath, [SCRIPT, files], { removeAfter: dir, pidFile: join(dir, "server.pid") });
  let output = "";
  tied.child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  tied.child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= tied.stop().then(() => rmSync(dir, { recursive: true, force: true }));
    return stopped;
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`static server printed no URL:\n${output}`)), startTimeoutMs);
      const poll = setInterval(() => {
        const m = /listening on (http:\/\/\S+)/.exec(output);
        if (m?.[1]) {
          clearTimeout(timer);
          clearInterval(poll);
          resolve(m[1]);
        }
      }, 20);
      tied.child.once("exit", (code) => {
        clearTimeout(timer);
        clearInterval(poll);
        reject(new Error(`static server exited (${code}):\n${output}`));
      });
    });
    const pid = await tied.pid();
    return {
      url,
      dicomweb: url.replace(/\/$/, ""),
      pid,
      name: "node static files",
      log: () => output,
      stop,
      put: (name, bytes) => writeFileSync(join(files, name), bytes),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

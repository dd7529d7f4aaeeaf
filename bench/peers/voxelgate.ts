/**
 * Our server for the bench, run as a user runs it: the compiled CLI as a child process
 * (`voxelgate serve --port 0 --data <temporary folder> --config <file>`), its URL read from what
 * it prints. It cannot outlive the bench (see child.ts).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnTied } from "./child.js";
import type { PeerServer } from "./orthanc.js";

/** The compiled CLI, next to the compiled bench (dist/bench/peers → dist/src/cli). */
export const CLI = new URL("../../src/cli/main.js", import.meta.url).pathname;

export async function startVoxelgate(config: Record<string, unknown> = {}, startTimeoutMs = 30_000): Promise<PeerServer> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-bench-server-"));
  const dataDir = join(dir, "data");
  const configPath = join(dir, "voxelgate.json");
  writeFileSync(configPath, JSON.stringify({ logLevel: "warn", ...config }, null, 2));
  const tied = spawnTied(process.execPath, [CLI, "serve", "--port", "0", "--data", dataDir, "--config", configPath], {
    removeAfter: dir,
    pidFile: join(dir, "server.pid"),
  });
  const { child } = tied;
  let output = "";
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= tied.stop().then(() => rmSync(dir, { recursive: true, force: true }));
    return stopped;
  };
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-64 * 1024);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`voxelgate printed no URL within ${startTimeoutMs} ms:\n${output}`)), startTimeoutMs);
      const onData = () => {
        const m = /Voxelgate is listening on (http:\/\/\S+)/.exec(output);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1].endsWith("/") ? m[1] : `${m[1]}/`);
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`voxelgate exited (${code ?? signal}) before listening:\n${output}`));
      });
    });
    const pid = await tied.pid();
    return { url, dicomweb: `${url}dicomweb`, pid, name: "Voxelgate", log: () => output, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

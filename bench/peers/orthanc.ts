/**
 * Orthanc (Debian `orthanc` + `orthanc-dicomweb`) as the bench's peer: free HTTP and DICOM ports
 * on loopback, a temporary storage folder and JSON configuration, default SQLite index, no
 * authentication, the DICOMweb plugin at /dicom-web/ with full study and series metadata.
 * A self-contained copy of the test launcher (test/helpers/orthanc.ts), so the bench does not
 * depend on test code; it cannot outlive the bench (see child.ts).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { spawnTied } from "./child.js";

export const ORTHANC = "/usr/sbin/Orthanc";
export const ORTHANC_DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";
export const ORTHANC_PACKAGES = "orthanc orthanc-dicomweb";

export interface PeerServer {
  /** Base URL ending with "/", e.g. http://127.0.0.1:41234/ */
  url: string;
  /** DICOMweb root without the trailing "/". */
  dicomweb: string;
  /** The server process's own PID (for /proc figures). */
  pid: number;
  /** E.g. "Orthanc 1.10.1 + DICOMweb 1.7". */
  name: string;
  /** What the server printed so far (for failure messages). */
  log(): string;
  /** Stops the server by its PID and removes its folder; safe to call more than once. */
  stop(): Promise<void>;
}

/** True when the Orthanc binary and its DICOMweb plugin are installed. */
export const orthancInstalled = (): boolean => existsSync(ORTHANC) && existsSync(ORTHANC_DICOMWEB_PLUGIN);

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The installed version, e.g. "1.10.1" (from `Orthanc --version`), or "" when unknown. */
function orthancVersion(): string {
  try {
    const out = execFileSync(ORTHANC, ["--version"], { encoding: "utf8", timeout: 5000 });
    return /(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? "";
  } catch {
    return "";
  }
}

async function launch(startTimeoutMs: number): Promise<PeerServer> {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-bench-orthanc-"));
  const [httpPort, dicomPort] = [await freePort(), await freePort()];
  const configPath = join(dir, "orthanc.json");
  // A name of its own, so that /system proves this Orthanc answers (not another on a reused port).
  const name = `voxelgate-bench-${basename(dir)}`;
  const config = {
    Name: name,
    StorageDirectory: join(dir, "storage"),
    IndexDirectory: join(dir, "index"),
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomAet: "VGBENCH",
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    // Orthanc's default: answers are gzip-compressed when the client accepts it (metadata is asked with Accept-Encoding: gzip).
    HttpCompressionEnabled: true,
    KeepAlive: true,
    StorageCompression: false,
    SaveJobs: false,
    ExecuteLuaEnabled: false,
    RestApiWriteToFileSystemEnabled: false,
    Plugins: [ORTHANC_DICOMWEB_PLUGIN],
    DicomWeb: {
      Enable: true,
      Root: "/dicom-web/",
      StudiesMetadata: "Full",
      SeriesMetadata: "Full",
    },
  };
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const tied = spawnTied(ORTHANC, [configPath], { cwd: dir, removeAfter: dir, pidFile: join(dir, "server.pid") });
  const { child } = tied;
  let output = "";
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-64 * 1024);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= tied.stop().then(() => rmSync(dir, { recursive: true, force: true }));
    return stopped;
  };

  const url = `http://127.0.0.1:${httpPort}/`;
  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`Orthanc exited (${child.exitCode ?? child.signalCode}) before answering:\n${output}`);
    }
    try {
      const r = await fetch(new URL("system", url), { signal: AbortSignal.timeout(2000) });
      if (r.ok) {
        const system = (await r.json()) as { Name?: string };
        if (system.Name === name) break;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Orthanc did not answer /system within ${startTimeoutMs} ms:\n${output}`);
    }
    await sleep(100);
  }

  let pluginVersion = "";
  try {
    const r = await fetch(new URL("plugins/dicom-web", url), { signal: AbortSignal.timeout(2000) });
    if (r.ok) pluginVersion = ((await r.json()) as { Version?: string }).Version ?? "";
  } catch {
    // informative only
  }
  const version = orthancVersion();
  const pid = await tied.pid().catch(async (e: unknown) => {
    await stop();
    throw e;
  });
  return {
    url,
    dicomweb: `${url}dicom-web`,
    pid,
    name: `Orthanc${version ? ` ${version}` : ""}${pluginVersion ? ` + DICOMweb ${pluginVersion}` : ""}`,
    log: () => output,
    stop,
  };
}

/**
 * Starts Orthanc; retries with new ports when the first attempt fails (another process may take
 * a port between the probe and Orthanc's bind). Check `orthancInstalled()` first.
 */
export async function startOrthanc(startTimeoutMs = 30_000): Promise<PeerServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await launch(startTimeoutMs);
    } catch (e) {
      lastError = e;
    }
  }
  throw lastError;
}

/**
 * A real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) for one test file: free HTTP and DICOM
 * ports, a temporary storage folder and JSON configuration, no authentication, loopback only,
 * the DICOMweb plugin at /dicom-web/. Options: basic authentication, a fixed port and a data folder kept across restarts. Stopped (and its folder removed) when the test ends, also
 * when it fails; it cannot outlive the test process (see child.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { spawnTied } from "./child.js";

export const ORTHANC = "/usr/sbin/Orthanc";
export const ORTHANC_DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

/** Something that runs a function when the test (or file) is over: a TestContext, or `{ after }` from node:test. */
export interface Cleanup {
  after(fn: () => unknown): unknown;
}

export interface OrthancUpload {
  /** Orthanc's own instance ID. */
  ID: string;
  ParentStudy: string;
  ParentSeries: string;
  ParentPatient: string;
  /** "Success" or "AlreadyStored". */
  Status: string;
}

export interface OrthancServer {
  /** Base URL of the REST API, ending with "/", e.g. http://127.0.0.1:41234/ */
  url: string;
  /** DICOMweb root without the trailing "/", e.g. http://127.0.0.1:41234/dicom-web */
  dicomweb: string;
  httpPort: number;
  dicomPort: number;
  /** Headers the helper sends (Authorization when basicAuth is set). */
  headers: Record<string, string>;
  /** Stores files through Orthanc's REST API (POST /instances), one request per file. */
  upload(files: string[]): Promise<OrthancUpload[]>;
  /** What Orthanc printed so far (for failure messages). */
  log(): string;
  /** Stops Orthanc and removes its folder; safe to call more than once. */
  stop(): Promise<void>;
}

export interface OrthancOptions {
  /** Extra top-level configuration entries (merged over the defaults). */
  config?: Record<string, unknown>;
  /** Extra entries for the "DicomWeb" section. */
  dicomWeb?: Record<string, unknown>;
  /** How long to wait for /system to answer (ms). */
  startTimeoutMs?: number;
  /** HTTP basic authentication (RegisteredUsers): every request, the helper's own included, must carry it. */
  basicAuth?: { username: string; password: string };
  /** A fixed HTTP port (to restart an Orthanc on the same URL); default: a free one. */
  httpPort?: number;
  /** Storage and index folder kept by the caller (to restart an Orthanc on the same data); default: a temporary one. */
  dataDirectory?: string;
}

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

async function launch(options: OrthancOptions): Promise<OrthancServer> {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-orthanc-"));
  const [httpPort, dicomPort] = [options.httpPort ?? (await freePort()), await freePort()];
  const dataDir = options.dataDirectory ?? dir;
  const auth = options.basicAuth;
  const headers: Record<string, string> = auth
    ? { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}` }
    : {};
  const configPath = join(dir, "orthanc.json");
  // A name of its own, so that /system proves this Orthanc answers (not another on a reused port).
  const name = `voxelgate-test-${basename(dir)}`;
  const config = {
    Name: name,
    StorageDirectory: join(dataDir, "storage"),
    IndexDirectory: join(dataDir, "index"),
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomAet: "VGTEST",
    RemoteAccessAllowed: false,
    AuthenticationEnabled: auth !== undefined,
    ...(auth ? { RegisteredUsers: { [auth.username]: auth.password } } : {}),
    HttpCompressionEnabled: false,
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
      ...options.dicomWeb,
    },
    ...options.config,
  };
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const { child, stop: stopChild } = spawnTied(ORTHANC, [configPath], { cwd: dir, removeAfter: dir });
  let output = "";
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-64 * 1024);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= stopChild().then(() => rmSync(dir, { recursive: true, force: true }));
    return stopped;
  };

  const url = `http://127.0.0.1:${httpPort}/`;
  const deadline = Date.now() + (options.startTimeoutMs ?? 20_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`Orthanc exited (${child.exitCode ?? child.signalCode}) before answering:\n${output}`);
    }
    try {
      const r = await fetch(new URL("system", url), { headers, signal: AbortSignal.timeout(2000) });
      if (r.ok) {
        const system = (await r.json()) as { Name?: string };
        if (system.Name === name) break;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Orthanc did not answer /system within ${options.startTimeoutMs ?? 20_000} ms:\n${output}`);
    }
    await sleep(100);
  }

  const upload = async (files: string[]): Promise<OrthancUpload[]> => {
    const results: OrthancUpload[] = [];
    for (const file of files) {
      const r = await fetch(new URL("instances", url), {
        method: "POST",
        headers: { ...headers, "content-type": "application/dicom" },
        body: readFileSync(file),
      });
      const text = await r.text();
      if (!r.ok) throw new Error(`Orthanc refused ${file}: HTTP ${r.status} ${text.slice(0, 500)}`);
      const result = JSON.parse(text) as OrthancUpload;
      if (result.Status !== "Success" && result.Status !== "AlreadyStored") {
        throw new Error(`Orthanc did not store ${file}: ${text.slice(0, 500)}`);
      }
      results.push(result);
    }
    return results;
  };

  return { url, dicomweb: `${url}dicom-web`, httpPort, dicomPort, headers, upload, log: () => output, stop };
}

/**
 * Starts Orthanc and registers its stop with `cleanup.after`. Retries with new ports when the
 * first attempt fails (another process may take a port between the probe and Orthanc's bind).
 * Check `requireTools(t, TOOLS.orthanc)` first.
 */
export async function startOrthanc(cleanup: Cleanup, options: OrthancOptions = {}): Promise<OrthancServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const server = await launch(options);
      cleanup.after(() => server.stop());
      return server;
    } catch (e) {
      lastError = e;
    }
  }
  throw lastError;
}

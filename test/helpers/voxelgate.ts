/**
 * Our real server for one test, run as a user runs it: the compiled CLI as a child process
 * (`voxelgate serve --port 0 --data <temporary folder>`), its URL read from what it prints.
 * Stopped (and its folder removed) when the test ends, also when it fails; it cannot outlive the
 * test process (see child.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnTied } from "./child.js";
import type { Cleanup } from "./orthanc.js";

export const CLI = new URL("../../src/cli/main.js", import.meta.url).pathname;

export interface StowResult {
  status: number;
  contentType: string | null;
  /** The response body parsed as DICOM JSON, or undefined when it is not JSON. */
  json: unknown;
  text: string;
}

export interface VoxelgateServer {
  /** Base URL as printed, ending with "/", e.g. http://127.0.0.1:41234/ */
  url: string;
  /** DICOMweb root without the trailing "/", e.g. http://127.0.0.1:41234/dicomweb */
  dicomweb: string;
  /** The --data folder. */
  dataDir: string;
  /** STOW-RS of the files in one multipart/related request to /dicomweb/studies (or /studies/{uid}). */
  stow(files: Array<string | Buffer>, studyInstanceUid?: string): Promise<StowResult>;
  /** What the server printed so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

export interface VoxelgateOptions {
  /** Extra CLI arguments after `serve --port 0 --data <dir>`. */
  args?: string[];
  env?: Record<string, string>;
  startTimeoutMs?: number;
}

/** A multipart/related body with one application/dicom part per file. */
export function multipartRelated(parts: Buffer[], type = "application/dicom"): { body: Buffer; contentType: string } {
  const boundary = `voxelgate-${randomBytes(12).toString("hex")}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: ${type}\r\n\r\n`), part, Buffer.from("\r\n"));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; type="${type}"; boundary=${boundary}` };
}

/** Starts `voxelgate serve` on a free port with an empty data folder; registers its stop with `cleanup.after`. */
export async function startVoxelgate(cleanup: Cleanup, options: VoxelgateOptions = {}): Promise<VoxelgateServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-data-"));
  const { child, stop: stopChild } = spawnTied(
    process.execPath,
    [CLI, "serve", "--port", "0", "--data", dataDir, ...(options.args ?? [])],
    {
      env: { ...process.env, ...options.env },
      removeAfter: dataDir,
    },
  );
  let output = "";

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= stopChild().then(() => rmSync(dataDir, { recursive: true, force: true }));
    return stopped;
  };
  cleanup.after(() => stop());

  const timeout = options.startTimeoutMs ?? 20_000;
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`voxelgate printed no URL within ${timeout} ms:\n${output}`)), timeout);
    const onData = (d: Buffer) => {
      output = (output + d.toString()).slice(-64 * 1024);
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
  }).catch(async (e: unknown) => {
    await stop();
    throw e;
  });

  const dicomweb = `${url}dicomweb`;
  const stow = async (files: Array<string | Buffer>, studyInstanceUid?: string): Promise<StowResult> => {
    const { body, contentType } = multipartRelated(files.map((f) => (typeof f === "string" ? readFileSync(f) : f)));
    const target = studyInstanceUid ? `${dicomweb}/studies/${studyInstanceUid}` : `${dicomweb}/studies`;
    const r = await fetch(target, {
      method: "POST",
      headers: { "content-type": contentType, accept: "application/dicom+json" },
      body,
    });
    const text = await r.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, contentType: r.headers.get("content-type"), json, text };
  };

  return { url, dicomweb, dataDir, stow, log: () => output, stop };
}

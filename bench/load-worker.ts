/**
 * A load generator in a worker thread: `total` GETs of one URL with `concurrency` in flight, each
 * answer compared byte for byte with the expected body; or each of a list of URLs once, each
 * answer checked to be a JPEG (its size read from the frame header, the bytes counted). The bench's main thread holds the whole
 * corpus (over a GiB in the full run); at thousands of requests a second its garbage collection
 * would slow the client down and be counted against the server. A worker has its own small heap
 * and its own keep-alive connections.
 */
import { Agent, request } from "node:http";
import { performance } from "node:perf_hooks";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

export type LoadJob = {
  headers: Record<string, string>;
  concurrency: number;
} & (
  | {
      url: string;
      total: number;
      /** Every answer must be 200 with exactly these bytes. */
      expect: Buffer;
    }
  | {
      /** Each asked once, in order; every answer must be 200 and a JPEG. */
      jpegs: string[];
    }
);

export interface LoadResult {
  calls: number;
  ms: number;
  /** For `jpegs`: the distinct image sizes seen ("512×512") and the bytes received. */
  sizes?: string[];
  bytes?: number;
}

interface WorkerAnswer {
  result?: LoadResult;
  error?: string;
}

/** Runs the job in a fresh worker thread; rejects with the first wrong answer. */
export function loadFromWorker(job: LoadJob): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { kind: "bench-load", job } });
    worker.once("message", (answer: WorkerAnswer) => {
      if (answer.result) resolve(answer.result);
      else reject(new Error(answer.error ?? "the load worker gave no result"));
      void worker.terminate();
    });
    worker.once("error", reject);
  });
}

function get(url: string, headers: Record<string, string>, agent: Agent): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request(url, { agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

/** Width × height from a JPEG's frame header (SOF0–SOF15 but DHT, JPG and DAC), or undefined when it is not a JPEG. */
export function jpegSize(bytes: Buffer): string | undefined {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let at = 2;
  while (at + 9 < bytes.length && bytes[at] === 0xff) {
    const marker = bytes[at + 1] as number;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return `${bytes.readUInt16BE(at + 7)}×${bytes.readUInt16BE(at + 5)}`;
    }
    at += 2 + bytes.readUInt16BE(at + 2);
  }
  return undefined;
}

async function run(job: LoadJob): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: job.concurrency });
  const urls = "jpegs" in job ? job.jpegs : undefined;
  const expect = "expect" in job ? Buffer.from(job.expect) : undefined;
  const total = urls ? urls.length : "total" in job ? job.total : 0;
  const sizes = new Set<string>();
  let bytes = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      while (next < total) {
        const url = urls ? (urls[next] as string) : "url" in job ? job.url : "";
        next++;
        const r = await get(url, job.headers, agent);
        if (expect && (r.status !== 200 || !r.body.equals(expect))) {
          throw new Error(`wrong answer: GET ${url}: HTTP ${r.status}, ${r.body.length} bytes, not the ${expect.length} expected`);
        }
        if (urls) {
          const size = r.status === 200 ? jpegSize(r.body) : undefined;
          if (size === undefined) throw new Error(`wrong answer: GET ${url}: HTTP ${r.status}, ${r.body.length} bytes, not a JPEG`);
          sizes.add(size);
          bytes += r.body.length;
        }
      }
    }),
  );
  const ms = performance.now() - started;
  agent.destroy();
  return urls ? { calls: next, ms, sizes: [...sizes], bytes } : { calls: next, ms };
}

if (!isMainThread && (workerData as { kind?: string } | undefined)?.kind === "bench-load") {
  const { job } = workerData as { job: LoadJob };
  run(job).then(
    (result) => parentPort?.postMessage({ result } satisfies WorkerAnswer),
    (err: unknown) => parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err) } satisfies WorkerAnswer),
  );
}

/**
 * A load generator in a worker thread: `total` GETs of one URL with `concurrency` in flight, each
 * answer compared byte for byte with the expected body. The bench's main thread holds the whole
 * corpus (over a GiB in the full run); at thousands of requests a second its garbage collection
 * would slow the client down and be counted against the server. A worker has its own small heap
 * and its own keep-alive connections.
 */
import { Agent, request } from "node:http";
import { performance } from "node:perf_hooks";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

export interface LoadJob {
  url: string;
  headers: Record<string, string>;
  concurrency: number;
  total: number;
  /** Every answer must be 200 with exactly these bytes. */
  expect: Buffer;
}

export interface LoadResult {
  calls: number;
  ms: number;
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

async function run(job: LoadJob): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: job.concurrency });
  const expect = Buffer.from(job.expect);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      while (next < job.total) {
        next++;
        const r = await get(job.url, job.headers, agent);
        if (r.status !== 200 || !r.body.equals(expect)) {
          throw new Error(`wrong answer: GET ${job.url}: HTTP ${r.status}, ${r.body.length} bytes, not the ${expect.length} expected`);
        }
      }
    }),
  );
  const ms = performance.now() - started;
  agent.destroy();
  return { calls: next, ms };
}

if (!isMainThread && (workerData as { kind?: string } | undefined)?.kind === "bench-load") {
  const { job } = workerData as { job: LoadJob };
  run(job).then(
    (result) => parentPort?.postMessage({ result } satisfies WorkerAnswer),
    (err: unknown) => parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err) } satisfies WorkerAnswer),
  );
}

/**
 * One STOW-RS request of about 2 GB (thousands of 512 KiB CT instances in one multipart body):
 * the server's peak RSS while it takes it. The body is generated as it is sent — the instance
 * headers are made up front (a few MB), the pixels are the big series' slices, shared — and
 * written with backpressure, so the bench itself never holds it. Full run only (or
 * --big-stow-mb N). A peer that cannot take it gets its error in the row's note instead of a figure.
 */
import { request as httpRequest } from "node:http";
import { performance } from "node:perf_hooks";
import { check, CpuMeter, DICOM_JSON, firstValue, fmt, type Json, type Phase, round, RssMeter, type Side } from "./archive-kit.js";
import { bigInstanceChunks } from "./corpus.js";

/** Sends the body; resolves with the status and the answer's text. */
function streamStow(side: Side, instances: Array<{ chunks: Buffer[] }>, boundary: string): Promise<{ status: number; text: string }> {
  const head = Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`);
  const crlf = Buffer.from("\r\n");
  const tail = Buffer.from(`--${boundary}--\r\n`);
  const length = instances.reduce((n, i) => n + head.length + i.chunks.reduce((m, c) => m + c.length, 0) + crlf.length, tail.length);
  const url = new URL(`${side.client.root}/studies`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: "POST",
      headers: {
        "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}`,
        "content-length": String(length),
        accept: DICOM_JSON,
      },
      timeout: 30 * 60_000,
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("no answer within 30 minutes")));
    const write = (chunk: Buffer) => (req.write(chunk) ? Promise.resolve() : new Promise<void>((ok) => req.once("drain", ok)));
    void (async () => {
      for (const instance of instances) {
        await write(head);
        for (const c of instance.chunks) await write(c);
        await write(crlf);
      }
      req.end(tail);
    })().catch(reject);
  });
}

export async function bigStowPhase(phase: Phase, megabytes: number, pixels: Buffer[]): Promise<void> {
  const { ours, peer, sides, addRow, log } = phase;
  const perInstance = bigInstanceChunks(9, 0, pixels).chunks.reduce((n, c) => n + c.length, 0);
  const count = Math.max(1, Math.round((megabytes * 2 ** 20) / perInstance));
  const results = new Map<Side, { rss: number; seconds: number; cpu: number } | string>();
  for (const [v, side] of sides.entries()) {
    // Another variant per side would do too; one per server keeps the UIDs apart from every other series.
    const variant = 9 + v;
    const instances = Array.from({ length: count }, (_, i) => bigInstanceChunks(variant, i, pixels));
    const bytes = instances.reduce((n, i) => n + i.chunks.reduce((m, c) => m + c.length, 0), 0);
    const rss = new RssMeter([side]);
    const cpu = new CpuMeter([side]);
    const t = performance.now();
    try {
      const r = await streamStow(side, instances, `bench-big-${variant}`);
      check(r.status === 200, `HTTP ${r.status} ${r.text.slice(0, 200)}`);
      const answer = JSON.parse(r.text) as Json;
      const referenced = (answer["00081199"]?.Value ?? []) as Json[];
      check(referenced.length === count, `${referenced.length} instances referenced, expected ${count}`);
      const uids = new Set(referenced.map((x) => String(firstValue(x, "00081155"))));
      for (const i of instances) check(uids.has(i.sopUid), `${i.sopUid} is not referenced`);
      const seconds = (performance.now() - t) / 1000;
      results.set(side, { rss: rss.peaks()[0] as number, seconds, cpu: cpu.seconds()[0] as number });
      log(`${side.label}: one STOW of ${fmt(bytes / 2 ** 30, 2)} GiB in ${fmt(seconds)} s`);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      // Our own server must take it; the peer's failure is reported.
      if (side === ours) throw new Error(`Voxelgate: the ${fmt(bytes / 2 ** 30, 2)} GiB STOW failed: ${message}`);
      results.set(side, message.slice(0, 200));
    }
  }
  const got = (side: Side | undefined) => (side ? results.get(side) : undefined);
  const o = got(ours) as { rss: number; seconds: number; cpu: number };
  const p = got(peer);
  const describe = (s: Side) => {
    const r = got(s);
    return typeof r === "string" ? `${s.label} failed: ${r}` : r ? `${s.label} ${fmt(r.seconds)} s, ${fmt(r.cpu)} CPU s` : "";
  };
  addRow({
    name: `STOW one ${fmt((count * perInstance) / 2 ** 30, 1)} GiB request (${count} × 512 KiB CT), server peak RSS`,
    unit: "MB",
    ours: round(o.rss, 0),
    peer: typeof p === "object" ? round(p.rss, 0) : undefined,
    higherIsBetter: false,
    note: `body generated while sent (never held by the bench); ${sides.map(describe).join("; ")}`,
  });
}

/**
 * `npm run bench -- --base URL [--header 'Authorization: Bearer …']… [--allow-stow]`: the
 * read-only transactions a viewer uses, measured against any DICOMweb root (a Voxelgate gateway,
 * a cloud store, another archive) on whatever it holds. Nothing is written unless --allow-stow
 * (then a small generated corpus is stored first, so an empty archive can be measured too).
 *
 * Every answer is checked against what the server itself said before: QIDO results must match
 * their filter (dates in the range, names with the prefix, the modality, the UIDs asked), the
 * series metadata must hold the instances QIDO listed, a native frame must be Rows × Columns ×
 * samples × bytes long, a rendered image must be a JPEG. A wrong answer fails the run.
 */
import { performance } from "node:perf_hooks";
import {
  check,
  DICOM_JSON,
  expectStatus,
  firstValue,
  fmt,
  inFlight,
  type Json,
  median,
  parseJson,
  percentile,
  round,
  rowAdder,
  type Side,
  stowPass,
} from "./archive-kit.js";
import { timeToFirstImage } from "./archive-phases.js";
import { makeCompressedStudy, makeMetadataSeries, makeMixedStudies } from "./corpus-mixed.js";
import type { BenchRow, Suite, SuiteContext } from "./main.js";
import { Client, parseMultipart, type Response } from "./peers/http.js";
import { seededRandom } from "./seeded-random.js";

const AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const UNCOMPRESSED = 'multipart/related; type="application/octet-stream"';
const NATIVE = new Set(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]);

interface Found {
  studyUid: string;
  patientId: string;
  patientName: string;
  studyDate: string;
  accession: string;
  modalities: string[];
}

interface FoundSeries {
  studyUid: string;
  seriesUid: string;
  /** Instances with what a frame check needs. */
  instances: Array<{ sopUid: string; rows: number; columns: number; samples: number; bits: number; frames: number }>;
}

const str = (ds: Json | undefined, tag: string): string => {
  const v = firstValue(ds, tag);
  if (v && typeof v === "object" && "Alphabetic" in v) return String((v as { Alphabetic: unknown }).Alphabetic);
  return v === undefined || v === null ? "" : String(v);
};
const all = (ds: Json | undefined, tag: string): string[] => (ds?.[tag]?.Value ?? []).map(String);

async function json(side: Side, path: string, what: string, gzip = false): Promise<{ items: Json[]; r: Response }> {
  const r = await side.client.request(path, { headers: { accept: DICOM_JSON, ...(gzip ? { "accept-encoding": "gzip" } : {}) } });
  if (r.status === 204) return { items: [], r };
  expectStatus(r, 200, `${what} (${path})`);
  const items = parseJson(r, what) as Json[];
  check(Array.isArray(items), `${what}: not a JSON array`);
  return { items, r };
}

/** Up to `limit` studies the server holds, and the largest series among the first few. */
async function discover(side: Side, limit: number): Promise<{ studies: Found[]; series: FoundSeries }> {
  const { items } = await json(side, `/studies?limit=${limit}&includefield=00080061`, "QIDO studies");
  check(items.length > 0, `${side.client.root} holds no study (use --allow-stow to store a small corpus first)`);
  const studies = items.map((s): Found => ({
    studyUid: str(s, "0020000D"),
    patientId: str(s, "00100020"),
    patientName: str(s, "00100010"),
    studyDate: str(s, "00080020"),
    accession: str(s, "00080050"),
    modalities: all(s, "00080061"),
  }));
  for (const s of studies) check(/^[0-9.]+$/.test(s.studyUid), `QIDO studies: a result without a StudyInstanceUID`);
  let best: FoundSeries | undefined;
  for (const study of studies.slice(0, 10)) {
    const { items: series } = await json(side, `/studies/${study.studyUid}/series`, "QIDO series");
    for (const se of series) {
      const seriesUid = str(se, "0020000E");
      const { items: instances } = await json(
        side,
        `/studies/${study.studyUid}/series/${seriesUid}/instances?includefield=00280010,00280011,00280002,00280100,00280008`,
        "QIDO instances",
      );
      if (best && instances.length <= best.instances.length) continue;
      best = {
        studyUid: study.studyUid,
        seriesUid,
        instances: instances.map((i) => ({
          sopUid: str(i, "00080018"),
          rows: Number(str(i, "00280010")),
          columns: Number(str(i, "00280011")),
          samples: Number(str(i, "00280002") || 1),
          bits: Number(str(i, "00280100")),
          frames: Number(str(i, "00280008") || 1),
        })),
      };
    }
  }
  check(best !== undefined && best.instances.length > 0, "no series with instances found");
  return { studies, series: best };
}

/** A query mix built from what was found; each result is checked against its filter. */
function queries(found: Found[], series: FoundSeries): Array<{ path: string; test: (items: Json[]) => string | undefined }> {
  const random = seededRandom(0xbace);
  const pick = () => found[Math.floor(random() * found.length)] as Found;
  const out: Array<{ path: string; test: (items: Json[]) => string | undefined }> = [
    {
      path: "/studies?limit=25",
      test: (items) => (items.length > 0 && items.length <= 25 ? undefined : `${items.length} results for limit=25`),
    },
    { path: "/studies?limit=25&offset=1", test: (items) => (items.length <= 25 ? undefined : `${items.length} results for limit=25`) },
  ];
  const named = found.find((s) => /^[A-Za-z]{2,}/.test(s.patientName));
  if (named) {
    const prefix = named.patientName.slice(0, 2);
    out.push({
      path: `/studies?PatientName=${encodeURIComponent(`${prefix}*`)}&limit=50`,
      test: (items) =>
        items.length === 0
          ? "no study for a name prefix that exists"
          : items.every((i) => str(i, "00100010").toLowerCase().startsWith(prefix.toLowerCase()))
            ? undefined
            : "a name without the prefix",
    });
  }
  const dated = found.find((s) => /^\d{8}$/.test(s.studyDate));
  if (dated) {
    const year = dated.studyDate.slice(0, 4);
    out.push({
      path: `/studies?StudyDate=${year}0101-${year}1231&limit=50`,
      test: (items) =>
        items.length === 0
          ? "no study in a year that has one"
          : items.every((i) => str(i, "00080020").startsWith(year))
            ? undefined
            : "a date outside the range",
    });
  }
  const withModality = found.find((s) => s.modalities.length > 0);
  if (withModality) {
    const modality = withModality.modalities[0] as string;
    out.push({
      path: `/studies?ModalitiesInStudy=${modality}&limit=50`,
      test: (items) => (items.length === 0 ? `no ${modality} study` : undefined),
    });
  }
  const accessioned = found.find((s) => /^[\w.-]+$/.test(s.accession));
  if (accessioned)
    out.push({
      path: `/studies?AccessionNumber=${encodeURIComponent(accessioned.accession)}`,
      test: (items) =>
        items.some((i) => str(i, "0020000D") === accessioned.studyUid) ? undefined : "the study with that accession number is missing",
    });
  const uids = [pick(), pick(), pick()].map((s) => s.studyUid);
  const unique = [...new Set(uids)];
  out.push({
    path: `/studies?StudyInstanceUID=${unique.join(",")}`,
    test: (items) =>
      items.length === unique.length && items.every((i) => unique.includes(str(i, "0020000D")))
        ? undefined
        : `${items.length} results for ${unique.length} UIDs`,
  });
  const p = pick();
  if (p.patientId && /^[\w.-]+$/.test(p.patientId))
    out.push({
      path: `/studies?PatientID=${encodeURIComponent(p.patientId)}&includefield=all`,
      test: (items) => (items.some((i) => str(i, "0020000D") === p.studyUid) ? undefined : "the patient's study is missing"),
    });
  out.push({
    path: `/studies/${series.studyUid}/series/${series.seriesUid}/instances?includefield=all`,
    test: (items) =>
      items.length === series.instances.length ? undefined : `${items.length} instances, QIDO said ${series.instances.length} before`,
  });
  return out;
}

/** Checks a frame answer: one part; a native one is exactly Rows × Columns × samples × bytes long. */
function checkFrame(r: Response, instance: FoundSeries["instances"][number], what: string): number {
  expectStatus(r, 200, what);
  const parts = parseMultipart(r.body, r.headers["content-type"]);
  check(parts.length === 1, `${what}: ${parts.length} parts`);
  const part = parts[0] as { headers: Record<string, string>; body: Buffer };
  const syntax = /transfer-syntax="?([0-9.]+)/i.exec(part.headers["content-type"] ?? "")?.[1];
  const native =
    syntax === undefined
      ? (part.headers["content-type"] ?? "application/octet-stream").startsWith("application/octet-stream")
      : NATIVE.has(syntax);
  const expected = instance.rows * instance.columns * instance.samples * (instance.bits / 8);
  if (native && expected > 0)
    check(part.body.length === expected || part.body.length === expected + 1, `${what}: ${part.body.length} bytes, expected ${expected}`);
  else check(part.body.length > 0, `${what}: empty frame`);
  return part.body.length;
}

export const remoteSuite: Suite = {
  name: "Remote DICOMweb (--base)",
  async run(context: SuiteContext) {
    const { quick, options, log } = context;
    const base = options.base;
    if (!base) throw new Error("the remote suite needs --base URL");
    const client = new Client(base, 32, options.headers);
    const side: Side = { label: "server", client };
    const rows: BenchRow[] = [];
    const addRow = rowAdder(rows, undefined, log);
    try {
      if (options.allowStow) {
        const files = [
          ...makeMixedStudies(6).flatMap((s) => s.instances),
          ...makeMetadataSeries(100).instances,
          ...(await makeCompressedStudy(10, 500, 2)).all,
        ];
        const t = performance.now();
        await stowPass(side, files, 50, 2);
        const seconds = (performance.now() - t) / 1000;
        addRow({
          name: `STOW of ${files.length} generated instances (batch 50, concurrency 2)`,
          unit: "inst/s",
          ours: round(files.length / seconds, 1),
          higherIsBetter: true,
          note: "--allow-stow",
        });
      }
      const { studies, series } = await discover(side, quick ? 50 : 200);
      log(`found ${studies.length} studies; largest series of the first 10: ${series.instances.length} instances`);

      // ---- QIDO mix
      const mix = queries(studies, series);
      const times: number[] = [];
      for (let run = 0; run < (quick ? 5 : 20) + 1; run++)
        for (const q of mix) {
          const { items, r } = await json(side, q.path, "QIDO");
          const problem = q.test(items);
          check(problem === undefined, `QIDO ${q.path}: ${problem}`);
          if (run > 0) times.push(r.ms);
        }
      for (const [p, label] of [
        [0.5, "p50"],
        [0.95, "p95"],
        [0.99, "p99"],
      ] as const)
        addRow({
          name: `QIDO mix, ${label}`,
          unit: "ms",
          ours: round(percentile(times, p)),
          higherIsBetter: false,
          note:
            label === "p50"
              ? `${mix.length} queries built from what the server holds: ${mix.map((q) => q.path.split("?")[1]?.split("=")[0] ?? q.path.slice(-9)).join(", ")}`
              : undefined,
        });

      // ---- Metadata of the largest series, and its study
      const seriesPath = `/studies/${series.studyUid}/series/${series.seriesUid}/metadata`;
      const metadata = async (gzip: boolean, path = seriesPath) => {
        const { items, r } = await json(side, path, "metadata", gzip);
        if (path === seriesPath) {
          check(
            items.length === series.instances.length,
            `series metadata: ${items.length} instances, QIDO listed ${series.instances.length}`,
          );
          const uids = new Set(items.map((i) => str(i, "00080018")));
          for (const i of series.instances) check(uids.has(i.sopUid), `series metadata: ${i.sopUid} missing`);
        } else check(items.length >= series.instances.length, `study metadata: ${items.length} instances`);
        return r.ms;
      };
      const first = await metadata(true);
      const runs = quick ? 5 : 15;
      const warm = async (gzip: boolean, path?: string) => {
        const out: number[] = [];
        for (let i = 0; i < runs; i++) out.push(await metadata(gzip, path));
        return median(out);
      };
      addRow({
        name: `Series metadata (${series.instances.length} inst.), first request, gzip`,
        unit: "ms",
        ours: round(first),
        higherIsBetter: false,
        note: "may be warm already if someone asked before",
      });
      addRow({
        name: `Series metadata (${series.instances.length} inst.), warm, gzip`,
        unit: "ms",
        ours: round(await warm(true)),
        higherIsBetter: false,
      });
      addRow({
        name: `Series metadata (${series.instances.length} inst.), warm, identity`,
        unit: "ms",
        ours: round(await warm(false)),
        higherIsBetter: false,
      });
      addRow({
        name: "Study metadata, warm, gzip",
        unit: "ms",
        ours: round(await warm(true, `/studies/${series.studyUid}/metadata`)),
        higherIsBetter: false,
      });

      // ---- Frames
      const random = seededRandom(0xf4a3e);
      const framePath = (sop: string) => `/studies/${series.studyUid}/series/${series.seriesUid}/instances/${sop}/frames/1`;
      let accept = AS_STORED;
      const probe = await client.request(framePath(series.instances[0]?.sopUid ?? ""), { headers: { accept } });
      if (probe.status === 406 || probe.status === 400) accept = UNCOMPRESSED; // no transfer-syntax=* here
      const oneFrame = async (i: number) => {
        const instance = series.instances[i] as FoundSeries["instances"][number];
        const r = await client.request(framePath(instance.sopUid), { headers: { accept } });
        return { ms: r.ms, bytes: checkFrame(r, instance, `frame 1 of ${instance.sopUid}`) };
      };
      const latencies: number[] = [];
      for (let i = 0; i < (quick ? 50 : 200); i++) latencies.push((await oneFrame(Math.floor(random() * series.instances.length))).ms);
      addRow({
        name: "Frame, p50",
        unit: "ms",
        ours: round(median(latencies)),
        higherIsBetter: false,
        note: `Accept: ${accept}; p95 ${fmt(percentile(latencies, 0.95), 1)} ms`,
      });
      for (const concurrency of quick ? [8] : [8, 32]) {
        let bytes = 0;
        const r = await inFlight(concurrency, quick ? 200 : 1000, async () => {
          bytes += (await oneFrame(Math.floor(random() * series.instances.length))).bytes;
        });
        addRow({
          name: `Frames, concurrency ${concurrency}`,
          unit: "frames/s",
          ours: round(r.calls / (r.ms / 1000), 0),
          higherIsBetter: true,
          note: `${fmt(bytes / 1e6 / (r.ms / 1000), 1)} MB/s`,
        });
      }

      // ---- Rendered (optional in DICOMweb: a server without it gets a row saying so)
      const renderedPath = (sop: string) => `/studies/${series.studyUid}/series/${series.seriesUid}/instances/${sop}/rendered`;
      const rendered = async (sop: string) => {
        const r = await client.request(renderedPath(sop), { headers: { accept: "image/jpeg" } });
        return r;
      };
      const test = await rendered(series.instances[0]?.sopUid ?? "");
      if (test.status !== 200)
        addRow({ name: "Rendered JPEG", unit: "images/s", ours: 0, higherIsBetter: true, note: `not offered: HTTP ${test.status}` });
      else {
        const isJpeg = (r: Response) => r.status === 200 && r.body[0] === 0xff && r.body[1] === 0xd8;
        const cold = Math.min(series.instances.length, quick ? 20 : 100);
        const c = await inFlight(2, cold, async (i) =>
          check(isJpeg(await rendered((series.instances[i] as { sopUid: string }).sopUid)), "rendered: not a JPEG"),
        );
        const w = await inFlight(8, quick ? 100 : 500, async () =>
          check(isJpeg(await rendered(series.instances[0]?.sopUid ?? "")), "rendered: not a JPEG"),
        );
        addRow({
          name: "Rendered JPEG, first requests, concurrency 2",
          unit: "images/s",
          ours: round(c.calls / (c.ms / 1000), 0),
          higherIsBetter: true,
          note: `${cold} distinct instances`,
        });
        addRow({
          name: "Rendered JPEG, one instance again, concurrency 8",
          unit: "images/s",
          ours: round(w.calls / (w.ms / 1000), 0),
          higherIsBetter: true,
        });
      }

      // ---- Time to first image
      const ttfi: number[] = [];
      for (const study of studies.filter((s) => /^[\w.-]+$/.test(s.patientId)).slice(0, quick ? 5 : 20))
        ttfi.push(await timeToFirstImage(side, study));
      if (ttfi.length)
        addRow({
          name: "Time to first image (QIDO → series → metadata → frame 1), p50",
          unit: "ms",
          ours: round(median(ttfi)),
          higherIsBetter: false,
          note: `${ttfi.length} studies; p95 ${fmt(percentile(ttfi, 0.95), 1)} ms`,
        });
      return rows;
    } finally {
      client.close();
    }
  },
};

/**
 * dicomweb-client (the DICOMweb client OHIF uses; npm 0.11.3) against the real Voxelgate server,
 * one call per transaction: STOW, QIDO at three levels, metadata at three levels, instance
 * retrieve, frames, bulk data. What comes back is checked against the original files and what
 * pydicom finds in them (test/fixtures/interop_oracle.py).
 *
 * The client is written for browsers: in Node it needs a global XMLHttpRequest (npm xhr2).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import dicomweb from "dicomweb-client";
import { type CorpusFile, makeInteropCorpus, type OracleEntry, pydicomOracle } from "../helpers/interop-corpus.js";
import { PYTHON, requireTools, TOOLS } from "../helpers/tools.js";
import { startVoxelgate } from "../helpers/voxelgate.js";

const require = createRequire(import.meta.url);
(globalThis as Record<string, unknown>).XMLHttpRequest ??= require("xhr2");

interface Attribute {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}
type Dataset = Record<string, Attribute>;
interface MediaType {
  mediaType: string;
  transferSyntaxUID?: string;
}
interface InstanceRef {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
}

/** The part of dicomweb-client's API used here, typed as it behaves (its .d.ts is looser). */
interface Client {
  wadoURL: string;
  storeInstances(options: { datasets: ArrayBuffer[]; studyInstanceUID?: string }): Promise<unknown>;
  searchForStudies(options?: { queryParams?: Record<string, string> }): Promise<Dataset[]>;
  searchForSeries(options?: { studyInstanceUID?: string; queryParams?: Record<string, string> }): Promise<Dataset[]>;
  searchForInstances(options?: {
    studyInstanceUID?: string;
    seriesInstanceUID?: string;
    queryParams?: Record<string, string>;
  }): Promise<Dataset[]>;
  retrieveStudyMetadata(options: { studyInstanceUID: string }): Promise<Dataset[]>;
  retrieveSeriesMetadata(options: { studyInstanceUID: string; seriesInstanceUID: string }): Promise<Dataset[]>;
  retrieveInstanceMetadata(options: InstanceRef): Promise<Dataset[]>;
  retrieveInstance(options: InstanceRef & { mediaTypes?: MediaType[] }): Promise<ArrayBuffer>;
  retrieveSeries(options: { studyInstanceUID: string; seriesInstanceUID: string }): Promise<ArrayBuffer[]>;
  retrieveStudy(options: { studyInstanceUID: string }): Promise<ArrayBuffer[]>;
  retrieveInstanceFrames(options: InstanceRef & { frameNumbers: number[]; mediaTypes?: MediaType[] }): Promise<ArrayBuffer[]>;
  retrieveBulkData(options: { BulkDataURI: string; mediaTypes?: MediaType[] }): Promise<ArrayBuffer[]>;
  /**
   * Private, but the only way to ask for `transfer-syntax=*`: the public retrieveInstance throws
   * "Media type application/ is not supported" for any mediaTypes (client bug, see notes/ohif.md).
   */
  _httpGetMultipartApplicationDicom(url: string, mediaTypes: MediaType[], params: boolean, request: object): Promise<ArrayBuffer[]>;
}

const sha1 = (data: ArrayBuffer | Buffer): string =>
  createHash("sha1")
    .update(Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data))
    .digest("hex");
const value = (d: Dataset | undefined, tag: string): unknown => d?.[tag]?.Value?.[0];
const uids = (list: Dataset[], tag: string): string[] => list.map((d) => String(value(d, tag))).sort();
const unique = (list: string[]): string[] => [...new Set(list)].sort();
const toArrayBuffer = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/** The Transfer Syntax UID in a Part 10 file's meta information (explicit VR little endian group 0002). */
function metaTransferSyntax(bytes: Buffer): string {
  assert.equal(bytes.subarray(128, 132).toString("latin1"), "DICM", "not a Part 10 file");
  for (let offset = 132; offset + 8 <= bytes.length && bytes.readUInt16LE(offset) === 0x0002;) {
    const element = bytes.readUInt16LE(offset + 2);
    const long = ["OB", "OW", "OF", "SQ", "UT", "UN"].includes(bytes.toString("latin1", offset + 4, offset + 6));
    const length = long ? bytes.readUInt32LE(offset + 8) : bytes.readUInt16LE(offset + 6);
    const start = offset + (long ? 12 : 8);
    if (element === 0x0010) return bytes.toString("latin1", start, start + length).replace(/[\0 ]+$/, "");
    offset = start + length;
  }
  return "";
}

const NATIVE = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"];

/** For each pair (original, retrieved): the attributes whose values pydicom reads differently. */
const SAME_DATASET = `
import json, sys, warnings
import numpy, pydicom
warnings.simplefilter("ignore")
out = []
args = sys.argv[1:]
for a, b in zip(args[::2], args[1::2]):
    x, y = pydicom.dcmread(a), pydicom.dcmread(b)
    for elem in x:
        other = y.get(elem.tag)
        if elem.tag == 0x7FE00010 and other is not None:
            if not numpy.array_equal(x.pixel_array, y.pixel_array):
                out.append(f"{a} {elem.tag}: pixel values differ")
        elif other is None or other.value != elem.value:
            out.append(f"{a} {elem.tag}: {elem.value!r:.80} -> {(other.value if other is not None else None)!r:.80}")
    for elem in y:
        if elem.tag not in x:
            out.append(f"{a} {elem.tag}: added")
json.dump(out, sys.stdout)
`;

/** Frame media type for a stored transfer syntax (PS3.18 Table 8.7.3-5). */
const FRAME_MEDIA_TYPE: Record<string, string> = {
  "1.2.840.10008.1.2.4.50": "image/jpeg",
  "1.2.840.10008.1.2.4.51": "image/jpeg",
  "1.2.840.10008.1.2.4.57": "image/jpeg",
  "1.2.840.10008.1.2.4.70": "image/jpeg",
  "1.2.840.10008.1.2.4.80": "image/jls",
  "1.2.840.10008.1.2.4.81": "image/jls",
  "1.2.840.10008.1.2.4.90": "image/jp2",
  "1.2.840.10008.1.2.4.91": "image/jp2",
};

test("dicomweb-client against Voxelgate: every transaction, results checked against the files", { timeout: 120_000 }, async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const corpus = makeInteropCorpus((fn) => t.after(fn));
  const oracle = pydicomOracle(corpus.map((c) => c.file));
  const voxelgate = await startVoxelgate(t);
  const client = new dicomweb.api.DICOMwebClient({ url: voxelgate.dicomweb, singlepart: false, verbose: false }) as unknown as Client;
  const ref = (c: CorpusFile): InstanceRef => ({ studyInstanceUID: c.study, seriesInstanceUID: c.series, sopInstanceUID: c.sop });
  const bySop = new Map(corpus.map((c) => [c.sop, c]));
  const oracleOf = (c: CorpusFile): OracleEntry => {
    const o = oracle[c.file];
    assert.ok(o, `no oracle for ${c.file}`);
    return o;
  };

  await t.test("storeInstances (STOW-RS): every instance referenced, none failed", async () => {
    const response = await client.storeInstances({ datasets: corpus.map((c) => toArrayBuffer(readFileSync(c.file))) });
    const json = (typeof response === "string" ? JSON.parse(response) : response) as Dataset;
    const referenced = (json["00081199"]?.Value ?? []) as Dataset[];
    assert.deepEqual(uids(referenced, "00081155"), corpus.map((c) => c.sop).sort());
    const failed = (json["00081198"]?.Value ?? []) as Dataset[];
    assert.deepEqual(uids(failed, "00081155"), [], "FailedSOPSequence");
    for (const item of referenced) {
      const c = bySop.get(String(value(item, "00081155")));
      assert.ok(c);
      const url = String(value(item, "00081190"));
      assert.equal(url, `${voxelgate.dicomweb}/studies/${c.study}/series/${c.series}/instances/${c.sop}`, "RetrieveURL");
    }
  });

  await t.test("searchForStudies / searchForSeries / searchForInstances (QIDO-RS)", async () => {
    assert.deepEqual(uids(await client.searchForStudies(), "0020000D"), unique(corpus.map((c) => c.study)));
    const doe = await client.searchForStudies({ queryParams: { PatientName: "Doe^J*" } });
    assert.deepEqual(uids(doe, "0020000D"), ["2.25.100000", "2.25.100001", "2.25.100002"]);
    for (const study of unique(corpus.map((c) => c.study))) {
      const inStudy = corpus.filter((c) => c.study === study);
      const series = await client.searchForSeries({ studyInstanceUID: study });
      assert.deepEqual(uids(series, "0020000E"), unique(inStudy.map((c) => c.series)), `series of ${study}`);
      for (const s of series) {
        assert.equal(
          Number(value(s, "00201209")),
          inStudy.filter((c) => c.series === value(s, "0020000E")).length,
          "NumberOfSeriesRelatedInstances",
        );
      }
      const instances = await client.searchForInstances({ studyInstanceUID: study });
      assert.deepEqual(uids(instances, "00080018"), inStudy.map((c) => c.sop).sort(), `instances of ${study}`);
    }
    const mr = corpus.filter((c) => c.source.startsWith("test_files/MR_small"));
    const first = mr[0];
    assert.ok(first && mr.length === 4);
    const inSeries = await client.searchForInstances({ studyInstanceUID: first.study, seriesInstanceUID: first.series });
    assert.deepEqual(uids(inSeries, "00080018"), mr.map((c) => c.sop).sort());
    assert.deepEqual(await client.searchForStudies({ queryParams: { PatientID: "no-such-patient" } }), []);
  });

  await t.test("retrieveStudyMetadata / SeriesMetadata / InstanceMetadata (WADO-RS metadata)", async () => {
    for (const study of unique(corpus.map((c) => c.study))) {
      const metadata = await client.retrieveStudyMetadata({ studyInstanceUID: study });
      assert.deepEqual(
        uids(metadata, "00080018"),
        corpus
          .filter((c) => c.study === study)
          .map((c) => c.sop)
          .sort(),
        `metadata of study ${study}`,
      );
    }
    for (const series of unique(corpus.map((c) => `${c.study}/${c.series}`))) {
      const [studyInstanceUID = "", seriesInstanceUID = ""] = series.split("/");
      const metadata = await client.retrieveSeriesMetadata({ studyInstanceUID, seriesInstanceUID });
      assert.deepEqual(
        uids(metadata, "00080018"),
        corpus
          .filter((c) => c.series === seriesInstanceUID)
          .map((c) => c.sop)
          .sort(),
        `metadata of series ${series}`,
      );
    }
    for (const c of corpus) {
      const [metadata, ...more] = await client.retrieveInstanceMetadata(ref(c));
      assert.equal(more.length, 0);
      assert.equal(value(metadata, "00080018"), c.sop);
      assert.equal(value(metadata, "0020000E"), c.series);
      assert.equal(value(metadata, "0020000D"), c.study);
      if (oracleOf(c).frames.length > 0) {
        const pixelData = metadata?.["7FE00010"];
        assert.ok(pixelData?.BulkDataURI ?? pixelData?.InlineBinary, `${c.file}: Pixel Data has neither BulkDataURI nor InlineBinary`);
      }
    }
  });

  await t.test("retrieveBulkData: every BulkDataURI gives the bytes of the value", async () => {
    let checked = 0;
    for (const c of corpus) {
      const o = oracleOf(c);
      const [metadata] = await client.retrieveInstanceMetadata(ref(c));
      assert.ok(metadata);
      const expected: Record<string, string> = { ...o.bulk };
      if (o.pixelData) expected["7FE00010"] = o.pixelData;
      for (const [tag, sum] of Object.entries(expected)) {
        const attribute: Attribute | undefined = metadata[tag];
        assert.ok(attribute, `${c.file}: ${tag} missing from the metadata`);
        if (attribute.BulkDataURI) {
          const parts = await client.retrieveBulkData({ BulkDataURI: attribute.BulkDataURI });
          assert.equal(parts.length, 1, `${c.file} ${tag}: ${parts.length} parts`);
          assert.equal(sha1(parts[0] as ArrayBuffer), sum, `${c.file} ${tag}: bulk data differs from the file`);
          checked++;
        } else {
          assert.equal(
            sha1(Buffer.from(attribute.InlineBinary ?? "", "base64")),
            sum,
            `${c.file} ${tag}: InlineBinary differs from the file`,
          );
        }
      }
    }
    assert.ok(checked >= 20, `only ${checked} BulkDataURIs checked`);
  });

  await t.test("retrieveInstance: transfer-syntax=* gives the stored file; the default gives Explicit VR Little Endian", async () => {
    for (const c of corpus) {
      const original = readFileSync(c.file);
      const url = `${client.wadoURL}/studies/${c.study}/series/${c.series}/instances/${c.sop}`;
      const asStored = await client._httpGetMultipartApplicationDicom(
        url,
        [{ mediaType: "application/dicom", transferSyntaxUID: "*" }],
        false,
        {},
      );
      assert.equal(asStored.length, 1);
      assert.equal(sha1(asStored[0] as ArrayBuffer), sha1(original), `${c.file}: transfer-syntax=* did not give the stored file`);
    }
    // Default (no transfer-syntax): PS3.18 §8.7.3.5.2: Explicit VR Little Endian. From files stored
    // in other native syntaxes too (implicit VR, big endian): pydicom must read the same data set.
    const dir = mkdtempSync(join(tmpdir(), "voxelgate-dwc-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pairs: string[] = [];
    for (const c of corpus.filter((f) => NATIVE.includes(f.transferSyntax))) {
      const bytes = Buffer.from(await client.retrieveInstance(ref(c)));
      assert.equal(metaTransferSyntax(bytes), "1.2.840.10008.1.2.1", `${c.file}: default retrieve`);
      const received = join(dir, `${c.sop}.dcm`);
      writeFileSync(received, bytes);
      pairs.push(c.file, received);
    }
    assert.ok(pairs.length >= 2 * 30);
    const r = spawnSync(PYTHON, ["-c", SAME_DATASET, ...pairs], { maxBuffer: 1 << 26 });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.deepEqual(JSON.parse(r.stdout.toString()), [], "data sets that changed in the default (Explicit VR Little Endian) retrieve");
  });

  await t.test("retrieveStudy / retrieveSeries: one Explicit VR Little Endian part per instance", async () => {
    const holds = (part: ArrayBuffer, sop: string) => Buffer.from(part).includes(Buffer.from(sop, "latin1"));
    const nativeOnly = (list: CorpusFile[]) => list.every((c) => NATIVE.includes(c.transferSyntax));
    const studies = unique(corpus.map((c) => c.study)).filter((s) => nativeOnly(corpus.filter((c) => c.study === s)));
    assert.ok(studies.length >= 5);
    for (const study of studies) {
      const expected = corpus.filter((c) => c.study === study);
      const parts = await client.retrieveStudy({ studyInstanceUID: study });
      assert.equal(parts.length, expected.length, `study ${study}: ${parts.length} parts`);
      for (const part of parts) assert.equal(metaTransferSyntax(Buffer.from(part)), "1.2.840.10008.1.2.1");
      for (const c of expected)
        assert.ok(
          parts.some((p) => holds(p, c.sop)),
          `study ${study}: ${c.sop} missing`,
        );
    }
    const mr = corpus.filter((c) => c.source === "test_files/MR_small.dcm" || c.source === "test_files/MR_small_bigendian.dcm");
    const [first] = mr;
    assert.ok(first);
    const series = corpus.filter((c) => c.series === first.series);
    // The MR series mixes native and compressed syntaxes: either all are decompressed to Explicit VR
    // Little Endian, or the server refuses (406); it must not send another syntax under that media type.
    try {
      const parts = await client.retrieveSeries({ studyInstanceUID: first.study, seriesInstanceUID: first.series });
      assert.equal(parts.length, series.length);
      for (const part of parts) assert.equal(metaTransferSyntax(Buffer.from(part)), "1.2.840.10008.1.2.1");
    } catch (e) {
      assert.equal((e as { status?: number }).status, 406, String(e));
    }
  });

  await t.test("retrieveInstanceFrames: native frames equal pydicom's pixel data, compressed frames its fragments", async () => {
    let native = 0;
    let compressed = 0;
    for (const c of corpus) {
      const o = oracleOf(c);
      if (o.frames.length === 0) continue;
      const numbers = o.frames.map((_, i) => i + 1);
      if (o.native) {
        // Default media type: application/octet-stream, uncompressed little endian.
        const frames = await client.retrieveInstanceFrames({ ...ref(c), frameNumbers: numbers });
        assert.deepEqual(frames.map(sha1), o.frames, `${c.file}: frames ${numbers.join(",")}`);
        native++;
        // One frame of several, by number.
        if (numbers.length > 1) {
          const last = await client.retrieveInstanceFrames({ ...ref(c), frameNumbers: [numbers.length] });
          assert.deepEqual(last.map(sha1), o.frames.slice(-1), `${c.file}: last frame alone`);
        }
      } else {
        // As stored, the way OHIF asks: octet-stream with transfer-syntax=*.
        const asStored = await client.retrieveInstanceFrames({
          ...ref(c),
          frameNumbers: numbers,
          mediaTypes: [{ mediaType: "application/octet-stream", transferSyntaxUID: "*" }],
        });
        assert.deepEqual(asStored.map(sha1), o.frames, `${c.file}: frames with transfer-syntax=*`);
        compressed++;
        const mediaType = FRAME_MEDIA_TYPE[o.transferSyntax];
        if (mediaType) {
          const typed = await client.retrieveInstanceFrames({
            ...ref(c),
            frameNumbers: numbers,
            mediaTypes: [{ mediaType, transferSyntaxUID: o.transferSyntax }],
          });
          assert.deepEqual(typed.map(sha1), o.frames, `${c.file}: frames as ${mediaType}`);
        }
      }
    }
    assert.ok(native >= 20 && compressed >= 6, `native ${native}, compressed ${compressed}`);
  });
});

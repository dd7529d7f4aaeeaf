/**
 * `voxelgate import`, run as a user runs it (the compiled CLI as a child process) on a folder
 * with DICOM files, a nested folder, a zip (with a zip inside), a file without preamble, a
 * README, a DICOMDIR and a damaged file: into a data folder, and into a running server by STOW-RS.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, test } from "node:test";
import yazl from "yazl";
import { classify, type ImportItem } from "../../src/cli/import-sources.js";
import { type Outcome, outcomesFromResponse, sendBatch } from "../../src/cli/import-stow.js";
import { jsonToDataset, TransferSyntaxUids, writeDataset, writePart10 } from "../../src/dicom/index.js";
import { openArchive } from "../../src/store/file-archive.js";

const cli = new URL("../../src/cli/main.js", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "voxelgate-import-"));
after(() => rmSync(work, { recursive: true, force: true }));

const STUDY_A = "2.25.1001";
const STUDY_B = "2.25.1002";

function instance(study: string, series: string, sop: string, fill = 1, rows = 16) {
  return jsonToDataset({
    "00080016": { vr: "UI", Value: ["1.2.840.10008.5.1.4.1.1.7"] },
    "00080018": { vr: "UI", Value: [sop] },
    "00100010": { vr: "PN", Value: [{ Alphabetic: "Import^Test" }] },
    "0020000D": { vr: "UI", Value: [study] },
    "0020000E": { vr: "UI", Value: [series] },
    "00280002": { vr: "US", Value: [1] },
    "00280004": { vr: "CS", Value: ["MONOCHROME2"] },
    "00280010": { vr: "US", Value: [rows] },
    "00280011": { vr: "US", Value: [16] },
    "00280100": { vr: "US", Value: [8] },
    "00280101": { vr: "US", Value: [8] },
    "00280102": { vr: "US", Value: [7] },
    "00280103": { vr: "US", Value: [0] },
    "7FE00010": { vr: "OB", InlineBinary: Buffer.alloc(rows * 16, fill).toString("base64") },
  }).dataset;
}

const part10 = (study: string, series: string, sop: string, fill = 1, rows = 16): Buffer =>
  writePart10(instance(study, series, sop, fill, rows), { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian });

async function writeZip(path: string, entries: Record<string, Buffer>): Promise<void> {
  const zip = new yazl.ZipFile();
  // Every other entry stored rather than deflated: both ways of reading an entry are exercised.
  Object.entries(entries).forEach(([name, bytes], i) => zip.addBuffer(bytes, name, { compress: i % 2 === 0 }));
  zip.end();
  await new Promise<void>((resolve, reject) => {
    const out = createWriteStream(path);
    zip.outputStream.pipe(out).on("close", resolve).on("error", reject);
  });
}

/** in/: 6 good instances in 2 studies and 3 series, plus what must be passed over or fail. */
const input = join(work, "in");
const SOPS = ["2.25.1", "2.25.2", "2.25.3", "2.25.4", "2.25.5", "2.25.6"];
const aBytes = part10(STUDY_A, "2.25.11", "2.25.1");
mkdirSync(join(input, "nested", "deep"), { recursive: true });
writeFileSync(join(input, "a.dcm"), aBytes);
writeFileSync(join(input, "b.dcm"), part10(STUDY_A, "2.25.11", "2.25.2"));
writeFileSync(join(input, "nested", "deep", "c.dcm"), part10(STUDY_A, "2.25.12", "2.25.3"));
// No preamble, no file meta: a bare dataset is DICOM too.
writeFileSync(join(input, "bare"), writeDataset(instance(STUDY_B, "2.25.21", "2.25.4"), TransferSyntaxUids.ImplicitVRLittleEndian));
writeFileSync(join(input, "README.txt"), "These are test files.\n");
writeFileSync(join(input, "DICOMDIR"), part10(STUDY_A, "2.25.11", "2.25.99"));
// Damaged: cut in the middle of the pixel data.
writeFileSync(join(input, "corrupt.dcm"), part10(STUDY_B, "2.25.21", "2.25.7").subarray(0, 400));
const zipPath = join(input, "series.zip");
await writeZip(zipPath, {
  "sub/d.dcm": part10(STUDY_B, "2.25.21", "2.25.5"),
  "sub/e.dcm": part10(STUDY_B, "2.25.21", "2.25.6"),
  "sub/notes.txt": Buffer.from("not an image"),
  "inner.zip": Buffer.from("PK\x05\x06"),
});

/** An item whose bytes come from a function (for STOW client tests). */
const memoryItem = (name: string, stream: () => Readable): ImportItem => ({
  name,
  baseName: name,
  size: 1,
  open: async () => stream(),
  head: async () => Buffer.alloc(0),
  release: () => {},
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The numbers of the summary, by label. */
function counts(stdout: string): Record<string, number> {
  const found: Record<string, number> = {};
  for (const m of stdout.matchAll(/^ {2}([a-zA-Z() ]+):\s+(\d+)$/gm)) found[(m[1] ?? "").trim()] = Number(m[2]);
  return found;
}

const expected = (over: Record<string, number>): Record<string, number> => ({
  stored: 0,
  "identical duplicates": 0,
  "duplicates rejected": 0,
  "duplicates ignored": 0,
  failed: 0,
  "skipped (not DICOM)": 0,
  "skipped (DICOMDIR)": 0,
  ...over,
});

test("import into a data folder: files, nested folders and zip entries stored; the rest skipped or failed with a reason", async () => {
  const data = join(work, "data-direct");
  const r = await runCli(["import", "--data", data, input]);
  const detail = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.code, 1, `a damaged file fails the run\n${detail}`);
  assert.deepEqual(
    counts(r.stdout),
    expected({ stored: 6, failed: 1, "skipped (not DICOM)": 2, "skipped (DICOMDIR)": 1, "skipped (zip inside a zip)": 1 }),
    detail,
  );
  assert.match(r.stdout, /^Processed 11 files \(0\.0 MB\) in .*, into .*data-direct$/m);
  assert.match(r.stdout, /^Failures:\n {2}1 × the DICOM file cannot be read: .*\n {6}.*corrupt\.dcm$/m);
  assert.match(r.stderr, /Found 11 files/);

  const archive = await openArchive({ dataDir: data });
  try {
    assert.deepEqual(archive.index.stats(), { studies: 2, series: 3, instances: 6 });
    for (const sop of SOPS) assert.ok(archive.index.instance(sop), `instance ${sop} is in the index`);
    assert.equal(archive.index.instance("2.25.5")?.studyUid, STUDY_B, "zip entry stored with its study");
    assert.equal(archive.index.instance("2.25.99"), undefined, "DICOMDIR not imported");
    assert.equal(archive.index.instance("2.25.7"), undefined, "damaged file not imported");
  } finally {
    await archive.close();
  }

  // Again, with a copy of a.dcm in a zip and a different file with a.dcm's SOP Instance UID.
  const extra = join(work, "extra");
  mkdirSync(extra);
  await writeZip(join(extra, "again.zip"), { "a.dcm": aBytes });
  writeFileSync(join(extra, "conflict.dcm"), part10(STUDY_A, "2.25.11", "2.25.1", 9));
  const again = await runCli(["import", "--data", data, "--parallel", "2", "--quiet", input, extra]);
  assert.equal(again.code, 1);
  assert.deepEqual(
    counts(again.stdout),
    expected({
      "identical duplicates": 7,
      "duplicates rejected": 1,
      failed: 1,
      "skipped (not DICOM)": 2,
      "skipped (DICOMDIR)": 1,
      "skipped (zip inside a zip)": 1,
    }),
    again.stdout,
  );
  assert.doesNotMatch(again.stderr, /Found|import:/, "--quiet prints no progress");
});

test("import exits 0 when nothing failed; VOXELGATE_DATA names the default data folder", async () => {
  const data = join(work, "data-clean");
  const r = await runCli(["import", join(input, "a.dcm"), join(input, "README.txt"), zipPath], { VOXELGATE_DATA: data });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(counts(r.stdout), expected({ stored: 3, "skipped (not DICOM)": 2, "skipped (zip inside a zip)": 1 }));
  assert.doesNotMatch(r.stdout, /Failures:/);
  const archive = await openArchive({ dataDir: data });
  try {
    assert.deepEqual(archive.index.stats(), { studies: 2, series: 2, instances: 3 });
  } finally {
    await archive.close();
  }
});

test("zip entries larger than the header read, read in parallel, compressed or stored", async () => {
  // yauzl's own file reader crashed the process here (a destroyed entry stream with a read queued).
  const zip = join(work, "large.zip");
  const entries: Record<string, Buffer> = {};
  for (let i = 0; i < 8; i++) entries[`large/${i}.dcm`] = part10("2.25.3001", "2.25.3002", `2.25.300${i + 3}`, i, 20_000);
  await writeZip(zip, entries);
  const data = join(work, "data-large");
  const r = await runCli(["import", "--data", data, "--parallel", "8", zip]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(counts(r.stdout), expected({ stored: 8 }));
  const archive = await openArchive({ dataDir: data });
  try {
    assert.deepEqual(archive.index.stats(), { studies: 1, series: 1, instances: 8 });
    assert.equal(archive.index.instance("2.25.3003")?.fileSize, entries["large/0.dcm"]?.length);
  } finally {
    await archive.close();
  }
});

test("import of a missing path or a broken zip fails with the reason", async () => {
  const broken = join(work, "broken.zip");
  writeFileSync(broken, "this is not a zip");
  const r = await runCli(["import", "--data", join(work, "data-missing"), join(work, "nowhere"), broken]);
  assert.equal(r.code, 1);
  assert.equal(counts(r.stdout).failed, 2);
  assert.match(r.stdout, /1 × no such file or folder\n {6}.*nowhere$/m);
  assert.match(r.stdout, /1 × cannot read the zip: .*\n {6}.*broken\.zip$/m);
});

test("import refuses --data with --url, and --parallel 0", async () => {
  const both = await runCli(["import", "--data", join(work, "x"), "--url", "http://127.0.0.1:1/dicomweb", input]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /either --data .* or --url/);
  const zero = await runCli(["import", "--parallel", "0", "--data", join(work, "x"), input]);
  assert.equal(zero.code, 2);
  assert.match(zero.stderr, /--parallel must be at least 1/);
});

interface Server {
  url: string;
  stop(): Promise<void>;
}

async function startServer(dataDir: string): Promise<Server> {
  const child = spawn(process.execPath, [cli, "serve", "--port", "0", "--data", dataDir], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no URL printed in 20 s:\n${output}`)), 20_000);
      const onData = (d: Buffer) => {
        output += d.toString();
        const m = /Voxelgate is listening on (http:\/\/\S+)/.exec(output);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited (${code}):\n${output}`));
      });
    });
    return { url, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

test("import --url sends the files to a running server by STOW-RS", async () => {
  const data = join(work, "data-server");
  const server = await startServer(data);
  let r: Run;
  let retried: Outcome[];
  try {
    r = await runCli(["import", "--url", `${server.url}dicomweb`, "--parallel", "2", input]);
    // A file that cannot be read while its request is sent fails alone; the batch is sent again without it.
    const unreadable = new Readable({
      read() {
        this.push(Buffer.alloc(300));
        this.destroy(new Error("the disk went away"));
      },
    });
    const extra = part10(STUDY_B, "2.25.22", "2.25.8");
    retried = await sendBatch(
      [
        { item: memoryItem("unreadable.dcm", () => unreadable), sopUid: "2.25.9" },
        { item: memoryItem("good.dcm", () => Readable.from([extra])), sopUid: "2.25.8" },
      ],
      { url: `${server.url}dicomweb` },
    );
  } finally {
    await server.stop();
  }
  assert.deepEqual(retried, [{ kind: "failed", reason: "cannot read the file: the disk went away" }, { kind: "stored" }]);
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(
    counts(r.stdout),
    expected({ stored: 6, failed: 1, "skipped (not DICOM)": 2, "skipped (DICOMDIR)": 1, "skipped (zip inside a zip)": 1 }),
    r.stdout,
  );
  // The server's reason for the damaged file (its Error Comment), named with the file.
  assert.match(r.stdout, /^ {2}1 × .*cannot be read.*\n {6}.*corrupt\.dcm$/m);
  const archive = await openArchive({ dataDir: data });
  try {
    assert.deepEqual(archive.index.stats(), { studies: 2, series: 4, instances: 7 });
    for (const sop of [...SOPS, "2.25.8"]) assert.ok(archive.index.instance(sop), `instance ${sop} is in the index`);
  } finally {
    await archive.close();
  }
});

test("import --url to a server that is not there fails every file with the reason", async () => {
  // A port that was just free: nothing listens on it.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const r = await runCli(["import", "--url", `http://127.0.0.1:${port}/dicomweb`, join(input, "a.dcm"), join(input, "b.dcm")]);
  assert.equal(r.code, 1);
  assert.equal(counts(r.stdout).failed, 2);
  assert.match(r.stdout, /2 × cannot reach the server: .*ECONNREFUSED/);
});

test("classify: DICM marker, bare dataset, DICOMDIR by name or class, and not DICOM", () => {
  assert.deepEqual(classify("a.dcm", aBytes), { kind: "dicom", sopUid: "2.25.1" });
  assert.deepEqual(classify("a.dcm", aBytes.subarray(0, 200)), { kind: "dicom" }, "a damaged file with the marker is still DICOM");
  const bare = writeDataset(instance(STUDY_B, "2.25.21", "2.25.4"), TransferSyntaxUids.ImplicitVRLittleEndian);
  assert.deepEqual(classify("IM0001", bare), { kind: "dicom", sopUid: "2.25.4" });
  assert.deepEqual(classify("dicomdir", aBytes), { kind: "dicomdir" });
  // writePart10 takes the Media Storage SOP Class from the dataset; say it is a Media Storage Directory.
  const withClass = jsonToDataset({
    "00041130": { vr: "CS", Value: ["TEST"] },
    "00080016": { vr: "UI", Value: ["1.2.840.10008.1.3.10"] },
    "00080018": { vr: "UI", Value: ["2.25.77"] },
  }).dataset;
  assert.equal(
    classify("DIRFILE", writePart10(withClass, { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian })).kind,
    "dicomdir",
  );
  assert.equal(classify("README.md", Buffer.from("# Voxelgate\n\nA DICOMweb archive.\n")).kind, "not-dicom");
  assert.equal(classify("photo.png", Buffer.concat([Buffer.from("\x89PNG\r\n\x1a\n", "latin1"), Buffer.alloc(4000, 7)])).kind, "not-dicom");
  assert.equal(classify("empty", Buffer.alloc(0)).kind, "not-dicom");
});

test("STOW response: files matched by SOP Instance UID; what matches none goes to files whose UID is unknown", () => {
  const item = (name: string) => memoryItem(name, () => Readable.from([]));
  const files = [
    { item: item("a"), sopUid: "1.1" },
    { item: item("b") },
    { item: item("c"), sopUid: "1.3" },
    { item: item("d"), sopUid: "1.4" },
    { item: item("e"), sopUid: "1.5" },
    { item: item("f") },
    { item: item("g"), sopUid: "1.7" },
  ];
  const response = {
    "00081199": {
      vr: "SQ",
      Value: [
        { "00081155": { vr: "UI", Value: ["1.3"] } },
        { "00081155": { vr: "UI", Value: ["1.1"] } },
        // A file whose UID its first bytes did not show.
        { "00081155": { vr: "UI", Value: ["1.6"] } },
      ],
    },
    "00081198": {
      vr: "SQ",
      Value: [
        { "00081155": { vr: "UI" }, "00081197": { vr: "US", Value: [0xc000] }, "00000902": { vr: "LO", Value: ["the file is damaged"] } },
        { "00081155": { vr: "UI", Value: ["1.4"] }, "00081197": { vr: "US", Value: [0x0111] } },
        { "00081155": { vr: "UI", Value: ["9.9"] }, "00081197": { vr: "US", Value: [0xa900] } },
      ],
    },
  };
  assert.deepEqual(outcomesFromResponse(files, response), [
    { kind: "stored" },
    { kind: "failed", reason: "the file is damaged" },
    { kind: "stored" },
    { kind: "rejected" },
    { kind: "failed", reason: "data set does not match SOP class (A900)" },
    { kind: "stored" },
    { kind: "failed", reason: "the server's STOW response does not mention this instance" },
  ]);
  assert.throws(() => outcomesFromResponse(files, "Conflict"), /not a DICOM JSON dataset/);
});

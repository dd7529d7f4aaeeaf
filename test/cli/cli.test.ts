/** The `voxelgate` command, run as a user would: dump as JSON and XML, errors with a reason, serve. */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { jsonToDataset, TransferSyntaxUids, writePart10 } from "../../src/dicom/index.js";

const cli = new URL("../../src/cli/main.js", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "voxelgate-cli-"));
after(() => rmSync(work, { recursive: true, force: true }));

const file = join(work, "sample.dcm");
const { dataset } = jsonToDataset({
  "00080016": { vr: "UI", Value: ["1.2.840.10008.5.1.4.1.1.7"] },
  "00080018": { vr: "UI", Value: ["2.25.7"] },
  "00100010": { vr: "PN", Value: [{ Alphabetic: "Doe^Jane" }] },
  "7FE00010": { vr: "OB", InlineBinary: Buffer.alloc(4096, 1).toString("base64") },
});
writeFileSync(file, writePart10(dataset, { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian }));

test("dump prints DICOM JSON with large values as BulkDataURI", () => {
  const r = spawnSync(process.execPath, [cli, "dump", file]);
  assert.equal(r.status, 0, r.stderr.toString());
  const json = JSON.parse(r.stdout.toString());
  assert.deepEqual(json["00100010"], { vr: "PN", Value: [{ Alphabetic: "Doe^Jane" }] });
  assert.match(json["7FE00010"].BulkDataURI, /^file:\/\/.*sample\.dcm#offset=\d+,length=4096$/);
});

test("dump --xml prints PS3.19 Native DICOM Model XML", () => {
  const r = spawnSync(process.execPath, [cli, "dump", "--xml", file]);
  assert.equal(r.status, 0, r.stderr.toString());
  const xml = r.stdout.toString();
  assert.match(xml, /^<\?xml version="1\.0" encoding="UTF-8"\?>/);
  assert.match(xml, /<DicomAttribute tag="00100010" vr="PN" keyword="PatientName">/);
  assert.match(xml, /<FamilyName>Doe<\/FamilyName>/);
});

test("dump of a damaged file prints what it read, the reason, and exits 1", () => {
  const cut = join(work, "cut.dcm");
  writeFileSync(cut, writePart10(dataset, { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian }).subarray(0, 400));
  const r = spawnSync(process.execPath, [cli, "dump", cut, join(work, "missing.dcm")]);
  assert.equal(r.status, 1);
  assert.ok(JSON.parse(r.stdout.toString())["00100010"], "what was read is printed");
  assert.match(r.stderr.toString(), /cut\.dcm: error: in \(7FE00010\).*\[TRUNCATED\]/);
  assert.match(r.stderr.toString(), /missing\.dcm: cannot read/);
});

test("serve prints its URL and answers on it", async () => {
  const child = spawn(process.execPath, [cli, "serve", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m?.[1]) resolve(m[1]);
      });
      child.once("exit", (code) => reject(new Error(`server exited ${code}`)));
    });
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Voxelgate/);
    assert.deepEqual(await (await fetch(new URL("healthz", url))).json(), { status: "ok" });
  } finally {
    child.kill("SIGTERM");
  }
});

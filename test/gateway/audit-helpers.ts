/** Shared by the audit tests: polling, STOW of synthetic instances, PS3.15 schema validation with xmllint. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { httpRequest, multipartBody, syntheticInstance } from "../helpers/archive-harness.js";

/** The PS3.15 A.5.1 audit message schema as RELAX NG XML (test/fixtures). */
export const AUDIT_SCHEMA = fileURLToPath(new URL("../../../test/fixtures/dicom-audit-message.rng", import.meta.url));

/** Polls `check` until it returns a value (not undefined), failing with `what` after `ms`. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A synthetic instance whose Patient ID (0010,0020) is `patientId` (5 characters, replacing "SYN-1"). */
export function instanceOf(patientId: string, studyUid: string, seriesUid: string, sopUid: string): Buffer {
  const bytes = syntheticInstance({ studyUid, seriesUid, sopUid, rows: 8, columns: 8 });
  const at = bytes.indexOf("SYN-1");
  if (patientId.length !== 5 || at < 0) throw new Error("patient IDs here have 5 characters");
  bytes.write(patientId, at, "latin1");
  return bytes;
}

export async function stow(dicomweb: string, parts: Buffer[], headers: Record<string, string> = {}): Promise<number> {
  const { body, contentType } = multipartBody(parts);
  const res = await httpRequest(`${dicomweb}/studies`, {
    method: "POST",
    body,
    headers: { "content-type": contentType, accept: "application/dicom+json", ...headers },
  });
  return res.status;
}

/** xmllint's verdict on one audit message against the PS3.15 schema: undefined when valid, else its complaint. */
export function schemaProblems(xml: string): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-audit-xml-"));
  try {
    const file = join(dir, "message.xml");
    writeFileSync(file, xml);
    const r = spawnSync("xmllint", ["--noout", "--relaxng", AUDIT_SCHEMA, file], { encoding: "utf8" });
    return r.status === 0 ? undefined : `${r.stderr}\n${xml}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Attribute values of every `<element …>` in a flat XML string (enough for checks on our one-line messages). */
export function elements(xml: string, name: string): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = [];
  for (const m of xml.matchAll(new RegExp(`<${name}((?:\\s+[\\w:-]+="[^"]*")*)\\s*/?>`, "g"))) {
    const attrs: Record<string, string> = {};
    for (const a of (m[1] ?? "").matchAll(/([\w:-]+)="([^"]*)"/g)) attrs[a[1] as string] = a[2] as string;
    out.push(attrs);
  }
  return out;
}

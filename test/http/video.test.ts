/**
 * Video objects (MPEG-4 AVC here): stored although their Number of Frames does not match the
 * fragments (the stream is one unit), and rendered as their own video media type (PS3.18 §8.7.4).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Dataset, encapsulateFrames, writePart10 } from "../../src/dicom/index.js";
import { httpRequest, multipartBody, startInProcess } from "../helpers/archive-harness.js";

const STUDY = "1.2.826.0.1.3680043.9.6161";
const SERIES = `${STUDY}.1`;
const SOP = `${SERIES}.1`;
const H264 = "1.2.840.10008.1.2.4.102";

function videoInstance(stream: Buffer): Buffer {
  const ds = new Dataset(true);
  const text = (tag: number, vr: "UI" | "CS" | "IS" | "PN", v: string) =>
    ds.set({ tag, vr, bytes: Buffer.from(v.length % 2 ? `${v}${vr === "UI" ? "\0" : " "}` : v, "latin1"), position: -1 });
  const us = (tag: number, v: number) => ds.set({ tag, vr: "US", bytes: Buffer.from(Uint16Array.of(v).buffer), position: -1 });
  text(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.77.1.4.1"); // Video Photographic Image Storage
  text(0x00080018, "UI", SOP);
  text(0x00080060, "CS", "XC");
  text(0x0020000d, "UI", STUDY);
  text(0x0020000e, "UI", SERIES);
  us(0x00280002, 3);
  text(0x00280004, "CS", "YBR_PARTIAL_420");
  text(0x00280008, "IS", "30");
  us(0x00280010, 16);
  us(0x00280011, 16);
  us(0x00280100, 8);
  ds.set({ tag: 0x7fe00010, vr: "OB", encapsulated: encapsulateFrames([stream.subarray(0, 100), stream.subarray(100)]), position: -1 });
  return writePart10(ds, { transferSyntaxUid: H264 });
}

test("a video object is stored and its rendered resource is the video stream as video/mp4", async (t) => {
  const s = await startInProcess(t);
  const stream = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 13) & 0xff));
  const { body, contentType } = multipartBody([videoInstance(stream)]);
  const stored = await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body });
  assert.equal(stored.status, 200, stored.text());
  const url = `${s.dicomweb}/studies/${STUDY}/series/${SERIES}/instances/${SOP}/rendered`;
  const video = await httpRequest(url, { headers: { accept: "video/mp4" } });
  assert.equal(video.status, 200, video.text());
  assert.equal(video.headers["content-type"], "video/mp4");
  assert.ok(video.body.equals(stream), "the stream from all fragments, in order");
  const refused = await httpRequest(url, { headers: { accept: "image/jpeg" } });
  assert.equal(refused.status, 406);
});

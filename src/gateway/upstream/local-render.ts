/**
 * Rendered images and thumbnails made by the gateway for an upstream that cannot make them: the
 * instance's metadata (Image Pixel, VOI, Modality LUT attributes) and its frames as stored,
 * decoded and rendered in the codec pool exactly as the archive renders its own instances.
 */
import { presentationOf, type Presentation } from "../../codec/render.js";
import type { RenderMediaType, RenderParams } from "../../codec/render-params.js";
import { frameInfoOf } from "../../codec/index.js";
import { NATIVE_SYNTAXES } from "../../dicomweb/media-types.js";
import { DicomwebError } from "../../dicomweb/wado.js";
import type { Upstream } from "./upstream.js";

/** Frames of one instance per animated GIF at most (a cine loop, not a whole volume). */
const MAX_GIF_FRAMES = 200;

/**
 * One image of an instance: frame `frame` (1-based), or for an instance-level request the first
 * frame (every frame for a GIF, the middle one for a thumbnail).
 */
export async function renderInstance(
  upstream: Upstream,
  instancePath: string,
  frame: number | undefined,
  params: RenderParams,
  mediaType: RenderMediaType,
  thumbnail: boolean,
): Promise<Buffer> {
  const pool = upstream.pool;
  const { dataset, frames: count } = await upstream.instanceDataset(instancePath);
  const numbers =
    frame !== undefined
      ? [frame]
      : thumbnail
        ? [Math.max(1, Math.ceil(count / 2))]
        : mediaType === "image/gif"
          ? Array.from({ length: Math.min(count, MAX_GIF_FRAMES) }, (_, i) => i + 1)
          : [1];
  if (numbers.some((n) => n > count)) throw new DicomwebError(404, `${instancePath} has ${count} frame(s); frame ${frame} does not exist`);
  let info;
  try {
    info = frameInfoOf(dataset);
  } catch {
    throw new DicomwebError(406, `${instancePath} at ${upstream.label} has no pixel data to render`);
  }
  const decoded = [];
  const presentations: Presentation[] = [];
  for (const n of numbers) {
    const stored = await upstream.storedFrame(instancePath, n);
    decoded.push(
      NATIVE_SYNTAXES.has(stored.syntax) ? { info, pixels: stored.bytes } : await pool.decodeFrame(stored.bytes, stored.syntax, info),
    );
    presentations.push(presentationOf(dataset, n - 1));
  }
  return Buffer.from(await pool.render({ frames: decoded, presentations, params, mediaType }));
}

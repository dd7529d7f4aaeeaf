/**
 * Pixels on the retrieve paths: frames in the transfer syntax a viewer asked for, and rendered
 * images. One frame request touches one frame (its byte ranges and the instance header), never the
 * whole instance; codec and render work runs in the worker pool; results are cached on disk under
 * keys that carry the instance's content hash: native under (instance, frame, syntax), rendered
 * under (instance, frame, every render parameter), in two separate caches.
 */
import { join } from "node:path";
import { CodecError, type CodecPool, canTranscode, frameInfoOf, type FrameInfo } from "../codec/index.js";
import { presentationOf, type Presentation } from "../codec/render.js";
import { type RenderMediaType, type RenderParams, renderCacheKey } from "../codec/render-params.js";
import { isLossy } from "../codec/transcode.js";
import { type Dataset, firstString, readDicom, Tags, TransferSyntaxUids } from "../dicom/index.js";
import type { Archive } from "../store/archive.js";
import type { FrameRanges, InstanceRow } from "../store/types.js";
import { DiskCache } from "./disk-cache.js";
import { NATIVE_SYNTAXES } from "./media-types.js";
import { DicomwebError, readFrames } from "./wado.js";

const ELE = TransferSyntaxUids.ExplicitVRLittleEndian;
/** Headers kept in memory (the Image Pixel and presentation attributes of recently used instances). */
const HEADER_CACHE_ENTRIES = 512;

export interface PixelServiceOptions {
  archive: Archive;
  pool: CodecPool;
  /** Cache folder; `native/` and `rendered/` live under it. */
  cacheDir: string;
  nativeCacheBytes: number;
  renderedCacheBytes: number;
  /** Memory for recently used transcoded frames and rendered images, in front of the disk caches. */
  memoryCacheBytes?: number;
  onLookup?: (cache: "native" | "rendered", hit: boolean) => void;
}

export class PixelService {
  readonly nativeCache: DiskCache;
  readonly renderedCache: DiskCache;
  private readonly headers = new Map<string, Dataset>();
  private readonly tables = new Map<string, { frames: FrameRanges[]; rangesInFile: boolean }>();

  constructor(private readonly options: PixelServiceOptions) {
    // The memory tier is shared out: rendered images are small and asked again and again (thumbnails).
    const memory = options.memoryCacheBytes ?? 0;
    this.nativeCache = new DiskCache(join(options.cacheDir, "native"), options.nativeCacheBytes, {
      memoryBytes: Math.floor(memory / 2),
      onLookup: (hit) => options.onLookup?.("native", hit),
    });
    // Rendered images are written to disk only when they leave memory: writing each one costs about as much as rendering it.
    this.renderedCache = new DiskCache(join(options.cacheDir, "rendered"), options.renderedCacheBytes, {
      memoryBytes: Math.ceil(memory / 2),
      writeOnEviction: true,
      onLookup: (hit) => options.onLookup?.("rendered", hit),
    });
  }

  /** The instance's attributes before its pixel data (read once, then kept in a small LRU). */
  async header(row: InstanceRow): Promise<Dataset> {
    const cached = this.headers.get(row.sha256);
    if (cached) {
      this.headers.delete(row.sha256);
      this.headers.set(row.sha256, cached);
      return cached;
    }
    const end = this.headerEnd(row, this.frameTable(row).rangesInFile);
    const read = readDicom(await this.options.archive.blobs.readBytes(row.blobKey, { start: 0, end }), { untilTag: Tags.PixelData });
    const ds = read.dataset;
    this.headers.set(row.sha256, ds);
    if (this.headers.size > HEADER_CACHE_ENTRIES) this.headers.delete(this.headers.keys().next().value as string);
    return ds;
  }

  /** Where the attributes before the pixel data end: the pixel data's position when known, else the whole file. */
  private headerEnd(row: InstanceRow, rangesInFile: boolean): number {
    const pixels = this.options.archive.index.bulkData(row.sopUid)?.find((b) => b.path === "7FE00010");
    return rangesInFile && pixels && pixels.offset > 0 ? pixels.offset : row.fileSize;
  }

  /** The instance's frame table (byte ranges), kept in a small LRU: a frame request then costs one read. */
  frameTable(row: InstanceRow): { frames: FrameRanges[]; rangesInFile: boolean } {
    let table = this.tables.get(row.sha256);
    if (table) {
      this.tables.delete(row.sha256);
    } else {
      table = this.options.archive.index.frames(row.sopUid) ?? { frames: [], rangesInFile: true };
      if (this.tables.size >= HEADER_CACHE_ENTRIES) this.tables.delete(this.tables.keys().next().value as string);
    }
    this.tables.set(row.sha256, table);
    return table;
  }

  private readFrame(row: InstanceRow, n: number): Promise<Buffer> {
    return readFrames(this.options.archive, row, [n], this.frameTable(row)).then((f) => f[0]?.bytes as Buffer);
  }

  async frameInfo(row: InstanceRow): Promise<FrameInfo> {
    return frameInfoOf(await this.header(row));
  }

  /** Can frames stored in `stored` be sent as `target`? (Lossy targets are the caller's decision.) */
  static canProduce(stored: string, target: string): boolean {
    if (target === stored) return true;
    if (NATIVE_SYNTAXES.has(stored) && target === ELE) return true;
    return canTranscode(NATIVE_SYNTAXES.has(stored) ? ELE : stored, target);
  }

  /** Frame `n` (1-based) in `target`: as stored when it matches, else transcoded (cached). */
  async frame(row: InstanceRow, n: number, target: string): Promise<Buffer> {
    const stored = row.transferSyntaxUid;
    const native = NATIVE_SYNTAXES.has(stored);
    if (target === stored || (native && target === ELE)) return this.readFrame(row, n);
    if (!PixelService.canProduce(stored, target)) throw new DicomwebError(406, `frames stored as ${stored} cannot be sent as ${target}`);
    return this.nativeCache.get(`${row.sha256}/${n}/${target}`, async () => {
      const source = await this.readFrame(row, n);
      const info = await this.frameInfo(row);
      const out = await this.options.pool
        .transcodeFrame(source, native ? ELE : stored, info, target, { transfer: true })
        .catch((err: unknown) => {
          // Pixels this syntax cannot hold (e.g. 16-bit samples as baseline JPEG) are a 406, not a server error.
          if (err instanceof CodecError && err.code === "UNSUPPORTED")
            throw new DicomwebError(406, `frame ${n} of instance ${row.sopUid}: ${err.message}`);
          throw err;
        });
      return Buffer.from(out.bytes.buffer, out.bytes.byteOffset, out.bytes.byteLength);
    });
  }

  /**
   * The ingest policy "also keep a copy in another syntax": makes every frame of the instance in
   * `syntax` (into the native cache) when its Modality is one of `modalities`. Best effort, in the
   * background: a frame that cannot be made is simply made on request instead.
   */
  async pretranscode(row: InstanceRow, syntax: string, modalities: readonly string[]): Promise<number> {
    const modality = firstString(await this.header(row), Tags.Modality)?.trim();
    if (modality === undefined || !modalities.includes(modality) || row.transferSyntaxUid === syntax) return 0;
    if (!PixelService.canProduce(row.transferSyntaxUid, syntax)) return 0;
    const count = this.frameTable(row).frames.length;
    let made = 0;
    for (let n = 1; n <= count; n++) {
      try {
        await this.frame(row, n, syntax);
        made++;
      } catch {
        break;
      }
    }
    return made;
  }

  /** Drops the cached frames, images and header of an instance (deleted: its pixels must not linger on disk). */
  async forget(row: InstanceRow): Promise<void> {
    this.headers.delete(row.sha256);
    this.tables.delete(row.sha256);
    await this.nativeCache.forget(`${row.sha256}/`);
    await this.renderedCache.forget(`${row.sha256}/`);
  }

  /** The uncompressed pixels of frame `n`, as the renderer takes them. */
  private async decoded(row: InstanceRow, n: number): Promise<{ info: FrameInfo; pixels: Uint8Array }> {
    const info = await this.frameInfo(row);
    const bytes = await this.readFrame(row, n);
    if (NATIVE_SYNTAXES.has(row.transferSyntaxUid)) return { info, pixels: bytes };
    return this.options.pool.decodeFrame(bytes, row.transferSyntaxUid, info);
  }

  /** The rendered-cache key of an image; 406 when the instance has no pixels, 404 when frame `n` does not exist. */
  private renderedKey(row: InstanceRow, n: number | undefined, params: RenderParams, mediaType: RenderMediaType): string {
    const frameCount = this.frameTable(row).frames.length;
    if (frameCount === 0) throw new DicomwebError(406, `instance ${row.sopUid} has no pixel data to render`);
    if (n !== undefined && n > frameCount)
      throw new DicomwebError(404, `instance ${row.sopUid} has ${frameCount} frame(s); frame ${n} does not exist`);
    return `${row.sha256}/${n ?? "all"}/${renderCacheKey(params, mediaType)}`;
  }

  /**
   * The rendered image when the memory tier holds it, else undefined (then call `rendered`).
   * Synchronous: the hot path of a viewer asking for the same image again costs no promise and no
   * I/O. Throws like `rendered` (404, 406).
   */
  cachedRendered(row: InstanceRow, n: number | undefined, params: RenderParams, mediaType: RenderMediaType): Buffer | undefined {
    return this.renderedCache.cached(this.renderedKey(row, n, params, mediaType));
  }

  /** A rendered image of frame `n` (1-based), or of every frame for an animated GIF (`n` undefined). */
  async rendered(row: InstanceRow, n: number | undefined, params: RenderParams, mediaType: RenderMediaType): Promise<Buffer> {
    const key = this.renderedKey(row, n, params, mediaType);
    const frameCount = this.frameTable(row).frames.length;
    const numbers = n !== undefined ? [n] : mediaType === "image/gif" ? Array.from({ length: frameCount }, (_, i) => i + 1) : [1];
    return this.renderedCache.get(key, async () => {
      const path = this.options.archive.blobs.localPath(row.blobKey);
      const table = this.frameTable(row);
      if (path !== undefined && table.rangesInFile) {
        const task = {
          path,
          headerEnd: this.headerEnd(row, true),
          transferSyntaxUid: row.transferSyntaxUid,
          native: NATIVE_SYNTAXES.has(row.transferSyntaxUid),
          frames: numbers.map((f) => ({ number: f, ranges: table.frames[f - 1] ?? [] })),
          params,
          mediaType,
        };
        return Buffer.from(await this.options.pool.renderFile(task));
      }
      const ds = await this.header(row);
      const frames = [];
      const presentations: Presentation[] = [];
      for (const f of numbers) {
        frames.push(await this.decoded(row, f));
        presentations.push(presentationOf(ds, f - 1));
      }
      // Elsewhere (another blob store, frames cut from a re-read file): read here, moved to the worker.
      return Buffer.from(await this.options.pool.render({ frames, presentations, params, mediaType }, { transfer: true }));
    });
  }
}

/** A lossy target for a lossless source is produced only when the client named that syntax. */
export function lossyAllowed(stored: string, target: string, named: boolean): boolean {
  return named || !isLossy(target) || isLossy(stored);
}

/**
 * The STOW-RS client side of `voxelgate import --url`: one multipart/related request per batch,
 * bodies streamed from disk (or a zip) as the request is sent, and the response dataset
 * (PS3.18 §10.5.3) read back into one outcome per file.
 */
import { randomBytes } from "node:crypto";
import type { ImportItem } from "./import-sources.js";

/** What became of one file. */
export type Outcome = { kind: "stored" | "overwritten" | "identical" | "ignored" | "rejected" } | { kind: "failed"; reason: string };

export interface BatchFile {
  item: ImportItem;
  /** From the file's header, when it could be read: matches the file to its line in the response. */
  sopUid?: string;
}

/** Thrown (wrapped) when a file could not be read while its request was being sent. */
export class ItemReadError extends Error {
  constructor(
    readonly file: BatchFile,
    cause: unknown,
  ) {
    super(`cannot read ${file.item.name}: ${(cause as Error).message}`, { cause });
  }
}

const FAILURE_NAMES: Record<number, string> = {
  0x0110: "processing failure",
  0x0111: "duplicate SOP instance",
  0x0122: "SOP class not supported",
  0xa700: "out of resources",
  0xa770: "instance does not belong to the target study",
  0xa900: "data set does not match SOP class",
  0xc000: "cannot understand",
  0xc122: "transfer syntax not supported",
};

const hex4 = (n: number): string => n.toString(16).toUpperCase().padStart(4, "0");

type JsonItem = Record<string, { Value?: unknown[] } | undefined>;

const first = (item: JsonItem, tag: string): unknown => item[tag]?.Value?.[0];

function sequence(dataset: JsonItem, tag: string): JsonItem[] {
  const value = dataset[tag]?.Value;
  return Array.isArray(value) ? value.filter((v): v is JsonItem => typeof v === "object" && v !== null) : [];
}

/** A failure's reason in words: the server's Error Comment when it gave one, else the standard meaning of the code. */
function failureText(item: JsonItem): { code?: number; reason: string } {
  const code = first(item, "00081197");
  const comment = first(item, "00000902");
  const known = typeof code === "number" ? `${FAILURE_NAMES[code] ?? "failure"} (${hex4(code)})` : "failed without a reason code";
  return { code: typeof code === "number" ? code : undefined, reason: typeof comment === "string" && comment !== "" ? comment : known };
}

/**
 * Reads a STOW response dataset into one outcome per file, in the batch's order. Files are matched
 * by SOP Instance UID. What the response lists without a match (a failure the server could not
 * name, an instance whose UID the file's first bytes did not show) goes to the files still
 * unaccounted for, those whose UID was not known first; a file left over after that has failed.
 */
export function outcomesFromResponse(files: BatchFile[], body: unknown): Outcome[] {
  const dataset = (Array.isArray(body) ? body[0] : body) as JsonItem | undefined;
  if (typeof dataset !== "object" || dataset === null) throw new Error("the STOW response is not a DICOM JSON dataset");
  const outcomes: Array<Outcome | undefined> = files.map(() => undefined);
  const waiting = new Map<string, number[]>();
  files.forEach((f, i) => {
    if (f.sopUid === undefined) return;
    const list = waiting.get(f.sopUid) ?? [];
    list.push(i);
    waiting.set(f.sopUid, list);
  });
  const unnamedFailures: Outcome[] = [];
  const unmatched: Outcome[] = [];
  const place = (item: JsonItem, outcome: Outcome) => {
    const sopUid = first(item, "00081155");
    const i = typeof sopUid === "string" ? waiting.get(sopUid)?.shift() : undefined;
    if (i !== undefined) outcomes[i] = outcome;
    else (typeof sopUid === "string" ? unmatched : unnamedFailures).push(outcome);
  };
  for (const item of sequence(dataset, "00081199")) place(item, { kind: "stored" });
  for (const item of sequence(dataset, "00081198")) {
    const { code, reason } = failureText(item);
    place(item, code === 0x0111 ? { kind: "rejected" } : { kind: "failed", reason });
  }
  const leftovers = [...unnamedFailures, ...unmatched];
  const order = [...files.keys()].sort((a, b) => Number(files[a]?.sopUid !== undefined) - Number(files[b]?.sopUid !== undefined));
  for (const i of order) {
    if (outcomes[i] !== undefined) continue;
    outcomes[i] = leftovers.shift() ?? { kind: "failed", reason: "the server's STOW response does not mention this instance" };
  }
  return outcomes as Outcome[];
}

/** The reason a whole request failed, from the server's answer. */
function requestFailure(status: number, statusText: string, text: string): string {
  let detail = text.trim();
  try {
    const json = JSON.parse(text) as { message?: unknown; error?: unknown };
    if (typeof json.message === "string") detail = json.message;
    else if (typeof json.error === "string") detail = json.error;
  } catch {
    // Not JSON: the text itself, shortened.
  }
  if (detail.length > 300) detail = `${detail.slice(0, 300)}…`;
  return `the server answered HTTP ${status} ${statusText}${detail ? `: ${detail}` : ""}`;
}

function networkFailure(err: unknown): string {
  const cause = (err as { cause?: { message?: string; code?: string } }).cause;
  return `cannot reach the server: ${cause?.message ?? (err as Error).message}`;
}

export interface StowClientOptions {
  /** DICOMweb root, e.g. http://127.0.0.1:8042/dicomweb. */
  url: string;
  /** Called with each chunk's size as the body is sent (progress). */
  onBytes?: (n: number) => void;
}

/** multipart/related body: one application/dicom part per file, each read only when its turn comes. */
async function* multipartBody(files: BatchFile[], boundary: string, onBytes?: (n: number) => void): AsyncGenerator<Uint8Array> {
  for (const file of files) {
    yield Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`);
    try {
      for await (const chunk of await file.item.open()) {
        onBytes?.((chunk as Buffer).length);
        yield chunk as Buffer;
      }
    } catch (err) {
      throw new ItemReadError(file, err);
    }
    yield Buffer.from("\r\n");
  }
  yield Buffer.from(`--${boundary}--\r\n`);
}

/**
 * Sends one batch. A file that cannot be read mid-request gets its own failure and the batch is
 * sent again without it; any other problem fails every file of the batch with the same reason.
 */
/** Times one batch is sent again after a 429 / 503 with Retry-After. */
const MAX_BUSY_RETRIES = 5;

export async function sendBatch(files: BatchFile[], options: StowClientOptions): Promise<Outcome[]> {
  const outcomes = new Map<BatchFile, Outcome>();
  let pending = files;
  let busyRetries = 0;
  while (pending.length > 0) {
    const boundary = `voxelgate-${randomBytes(16).toString("hex")}`;
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${options.url.replace(/\/+$/, "")}/studies`, {
        method: "POST",
        headers: {
          "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}`,
          accept: "application/dicom+json",
        },
        body: multipartBody(pending, boundary, options.onBytes),
        duplex: "half",
      });
      text = await response.text();
    } catch (err) {
      const unreadable = err instanceof ItemReadError ? err : (err as { cause?: unknown }).cause;
      if (unreadable instanceof ItemReadError) {
        outcomes.set(unreadable.file, { kind: "failed", reason: `cannot read the file: ${(unreadable.cause as Error).message}` });
        pending = pending.filter((f) => f !== unreadable.file);
        continue;
      }
      const reason = networkFailure(err);
      for (const f of pending) outcomes.set(f, { kind: "failed", reason });
      break;
    }
    // The server's limits (429 rate limit, 503 busy) say when to come back: wait and send the batch again.
    const retryAfter = Number(response.headers.get("retry-after"));
    if ((response.status === 429 || response.status === 503) && retryAfter > 0 && busyRetries < MAX_BUSY_RETRIES) {
      busyRetries++;
      await new Promise((resolve) => setTimeout(resolve, Math.min(retryAfter, 60) * 1000));
      continue;
    }
    let results: Outcome[] | undefined;
    let reason = requestFailure(response.status, response.statusText, text);
    if (response.status === 200 || response.status === 202 || response.status === 409) {
      try {
        results = outcomesFromResponse(pending, JSON.parse(text));
      } catch (err) {
        reason = `${reason} (unreadable STOW response: ${(err as Error).message})`;
      }
    }
    pending.forEach((f, i) => outcomes.set(f, results?.[i] ?? { kind: "failed", reason }));
    break;
  }
  return files.map((f) => outcomes.get(f) ?? { kind: "failed", reason: "not sent" });
}

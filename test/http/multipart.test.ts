import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import {
  MultipartError,
  MultipartParser,
  type MultipartLimits,
  parseMultipartRelated,
  type Part,
  readParts,
} from "../../src/http/multipart.js";

const B = "XyZ-boundary_0123";
const CT = `multipart/related; type="application/dicom"; boundary=${B}`;
const md5 = (data: Uint8Array): string => createHash("md5").update(data).digest("hex");

interface BuiltPart {
  headers?: string[];
  body: Buffer;
}

function buildBody(
  parts: BuiltPart[],
  opts: { boundary?: string; preamble?: string; epilogue?: string; leadingCrlf?: boolean; close?: boolean } = {},
): Buffer {
  const boundary = opts.boundary ?? B;
  const out: Buffer[] = [];
  if (opts.preamble !== undefined) out.push(Buffer.from(`${opts.preamble}\r\n`));
  else if (opts.leadingCrlf) out.push(Buffer.from("\r\n"));
  parts.forEach((p, i) => {
    const headers = p.headers ?? ["Content-Type: application/dicom"];
    out.push(Buffer.from(`${i > 0 ? "\r\n" : ""}--${boundary}\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n`), p.body);
  });
  if (opts.close !== false) out.push(Buffer.from(`\r\n--${boundary}--`));
  if (opts.epilogue !== undefined) out.push(Buffer.from(opts.epilogue));
  return Buffer.concat(out);
}

/** A byte stream that hands out `buf` in chunks of `size` (fresh copies, like a socket), optionally ending late. */
function chunked(buf: Buffer, size: number, endDelayMs = 0): Readable {
  let offset = 0;
  return new Readable({
    read() {
      if (offset >= buf.length) {
        if (endDelayMs > 0) setTimeout(() => this.push(null), endDelayMs);
        else this.push(null);
        return;
      }
      this.push(Buffer.from(buf.subarray(offset, offset + size)));
      offset += size;
    },
  });
}

interface Collected {
  index: number;
  headers: Record<string, string>;
  contentType: string;
  mediaType: string;
  contentLocation: string | undefined;
  contentId: string | undefined;
  data: Buffer;
}

async function collect(body: Readable, contentType = CT, limits?: MultipartLimits): Promise<Collected[]> {
  const out: Collected[] = [];
  for await (const part of readParts(body, contentType, limits)) {
    const chunks: Buffer[] = [];
    for await (const chunk of part.stream) chunks.push(chunk as Buffer);
    out.push({
      index: part.index,
      headers: { ...part.headers },
      contentType: part.contentType,
      mediaType: part.mediaType,
      contentLocation: part.contentLocation,
      contentId: part.contentId,
      data: Buffer.concat(chunks),
    });
  }
  return out;
}

/** Runs `fn` and returns the MultipartError it rejects with (fails if it resolves or throws something else). */
async function rejection(fn: () => Promise<unknown>): Promise<MultipartError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof MultipartError, `expected a MultipartError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a MultipartError");
}

// Data that looks like delimiters but is not: the parser must hand every byte through.
const tricky = Buffer.concat([
  Buffer.from(`\r\n--${B}x not a delimiter\r\n--${B.slice(0, 5)}\r\r\n-\r\n--\r\n--${B}-y\r\n--${B} \tz\r\n--${B}\rQ\r\n--${B} \r-`),
  randomBytes(3000),
  Buffer.from(`--${B}\r\n`), // boundary at the start of a line but without the CRLF before it
  Buffer.from("ends with CRLF\r\n"),
]);

test("parseMultipartRelated: quoted and unquoted values, case-insensitive names, RFC 2387 parameters", () => {
  assert.deepEqual(parseMultipartRelated('multipart/related; type="application/dicom"; boundary="a b:c"').boundary, "a b:c");
  const p = parseMultipartRelated(
    'Multipart/Related;TYPE=application/dicom ; Boundary=abc123 ; start="<root@x>"; start-info="-o ps"; transfer-syntax=1.2.840.10008.1.2.1',
  );
  assert.equal(p.boundary, "abc123");
  assert.equal(p.type, "application/dicom");
  assert.equal(p.start, "<root@x>");
  assert.equal(p.startInfo, "-o ps");
  assert.equal(p.params["transfer-syntax"], "1.2.840.10008.1.2.1");
  assert.equal(parseMultipartRelated('multipart/related; boundary="a\\:b"').boundary, "a:b"); // quoted-pair
  assert.equal(parseMultipartRelated("multipart/related; boundary=abc").type, undefined);
});

test("parseMultipartRelated: clear errors with HTTP statuses", () => {
  const cases: Array<[string | undefined, number, string, RegExp]> = [
    [undefined, 415, "NOT_MULTIPART_RELATED", /missing Content-Type/],
    ["application/dicom", 415, "NOT_MULTIPART_RELATED", /application\/dicom, expected multipart\/related/],
    ["multipart/form-data; boundary=x", 415, "NOT_MULTIPART_RELATED", /multipart\/form-data/],
    ['multipart/related; type="application/dicom"', 400, "MISSING_BOUNDARY", /missing boundary parameter/],
    ["multipart/related; boundary=a; boundary=b", 400, "INVALID_BOUNDARY", /more than once/],
    ['multipart/related; boundary=""', 400, "INVALID_BOUNDARY", /empty/],
    [`multipart/related; boundary=${"x".repeat(201)}`, 400, "INVALID_BOUNDARY", /longer than 200/],
    ['multipart/related; boundary="a\\"b"', 400, "INVALID_BOUNDARY", /characters RFC 2046 does not allow/],
    ['multipart/related; boundary="trailing "', 400, "INVALID_BOUNDARY", /characters/],
    ['multipart/related; boundary="unterminated', 400, "BAD_CONTENT_TYPE", /unterminated/],
    ["multipart", 400, "BAD_CONTENT_TYPE", /malformed media type/],
  ];
  for (const [header, status, code, message] of cases) {
    assert.throws(
      () => parseMultipartRelated(header),
      (err: unknown) => err instanceof MultipartError && err.statusCode === status && err.code === code && message.test(err.message),
      String(header),
    );
  }
});

test("every chunking gives the same parts: 1-byte, small primes, 997-byte and whole bodies", async () => {
  const parts: BuiltPart[] = [
    { body: Buffer.concat([tricky, randomBytes(5000)]), headers: ["Content-Type: application/dicom", "Content-Location: /a/1"] },
    { body: Buffer.alloc(0), headers: ["Content-Type: application/dicom"] },
    { body: Buffer.from("\r\n"), headers: ["Content-Type: text/plain"] },
    { body: randomBytes(20_000) },
  ];
  const body = buildBody(parts, { preamble: `preamble line\r\n--${B}x not yet`, epilogue: `\r\nepilogue\r\n--${B}\r\nnot a part\r\n` });
  for (const size of [1, 2, 3, 5, 7, 13, 64, 997, 65536, body.length]) {
    const got = await collect(chunked(body, size));
    assert.equal(got.length, parts.length, `chunk size ${size}`);
    got.forEach((g, i) => assert.equal(md5(g.data), md5((parts[i] as BuiltPart).body), `chunk size ${size}, part ${i}`));
    assert.equal(got[0]?.contentLocation, "/a/1");
    assert.equal(got[2]?.data.toString(), "\r\n");
  }
});

test("a split at every byte position of a small body gives the same parts", async () => {
  const body = buildBody(
    [{ body: Buffer.from(`A\r\n--${B}B\r\n`), headers: ["Content-Type: a/b", "X-Folded: one", " two"] }, { body: Buffer.from("C") }],
    {
      preamble: "pre",
      epilogue: "\r\nepi",
    },
  );
  for (let cut = 0; cut <= body.length; cut++) {
    const got = await collect(Readable.from([body.subarray(0, cut), body.subarray(cut)]));
    assert.deepEqual(
      got.map((g) => [g.data.toString(), g.headers["x-folded"] ?? null]),
      [
        [`A\r\n--${B}B\r\n`, "one two"],
        ["C", null],
      ],
      `cut at ${cut}`,
    );
  }
});

test("hostile input: a part made of near-delimiters parses in linear time", async () => {
  const unit = Buffer.from(`\r\n--${B}x\r\n--${B}-\r\n--${B} \r-`);
  const data = Buffer.concat(Array.from({ length: Math.ceil((10 << 20) / unit.length) }, () => unit));
  const started = performance.now();
  const [part] = await collect(chunked(buildBody([{ body: data }]), 1 << 20));
  const ms = performance.now() - started;
  assert.equal(part?.data.length, data.length);
  assert.equal(md5(part.data), md5(data));
  assert.ok(ms < 3000, `took ${ms.toFixed(0)} ms`);
});

test("MultipartParser (push API) emits views into the input and finds the close", () => {
  const events: string[] = [];
  const parser = new MultipartParser(B, {
    partBegin: (h) => events.push(`begin ${h["content-type"]}`),
    partData: (d) => events.push(`data ${d.toString()}`),
    partEnd: () => events.push("end"),
    done: () => events.push("done"),
  });
  parser.write(buildBody([{ body: Buffer.from("hello") }], { epilogue: "\r\n" }));
  parser.end();
  assert.deepEqual(events, ["begin application/dicom", "data hello", "end", "done"]);
  assert.equal(parser.partCount, 1);
  assert.equal(parser.complete, true);
});

test("CRLF handling: leading CRLF (dicomweb-client), no CRLF after the close, transport padding, bare parts", async () => {
  // dicomweb-client's encoder starts with CRLF and ends with "--B--" (no CRLF).
  const dwc = Buffer.from(
    `\r\n--${B}\r\nContent-Type: application/dicom\r\n\r\nONE\r\n--${B}\r\nContent-Type: application/dicom\r\n\r\nTWO\r\n--${B}--`,
  );
  assert.deepEqual(
    (await collect(chunked(dwc, 4))).map((p) => p.data.toString()),
    ["ONE", "TWO"],
  );
  // Transport padding after the boundary (RFC 2046 LWSP) and a part with no headers at all.
  const padded = Buffer.from(`--${B} \t \r\n\r\nbare\r\n--${B}\t\r\nContent-Type: a/b\r\n\r\nX\r\n--${B}--  \r\n`);
  const got = await collect(chunked(padded, 3));
  assert.deepEqual(
    got.map((p) => [p.data.toString(), p.headers["content-type"] ?? null, p.contentType]),
    [
      ["bare", null, "application/dicom"], // no Content-Type: the multipart type parameter (RFC 2387 root)
      ["X", "a/b", "a/b"],
    ],
  );
  // Without a type parameter an untyped part is text/plain (RFC 2046 §5.1).
  assert.equal((await collect(chunked(padded, 64), `multipart/related; boundary=${B}`))[0]?.contentType, "text/plain");
});

test("part headers: lower-cased names, repeated headers joined, Content-ID, media type without parameters", async () => {
  const body = buildBody([
    {
      headers: [
        "CONTENT-TYPE: Application/DICOM; transfer-syntax=1.2.840.10008.1.2.4.50",
        "Content-ID: <p1@x>",
        "X-A: 1",
        "x-a: 2",
        "content-location:   /x  ",
      ],
      body: Buffer.from("z"),
    },
  ]);
  const [part] = await collect(chunked(body, 5));
  assert.ok(part);
  assert.equal(part.contentType, "Application/DICOM; transfer-syntax=1.2.840.10008.1.2.4.50");
  assert.equal(part.mediaType, "application/dicom");
  assert.equal(part.contentId, "<p1@x>");
  assert.equal(part.contentLocation, "/x");
  assert.equal(part.headers["x-a"], "1, 2");
  assert.deepEqual(Object.keys(part.headers).sort(), ["content-id", "content-location", "content-type", "x-a"]);
});

test("malformed and oversized part headers are 400", async () => {
  const bad = await rejection(() => collect(chunked(buildBody([{ headers: ["no colon here"], body: Buffer.from("x") }]), 997)));
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.code, "BAD_PART_HEADERS");
  assert.match(bad.message, /part 0: malformed header line "no colon here"/);
  const big = await rejection(() =>
    collect(chunked(buildBody([{ headers: [`X-Big: ${"a".repeat(20_000)}`], body: Buffer.from("x") }]), 1000)),
  );
  assert.equal(big.statusCode, 400);
  assert.equal(big.code, "PART_HEADERS_TOO_LARGE");
  // Exactly at the limit is fine; one byte more is not.
  const line = (n: number) => `X: ${"b".repeat(n - 5)}`; // + CRLF = n bytes
  assert.equal(
    (await collect(chunked(buildBody([{ headers: [line(100)], body: Buffer.from("x") }]), 7), CT, { maxHeaderBytes: 100 })).length,
    1,
  );
  const over = await rejection(() =>
    collect(chunked(buildBody([{ headers: [line(101)], body: Buffer.from("x") }]), 7), CT, { maxHeaderBytes: 100 }),
  );
  assert.equal(over.code, "PART_HEADERS_TOO_LARGE");
});

test("a truncated body fails the part being read and the iterator", async () => {
  const full = buildBody([{ body: Buffer.from("first part") }, { body: randomBytes(50_000) }]);
  const cuts: Array<[number, string[]]> = [
    [full.length - `\r\n--${B}--`.length + 3, ["ok 0", "failed 1: TRUNCATED"]], // inside the closing delimiter
    [full.length - 100, ["ok 0", "failed 1: TRUNCATED"]], // inside the second part's body
    [full.indexOf(`\r\n--${B}\r\n`) + 4, ["failed 0: TRUNCATED"]], // inside the delimiter after part 0
  ];
  for (const [cut, expected] of cuts) {
    const received: string[] = [];
    const err = await rejection(async () => {
      // A small highWaterMark keeps the parser from running ahead of the consumer.
      // The end arrives late, as from a socket, so the consumer is reading the cut part by then.
      for await (const part of readParts(chunked(full.subarray(0, cut), 997, 30), CT, { highWaterMark: 4096 })) {
        await new Promise((resolve) => setTimeout(resolve, 5)); // the consumer starts late
        const sink = new Writable({ write: (_c, _e, cb) => cb() });
        try {
          await pipeline(part.stream, sink);
          received.push(`ok ${part.index}`);
        } catch (e) {
          received.push(`failed ${part.index}: ${(e as MultipartError).code}`);
        }
      }
    });
    assert.equal(err.statusCode, 400);
    assert.equal(err.code, "TRUNCATED");
    assert.equal(err.message, "multipart body ended before the closing boundary (truncated upload?)");
    assert.deepEqual(received, expected, `cut at ${cut}`);
  }
  // A cut part nobody was reading yet is never handed out as if it were whole.
  const quick: string[] = [];
  await rejection(async () => {
    for await (const part of readParts(chunked(full.subarray(0, full.length - 100), 1 << 20), CT)) {
      await pipeline(part.stream, new Writable({ write: (_c, _e, cb) => cb() })).then(
        () => quick.push(`ok ${part.index}`),
        () => quick.push(`failed ${part.index}`),
      );
    }
  });
  assert.equal(quick.includes("ok 1"), false, quick.join(", "));
  // Cut after a complete delimiter line / inside part headers: earlier parts are whole, then the error.
  for (const tail of [`\r\n--${B}\r\n`, `\r\n--${B}\r\nContent-Ty`]) {
    const body = Buffer.concat([buildBody([{ body: Buffer.from("whole") }], { close: false }), Buffer.from(tail)]);
    const seen: string[] = [];
    const err = await rejection(async () => {
      for await (const part of readParts(chunked(body, 2), CT)) {
        const chunks: Buffer[] = [];
        for await (const c of part.stream) chunks.push(c as Buffer);
        seen.push(Buffer.concat(chunks).toString());
      }
    });
    assert.equal(err.code, "TRUNCATED");
    assert.deepEqual(seen, ["whole"]);
  }
});

test("wrong boundary, empty body, closing boundary only", async () => {
  const other = buildBody([{ body: Buffer.from("x") }], { boundary: "another" });
  const wrong = await rejection(() => collect(chunked(other, 997)));
  assert.equal(wrong.statusCode, 400);
  assert.equal(wrong.code, "NO_PARTS");
  assert.equal(wrong.message, "no part found: is the boundary in the Content-Type header the one used in the body?");
  const empty = await rejection(() => collect(chunked(Buffer.alloc(0), 997)));
  assert.equal(empty.code, "EMPTY_BODY");
  assert.match(empty.message, /request body is empty/);
  const closeOnly = await rejection(() => collect(chunked(Buffer.from(`--${B}--\r\n`), 997)));
  assert.equal(closeOnly.code, "NO_PARTS");
  assert.match(closeOnly.message, /closing boundary but no parts/);
  // A bad Content-Type rejects on the first next() without touching the body.
  const src = chunked(other, 997);
  const bad = await rejection(() => collect(src, "multipart/related"));
  assert.equal(bad.code, "MISSING_BOUNDARY");
  assert.equal(src.readableFlowing, null);
});

test("many parts in order; limits on part count, part size and total size are 413", async () => {
  const parts = Array.from({ length: 3000 }, (_, i) => ({
    headers: [`Content-Type: application/dicom`, `Content-Location: /i/${i}`],
    body: Buffer.from(`part ${i}`),
  }));
  const body = buildBody(parts);
  const got = await collect(chunked(body, 997));
  assert.equal(got.length, 3000);
  got.forEach((g, i) => {
    assert.equal(g.index, i);
    assert.equal(g.contentLocation, `/i/${i}`);
    assert.equal(g.data.toString(), `part ${i}`);
  });
  const tooMany = await rejection(() => collect(chunked(body, 997), CT, { maxParts: 2999 }));
  assert.equal(tooMany.statusCode, 413);
  assert.equal(tooMany.code, "TOO_MANY_PARTS");
  assert.match(tooMany.message, /more than 2999 parts/);

  const big = buildBody([{ body: randomBytes(1000) }, { body: randomBytes(5000) }]);
  const partErrors: string[] = [];
  const tooBig = await rejection(async () => {
    for await (const part of readParts(chunked(big, 512), CT, { maxPartBytes: 4000, highWaterMark: 1024 })) {
      part.stream.on("error", (e) => partErrors.push(`${part.index} ${(e as MultipartError).code}`));
      part.stream.resume();
      await new Promise((resolve) => part.stream.once("close", resolve));
    }
  });
  assert.equal(tooBig.statusCode, 413);
  assert.equal(tooBig.code, "PART_TOO_LARGE");
  assert.deepEqual(partErrors, ["1 PART_TOO_LARGE"]);
  const total = await rejection(() => collect(chunked(big, 512), CT, { maxTotalBytes: 3000 }));
  assert.equal(total.statusCode, 413);
  assert.equal(total.code, "BODY_TOO_LARGE");
});

test("unread parts are drained when the iterator moves on; a destroyed part does not stall the request", async () => {
  const parts = [{ body: randomBytes(3 << 20) }, { body: randomBytes(1 << 20) }, { body: Buffer.from("last") }];
  const body = buildBody(parts);
  const seen: Array<[number, string]> = [];
  let destroyedOne = false;
  for await (const part of readParts(chunked(body, 65536), CT, { highWaterMark: 64 * 1024 })) {
    if (part.index === 0) continue; // never read: drained automatically
    if (part.index === 1) {
      // Read a little, then give up on it.
      await new Promise((resolve) => part.stream.once("readable", resolve));
      part.stream.read();
      part.stream.destroy();
      destroyedOne = true;
      continue;
    }
    const chunks: Buffer[] = [];
    for await (const c of part.stream) chunks.push(c as Buffer);
    seen.push([part.index, Buffer.concat(chunks).toString()]);
  }
  assert.equal(destroyedOne, true);
  assert.deepEqual(seen, [[2, "last"]]);
});

test("stopping early leaves the body paused and readable by someone else", async () => {
  const body = buildBody([{ body: randomBytes(1 << 20) }, { body: randomBytes(1 << 20) }]);
  const src = chunked(body, 16 * 1024);
  for await (const part of readParts(src, CT, { highWaterMark: 16 * 1024 })) {
    assert.equal(part.index, 0);
    break;
  }
  assert.equal(src.destroyed, false);
  assert.equal(src.isPaused(), true);
  assert.equal(src.listenerCount("data"), 0);
  let rest = 0;
  for await (const c of src) rest += (c as Buffer).length;
  assert.ok(rest > 0 && rest < body.length, `rest ${rest}`);
});

test("300 MB through the parser with a slow consumer: bounded buffering and RSS", async () => {
  const partSize = 100 * 1024 * 1024;
  const nParts = 3;
  const chunkSize = 64 * 1024;
  const highWaterMark = 256 * 1024;
  const pattern = randomBytes(chunkSize);
  const expected: string[] = [];
  // Body generated on demand, fresh buffers as a socket would give.
  const pieces: Array<() => Buffer> = [];
  for (let p = 0; p < nParts; p++) {
    const hash = createHash("md5");
    pieces.push(() => Buffer.from(`${p > 0 ? "\r\n" : ""}--${B}\r\nContent-Type: application/dicom\r\n\r\n`));
    for (let off = 0; off < partSize; off += chunkSize) {
      const n = Math.min(chunkSize, partSize - off);
      const make = (): Buffer => {
        const c = Buffer.allocUnsafe(n);
        pattern.copy(c, 0, 0, n);
        c.writeUInt32BE(p * 100_000 + off / chunkSize, 0);
        return c;
      };
      hash.update(make());
      pieces.push(make);
    }
    expected.push(hash.digest("hex"));
  }
  pieces.push(() => Buffer.from(`\r\n--${B}--\r\n`));
  let next = 0;
  let sourceMax = 0;
  const source = new Readable({
    highWaterMark: chunkSize,
    read() {
      const make = pieces[next++];
      this.push(make ? make() : null);
    },
  });
  const rss0 = process.memoryUsage().rss;
  let rssMax = rss0;
  let partMax = 0;
  const got: string[] = [];
  for await (const part of readParts(source, CT, { highWaterMark })) {
    const hash = createHash("md5");
    let writes = 0;
    await pipeline(
      part.stream,
      new Writable({
        highWaterMark: chunkSize,
        write(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          partMax = Math.max(partMax, part.stream.readableLength);
          sourceMax = Math.max(sourceMax, source.readableLength);
          if (++writes % 64 === 0) rssMax = Math.max(rssMax, process.memoryUsage().rss);
          if (writes % 4 === 0)
            setTimeout(cb, 1); // slow: the producer is always ready, the consumer is not
          else cb();
        },
      }),
    );
    got.push(hash.digest("hex"));
  }
  assert.deepEqual(got, expected);
  // Buffering is bounded by the part stream's highWaterMark plus one input chunk.
  assert.ok(partMax <= highWaterMark + chunkSize, `part stream held ${partMax} bytes`);
  assert.ok(sourceMax <= 2 * chunkSize, `request stream held ${sourceMax} bytes`);
  const growth = (rssMax - rss0) / 1024 / 1024;
  assert.ok(growth < 120, `RSS grew by ${growth.toFixed(0)} MB for a 300 MB body`);
});

test("real HTTP: an upload cut by the client fails the part being stored; the server keeps running", async () => {
  const outcome: { partError?: string; iteratorError?: string; bytes: number } = { bytes: 0 };
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        for await (const part of readParts(req, req.headers["content-type"])) {
          await pipeline(
            part.stream,
            new Writable({
              write: (c: Buffer, _e, cb) => {
                outcome.bytes += c.length;
                cb();
              },
            }),
          ).catch((e: MultipartError) => (outcome.partError = e.code));
        }
      } catch (e) {
        outcome.iteratorError = (e as MultipartError).code;
      }
      res.destroy();
      finish();
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const req = http.request({ port, method: "POST", headers: { "content-type": CT, "content-length": "100000000" } });
    req.on("error", () => {});
    req.write(`--${B}\r\nContent-Type: application/dicom\r\n\r\n`);
    req.write(randomBytes(1 << 20));
    await new Promise((resolve) => setTimeout(resolve, 100));
    req.destroy();
    await finished;
  } finally {
    server.close();
  }
  assert.ok(outcome.bytes > 0, "some bytes arrived before the cut");
  assert.ok(outcome.partError === "TRUNCATED" || outcome.partError === "ABORTED", `part error ${outcome.partError}`);
  assert.equal(outcome.iteratorError, outcome.partError);
});

test("Part objects carry what STOW needs", async () => {
  const parts: Part[] = [];
  for await (const part of readParts(chunked(buildBody([{ body: Buffer.from("x") }]), 997), CT)) {
    parts.push(part);
    part.stream.resume();
  }
  assert.equal(parts.length, 1);
  assert.equal(parts[0]?.mediaType, "application/dicom");
  assert.equal(typeof parts[0]?.stream.pipe, "function");
});

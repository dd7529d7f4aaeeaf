import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { parseMediaType } from "../../src/http/accept.js";
import { readParts } from "../../src/http/multipart.js";
import {
  createBoundary,
  multipartRelatedContentType,
  multipartRelatedStream,
  type ResponsePart,
} from "../../src/http/multipart-response.js";

const md5 = (data: Uint8Array): string => createHash("md5").update(data).digest("hex");

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A Readable of `size` bytes made on demand in `chunk`-byte pieces, counting what it produced. */
function lazyBody(size: number, seed: number, counter: { produced: number }, chunk = 64 * 1024): Readable {
  let offset = 0;
  return new Readable({
    highWaterMark: chunk,
    read() {
      if (offset >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(chunk, size - offset);
      const buf = Buffer.alloc(n, seed & 0xff);
      buf.writeUInt32BE(offset / chunk, 0);
      offset += n;
      counter.produced += n;
      this.push(buf);
    },
  });
}

test("createBoundary: random RFC 2046 boundaries that need no quoting", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const b = createBoundary();
    assert.match(b, /^[0-9A-Za-z-]{1,70}$/);
    seen.add(b);
  }
  assert.equal(seen.size, 100);
});

test("multipartRelatedContentType: type quoted, extra parameters, boundary last; round trip through the parser", () => {
  assert.equal(multipartRelatedContentType("abc", "application/dicom"), 'multipart/related; type="application/dicom"; boundary=abc');
  const value = multipartRelatedContentType("b-1", "application/dicom", { "transfer-syntax": "1.2.840.10008.1.2.4.50" });
  assert.equal(value, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50; boundary=b-1');
  assert.equal(
    multipartRelatedContentType("b c", "image/jpeg", { "transfer-syntax": "*" }),
    'multipart/related; type="image/jpeg"; transfer-syntax=*; boundary="b c"',
  );
  const parsed = parseMediaType(multipartRelatedContentType("x:y", 'odd/"type"', { note: "a;b" }));
  assert.deepEqual({ ...parsed.params }, { type: 'odd/"type"', note: "a;b", boundary: "x:y" });
  assert.throws(() => multipartRelatedContentType("", "application/dicom"), /invalid multipart boundary/);
  assert.throws(() => multipartRelatedContentType("x".repeat(71), "application/dicom"), /invalid multipart boundary/);
  assert.throws(() => multipartRelatedContentType("abc", "application/dicom", { Boundary: "zzz" }), /set by multipartRelatedContentType/);
  assert.throws(() => multipartRelatedContentType("abc", "application/dicom\r\nX: y"), /CR, LF or NUL/);
});

test("multipartRelatedStream writes the exact RFC 2046 layout", async () => {
  const body = await drain(
    multipartRelatedStream(
      [
        { body: Buffer.from("abc") },
        {
          contentType: "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
          headers: { "Content-Location": "/x/1", "X-Empty": "" },
          body: Readable.from([Buffer.from("de"), "f"]),
        },
        { headers: { "content-type": "text/plain" }, body: new Uint8Array(0) },
      ],
      { boundary: "BB", contentType: "application/dicom" },
    ),
  );
  assert.equal(
    body.toString(),
    "--BB\r\nContent-Type: application/dicom\r\n\r\nabc" +
      "\r\n--BB\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\nContent-Location: /x/1\r\nX-Empty: \r\n\r\ndef" +
      "\r\n--BB\r\nContent-Type: text/plain\r\n\r\n" +
      "\r\n--BB--\r\n",
  );
  // No parts: just the closing delimiter.
  assert.equal((await drain(multipartRelatedStream([], { boundary: "BB", contentType: "application/dicom" }))).toString(), "--BB--\r\n");
});

test("header injection and bad arguments are refused", async () => {
  assert.throws(() => multipartRelatedStream([], { boundary: "a\r\nb", contentType: "application/dicom" }), /invalid multipart boundary/);
  assert.throws(() => multipartRelatedStream([], { boundary: "ok", contentType: "a/b\r\nX: 1" }), /CR, LF or NUL/);
  const bad: ResponsePart[][] = [
    [{ headers: { "Content-Location": "x\r\nSet-Cookie: y" }, body: Buffer.from("1") }],
    [{ headers: { "Bad Name": "v" }, body: Buffer.from("1") }],
    [{ contentType: "a/b\nc", body: Buffer.from("1") }],
  ];
  for (const parts of bad) {
    await assert.rejects(drain(multipartRelatedStream(parts, { boundary: "ok", contentType: "application/dicom" })), TypeError);
  }
});

test("round trip writer -> parser: MD5 of every part, mixed Buffer/stream bodies, re-chunked at 997 bytes", async () => {
  const boundary = createBoundary();
  const originals = [
    randomBytes(530_000),
    randomBytes(1),
    Buffer.alloc(0),
    randomBytes(127_000),
    Buffer.from(`\r\n--${boundary.slice(0, 20)}\r\n--`),
    randomBytes(2_000_000),
  ];
  const parts = function* (): Generator<ResponsePart> {
    for (const [i, data] of originals.entries()) {
      const body =
        i % 2 === 0
          ? data
          : Readable.from(Array.from({ length: Math.ceil(data.length / 4096) }, (_, k) => data.subarray(k * 4096, (k + 1) * 4096)));
      yield { headers: { "Content-Location": `/i/${i}` }, body };
    }
  };
  const wire = await drain(multipartRelatedStream(parts(), { boundary, contentType: "application/dicom" }));
  const chunks = Array.from({ length: Math.ceil(wire.length / 997) }, (_, k) => wire.subarray(k * 997, (k + 1) * 997));
  const got: Array<[string, string | undefined, string]> = [];
  for await (const part of readParts(Readable.from(chunks), multipartRelatedContentType(boundary, "application/dicom"))) {
    got.push([part.contentType, part.contentLocation, md5(await drain(part.stream))]);
  }
  assert.deepEqual(
    got,
    originals.map((d, i) => ["application/dicom", `/i/${i}`, md5(d)]),
  );
});

test("backpressure: parts and their bytes are pulled only as fast as the reader takes them", async () => {
  const partSize = 32 * 1024 * 1024;
  const counter = { produced: 0 };
  let partsStarted = 0;
  async function* parts(): AsyncGenerator<ResponsePart> {
    for (let i = 0; i < 1000; i++) {
      partsStarted++;
      yield { body: lazyBody(partSize, i, counter) }; // 32 GB if all were made
    }
  }
  const stream = multipartRelatedStream(parts(), { boundary: "lazy", contentType: "application/octet-stream" });
  let consumed = 0;
  let maxAhead = 0;
  const rss0 = process.memoryUsage().rss;
  await new Promise<void>((resolve, reject) => {
    const sink = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _e, cb) {
        consumed += chunk.length;
        maxAhead = Math.max(maxAhead, counter.produced - consumed);
        if (consumed > 96 * 1024 * 1024) {
          stream.destroy(); // the client goes away after ~96 MB
          resolve();
        }
        setImmediate(cb); // a slow reader
      },
    });
    stream.on("error", reject);
    stream.pipe(sink);
  });
  const growth = (process.memoryUsage().rss - rss0) / 1024 / 1024;
  assert.ok(partsStarted <= 4, `${partsStarted} parts started for ~96 MB read`);
  assert.ok(maxAhead < 1024 * 1024, `writer ran ${maxAhead} bytes ahead of the reader`);
  assert.ok(growth < 100, `RSS grew ${growth.toFixed(0)} MB`);
});

test("a part that fails mid-way destroys the response: no closing delimiter is sent", async () => {
  let secondDestroyed = false;
  async function* parts(): AsyncGenerator<ResponsePart> {
    yield { body: Buffer.from("first") };
    const failing = new Readable({
      read() {
        this.push(Buffer.from("partial"));
        this.destroy(new Error("disk read failed"));
      },
    });
    yield { body: failing };
    const never = new Readable({ read() {} });
    never.on("close", () => (secondDestroyed = true));
    yield { body: never };
  }
  const received: Buffer[] = [];
  const stream = multipartRelatedStream(parts(), { boundary: "E", contentType: "application/dicom" });
  await assert.rejects(
    (async () => {
      for await (const c of stream) received.push(c as Buffer);
    })(),
    /disk read failed/,
  );
  const text = Buffer.concat(received).toString();
  assert.match(text, /first/);
  assert.doesNotMatch(text, /--E--/);
  assert.equal(secondDestroyed, false, "the part after the failure was never started");
});

test("when the reader goes away, the current part's stream and the parts generator are closed", async () => {
  let finallyRan = false;
  const body = new Readable({
    read() {
      this.push(Buffer.alloc(64 * 1024, 1));
    },
  });
  async function* parts(): AsyncGenerator<ResponsePart> {
    try {
      yield { body };
      yield { body: Buffer.from("never") };
    } finally {
      finallyRan = true;
    }
  }
  const stream = multipartRelatedStream(parts(), { boundary: "gone", contentType: "application/dicom" });
  for await (const chunk of stream) {
    assert.ok((chunk as Buffer).length > 0);
    break; // destroys the stream
  }
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(body.destroyed, true);
  assert.equal(finallyRan, true);
});

test("over real HTTP: a multipart response parsed by readParts on the client, MD5 equal", async () => {
  const originals = Array.from({ length: 5 }, (_, i) => randomBytes(200_000 * (i + 1)));
  const boundary = createBoundary();
  const server = http.createServer((_req, res) => {
    res.setHeader("Content-Type", multipartRelatedContentType(boundary, "application/dicom", { "transfer-syntax": "1.2.840.10008.1.2.1" }));
    void pipeline(
      multipartRelatedStream(
        originals.map((d) => ({ body: Readable.from([d]) })),
        { boundary, contentType: "application/dicom" },
      ),
      res,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const res = await new Promise<http.IncomingMessage>((resolve) => http.get({ port }, resolve));
    const type = parseMediaType(res.headers["content-type"] ?? "");
    assert.equal(type.params["transfer-syntax"], "1.2.840.10008.1.2.1");
    const hashes: string[] = [];
    for await (const part of readParts(res, res.headers["content-type"])) hashes.push(md5(await drain(part.stream)));
    assert.deepEqual(hashes, originals.map(md5));
  } finally {
    server.close();
  }
});

/**
 * The ceiling for frame serving: node:http + fs.createReadStream of files holding exactly the
 * frame bytes, no parsing, no multipart, no index (what nginx's static serving does, in node).
 * Run as its own process by bench/peers/static.ts: `node static-server.js DIR`; prints
 * "static server listening on http://127.0.0.1:PORT/" and serves DIR/<name> as octet-stream.
 */
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

const root = process.argv[2];
if (!root) throw new Error("usage: static-server.js DIR");

const server = createServer((req, res) => {
  const name = (req.url ?? "/").slice(1);
  if (!/^[\w.-]+$/.test(name)) {
    res.writeHead(400).end();
    return;
  }
  const path = join(root, name);
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
  createReadStream(path).pipe(res);
});
server.keepAliveTimeout = 10_000;
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(`static server listening on http://127.0.0.1:${port}/\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));

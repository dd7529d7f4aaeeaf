/**
 * DICOM audit messages over syslog to a real receiver: Debian's rsyslogd, started by the test as
 * a foreground process on free loopback ports, with imudp (RFC 5426) and imtcp over GnuTLS
 * (RFC 5425, mutual TLS with certificates made by openssl). Checks the RFC 5424 header fields as
 * rsyslog parsed them and the XML payload against the PS3.15 schema; then stops the receiver
 * (records spooled on disk, metrics and readiness say so) and starts it again (the spool drains,
 * in order, nothing lost).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import dgram from "node:dgram";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { httpRequest, listFiles, startInProcess } from "../helpers/archive-harness.js";
import { requireTools, TOOLS } from "../helpers/tools.js";
import { elements, instanceOf, schemaProblems, stow, waitFor } from "./audit-helpers.js";

const ROOT = "1.2.826.0.1.3680043.10.1138";

function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
  };
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=voxelgate-test-ca",
  );
  writeFileSync(join(dir, "ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  for (const name of ["server", "client"]) {
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    openssl(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      "ext",
    );
  }
}

const freeTcpPort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.once("error", reject);
  });

const freeUdpPort = () =>
  new Promise<number>((resolve) => {
    const s = dgram.createSocket("udp4").bind(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });

/** rsyslogd writes each message as `input|pri|version|hostname|app-name|procid|msgid|sd|raw message`. */
function writeConfig(dir: string, udpPort: number, tlsPort: number): string {
  const conf = join(dir, "rsyslog.conf");
  writeFileSync(
    conf,
    `global(workDirectory="${dir}" maxMessageSize="256k"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="${dir}/ca.pem"
  DefaultNetstreamDriverCertFile="${dir}/server.pem"
  DefaultNetstreamDriverKeyFile="${dir}/server.key")
module(load="imudp")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")
template(name="fields" type="string" string="%inputname%|%pri%|%protocol-version%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%rawmsg%\\n")
ruleset(name="audit") { action(type="omfile" file="${dir}/received.log" template="fields") }
input(type="imudp" address="127.0.0.1" port="${udpPort}" ruleset="audit")
input(type="imtcp" address="127.0.0.1" port="${tlsPort}" ruleset="audit")
`,
  );
  return conf;
}

interface Receiver {
  stop(): Promise<void>;
}

async function startRsyslog(dir: string, conf: string, tlsPort: number): Promise<Receiver> {
  const child: ChildProcess = spawn("rsyslogd", ["-n", "-f", conf, "-i", join(dir, "rsyslogd.pid")], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const listening = () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(tlsPort, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
  await waitFor(`rsyslogd listening on ${tlsPort}`, async () => {
    if (child.exitCode !== null) throw new Error(`rsyslogd exited: ${output}`);
    return (await listening()) ? true : undefined;
  });
  return {
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

interface Received {
  input: string;
  pri: string;
  version: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  sd: string;
  raw: string;
}

function received(dir: string): Received[] {
  const file = join(dir, "received.log");
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((line) => {
      const f = line.split("|");
      return {
        input: f[0] ?? "",
        pri: f[1] ?? "",
        version: f[2] ?? "",
        hostname: f[3] ?? "",
        appName: f[4] ?? "",
        procId: f[5] ?? "",
        msgId: f[6] ?? "",
        sd: f[7] ?? "",
        raw: f.slice(8).join("|"),
      };
    });
}

/** The XML after the RFC 5424 header and the BOM. */
const xmlOf = (raw: string): string => raw.slice(raw.indexOf("\uFEFF") + 1);
const b64 = (s: string) => Buffer.from(s).toString("base64");
const forRequest = (messages: Received[], id: string, input: string) =>
  messages.filter((m) => m.input === input && m.raw.includes(`value="${b64(id)}"`));

async function metric(url: string, name: string, sink: string): Promise<number | undefined> {
  const text = (await httpRequest(`${url}metrics`)).text();
  const m = new RegExp(`^${name}\\{sink="${sink}"\\} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

test("DICOM audit messages reach rsyslog over UDP and mutual TLS; while it is down they wait on disk, then all arrive", async (t) => {
  if (!requireTools(t, TOOLS.rsyslogd, TOOLS.rsyslogGnutls, TOOLS.openssl, TOOLS.xmllint)) return;
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-rsyslog-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  makeCertificates(dir);
  const [udpPort, tlsPort] = [await freeUdpPort(), await freeTcpPort()];
  const conf = writeConfig(dir, udpPort, tlsPort);
  let receiver = await startRsyslog(dir, conf, tlsPort);
  t.after(() => receiver.stop());

  const server = await startInProcess(t, {
    audit: {
      syslog: [
        { transport: "udp", host: "127.0.0.1", port: udpPort },
        {
          transport: "tls",
          host: "127.0.0.1",
          port: tlsPort,
          ca: join(dir, "ca.pem"),
          cert: join(dir, "client.pem"),
          key: join(dir, "client.key"),
        },
      ],
      retryMaxSeconds: 1,
    },
  });
  const dw = server.dicomweb;
  const tlsSink = `syslog-tls-127.0.0.1-${tlsPort}`;
  const study = `${ROOT}.1`;
  assert.equal(await stow(dw, [instanceOf("PAT-S", study, `${study}.1`, `${study}.1.1`)], { "x-request-id": "s1" }), 200);
  assert.equal((await httpRequest(`${dw}/studies?PatientID=PAT-S`, { headers: { "x-request-id": "q1" } })).status, 200);
  assert.equal((await httpRequest(`${dw}/studies/${study}`, { headers: { "x-request-id": "w1" } })).status, 200);
  assert.equal((await httpRequest(`${dw}/studies/${ROOT}.404`, { headers: { "x-request-id": "n1" } })).status, 404);

  const expected: Array<[string, string]> = [
    ["s1", "110104"],
    ["q1", "110112"],
    ["w1", "110104"],
    ["n1", "110104"],
  ];
  const messages = await waitFor("every message over both transports", () => {
    const all = received(dir);
    return expected.every(([id]) => forRequest(all, id, "imudp").length > 0 && forRequest(all, id, "imtcp").length > 0) ? all : undefined;
  });
  for (const [id, eventId] of expected) {
    for (const input of ["imudp", "imtcp"]) {
      const [m] = forRequest(messages, id, input);
      assert.ok(m);
      // RFC 5424 header as rsyslog parsed it: facility 10 (security/authorization), severity notice (warning for failures).
      assert.equal(m.pri, id === "n1" ? "84" : "85", `${id} over ${input}`);
      assert.deepEqual([m.version, m.appName, m.procId, m.msgId, m.sd], ["1", "voxelgate", String(process.pid), "IHE+RFC-3881", "-"]);
      assert.equal(m.hostname, hostname());
      assert.match(
        m.raw,
        new RegExp(
          `^<8[45]>1 \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z \\S+ voxelgate ${process.pid} IHE\\+RFC-3881 - \\uFEFF<\\?xml`,
        ),
      );
      const xml = xmlOf(m.raw);
      assert.equal(schemaProblems(xml), undefined);
      assert.equal(elements(xml, "EventID")[0]?.["csd-code"], eventId);
    }
  }
  assert.ok(
    messages.some((m) => m.input === "imtcp" && elements(xmlOf(m.raw), "EventTypeCode")[0]?.["csd-code"] === "110120"),
    "Application Start arrives too",
  );
  assert.equal(await metric(server.url, "voxelgate_audit_sink_up", tlsSink), 1);

  // Receiver down: the TLS sink notices the closed connection, records go to the spool on disk.
  await receiver.stop();
  await waitFor("the TLS sink reported down", async () =>
    (await metric(server.url, "voxelgate_audit_sink_up", tlsSink)) === 0 ? true : undefined,
  );
  const downIds = ["d1", "d2", "d3"];
  for (const id of downIds)
    assert.equal((await httpRequest(`${dw}/studies?StudyInstanceUID=${study}`, { headers: { "x-request-id": id } })).status, 200);
  await waitFor(
    "3 records spooled",
    async () => ((await metric(server.url, "voxelgate_audit_spooled_events", tlsSink)) ?? 0) >= 3 || undefined,
  );
  assert.ok(listFiles(join(server.dataDir, "audit", "spool", tlsSink)).length > 0, "spool files on disk");
  const degraded = await httpRequest(`${server.url}readyz`);
  assert.equal(degraded.status, 200, "spooling keeps the server ready");
  const audit = (degraded.json() as { checks: { audit: string } }).checks.audit;
  assert.match(audit, new RegExp(`^degraded: .*TLS to 127\\.0\\.0\\.1:${tlsPort} is failing.*record\\(s\\) spooled`));
  assert.match(
    (await httpRequest(`${server.url}metrics`)).text(),
    new RegExp(`voxelgate_audit_events_total\\{sink="${tlsSink}",outcome="spooled"\\} [1-9]`),
  );

  // Receiver back: the retry drains the spool; every record arrives, in order.
  receiver = await startRsyslog(dir, conf, tlsPort);
  const after = await waitFor(
    "the spooled records over TLS",
    () => {
      const all = received(dir);
      return downIds.every((id) => forRequest(all, id, "imtcp").length > 0) ? all : undefined;
    },
    60_000,
  ); // rsyslogd restarting and the sink's backoff take longer on a loaded CI machine
  const tcp = after.filter((m) => m.input === "imtcp");
  const positions = downIds.map((id) => tcp.findIndex((m) => m.raw.includes(`value="${b64(id)}"`)));
  assert.deepEqual(
    [...positions].sort((a, b) => a - b),
    positions,
    "spooled records arrive in the order they happened",
  );
  for (const id of downIds) assert.equal(schemaProblems(xmlOf(forRequest(tcp, id, "imtcp")[0]?.raw ?? "")), undefined);
  await waitFor("the spool drained", async () =>
    (await metric(server.url, "voxelgate_audit_spooled_events", tlsSink)) === 0 ? true : undefined,
  );
  // One more request moves the UDP sink too (UDP only learns of the receiver by sending).
  await httpRequest(`${dw}/studies?PatientID=PAT-S`, { headers: { "x-request-id": "q2" } });
  await waitFor("readiness ok", async () => {
    const ready = (await httpRequest(`${server.url}readyz`)).json() as { checks: { audit: string } };
    return ready.checks.audit === "ok" ? true : undefined;
  });
  assert.equal(await metric(server.url, "voxelgate_audit_sink_up", tlsSink), 1);
  assert.equal(listFiles(join(server.dataDir, "audit", "spool", tlsSink)).length, 0, "spool emptied");
});

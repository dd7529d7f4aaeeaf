/**
 * Checks for the Debian tools some tests use as oracles. Under CI (CI=true) a missing tool is a
 * failure; on a newcomer's machine the test is skipped with the package to install.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import type { TestContext } from "node:test";

export const PYTHON = "/usr/bin/python3";
export const PYDICOM_DATA = "/usr/lib/python3/dist-packages/pydicom/data";

export interface Tool {
  /** Command (or absolute path) that must be runnable. */
  command: string;
  /** Debian package that provides it. */
  aptPackage: string;
  /** Extra probe; defaults to "command exists on PATH". */
  probe?: () => boolean;
}

const onPath = (command: string): boolean =>
  command.startsWith("/") ? existsSync(command) : spawnSync("sh", ["-c", `command -v ${command}`]).status === 0;

export const TOOLS = {
  dcmdump: { command: "dcmdump", aptPackage: "dcmtk" },
  dcmconv: { command: "dcmconv", aptPackage: "dcmtk" },
  dcmftest: { command: "dcmftest", aptPackage: "dcmtk" },
  dcm2xml: { command: "dcm2xml", aptPackage: "dcmtk" },
  dcmj2pnm: { command: "dcmj2pnm", aptPackage: "dcmtk" },
  dcmcrle: { command: "dcmcrle", aptPackage: "dcmtk" },
  dcmdrle: { command: "dcmdrle", aptPackage: "dcmtk" },
  dcmcjpeg: { command: "dcmcjpeg", aptPackage: "dcmtk" },
  dcmdjpeg: { command: "dcmdjpeg", aptPackage: "dcmtk" },
  dcmcjpls: { command: "dcmcjpls", aptPackage: "dcmtk" },
  dcmdjpls: { command: "dcmdjpls", aptPackage: "dcmtk" },
  gdcmdump: { command: "gdcmdump", aptPackage: "libgdcm-tools" },
  gdcmconv: { command: "gdcmconv", aptPackage: "libgdcm-tools" },
  pydicom: {
    command: PYTHON,
    aptPackage: "python3-pydicom python3-numpy",
    probe: () => spawnSync(PYTHON, ["-c", "import pydicom, numpy"]).status === 0,
  },
  chromium: { command: "/usr/bin/chromium", aptPackage: "chromium" },
  // Audit tests: a real syslog receiver (UDP and TLS), certificates, the PS3.15 audit schema check.
  rsyslogd: { command: "rsyslogd", aptPackage: "rsyslog" },
  rsyslogGnutls: {
    command: "rsyslogd",
    aptPackage: "rsyslog-gnutls",
    probe: () =>
      spawnSync("sh", ["-c", "ls /usr/lib/*/rsyslog/lmnsd_gtls.so /usr/lib/rsyslog/lmnsd_gtls.so 2>/dev/null | grep -q ."]).status === 0,
  },
  openssl: { command: "openssl", aptPackage: "openssl" },
  xmllint: { command: "xmllint", aptPackage: "libxml2-utils" },
  orthanc: {
    command: "/usr/sbin/Orthanc",
    aptPackage: "orthanc orthanc-dicomweb",
    probe: () => existsSync("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
  },
} satisfies Record<string, Tool>;

const cache = new Map<Tool, boolean>();
const available = (tool: Tool): boolean => {
  let ok = cache.get(tool);
  if (ok === undefined) {
    ok = onPath(tool.command) && (tool.probe ? tool.probe() : true);
    cache.set(tool, ok);
  }
  return ok;
};

/**
 * Returns true when every tool is there. Otherwise: under CI throws (the run fails); elsewhere
 * marks the test skipped with the packages to install and returns false.
 */
export function requireTools(t: TestContext, ...tools: Tool[]): boolean {
  const missing = tools.filter((tool) => !available(tool));
  if (missing.length === 0) return true;
  const message = `needs ${missing.map((m) => m.command).join(", ")}: apt-get install ${[...new Set(missing.map((m) => m.aptPackage))].join(" ")}`;
  if (process.env.CI === "true") throw new Error(`CI is missing a test tool; ${message}`);
  t.skip(message);
  return false;
}

/** Same check for code outside a test (e.g. a before() hook building fixtures). */
export function toolsAvailable(...tools: Tool[]): boolean {
  const missing = tools.filter((tool) => !available(tool));
  if (missing.length > 0 && process.env.CI === "true") {
    throw new Error(`CI is missing a test tool: apt-get install ${missing.map((m) => m.aptPackage).join(" ")}`);
  }
  return missing.length === 0;
}

/** Runs a command and returns stdout as a Buffer; throws with stderr on a non-zero exit. */
export function run(command: string, args: string[], input?: Buffer | string): Buffer {
  const r = spawnSync(command, args, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${r.status}: ${r.stderr?.toString().slice(0, 2000)}`);
  }
  return r.stdout;
}

/** A browser test that hangs (a wedged Chromium on a loaded machine) fails after this instead of stalling CI. */
export const BROWSER_TEST_TIMEOUT_MS = 240_000;

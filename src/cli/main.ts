#!/usr/bin/env node
/** The `voxelgate` command. */
import { Command, InvalidArgumentError } from "commander";
import { ConfigError, loadConfig } from "../config.js";
import { createApiKey } from "../gateway/api-keys.js";
import { upstreamsFromUrls } from "../gateway/upstream/settings.js";
import { startServer } from "../http/server.js";
import { openArchive } from "../store/file-archive.js";
import { dumpFiles } from "./dump.js";
import { DEFAULT_DATA_DIR, runImport } from "./import.js";

const positiveInt = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a non-negative integer");
  return n;
};

interface ServeOptions {
  host?: string;
  port?: number;
  data?: string;
  config?: string;
  corsOrigin?: string[];
  publicUrl?: string;
  oidcIssuer?: string;
  oidcAudience?: string[];
  upstream?: string[];
  viewerPort?: number;
  viewer?: boolean;
}

/** --oidc-issuer / --oidc-audience as a partial auth block (merged over the file's and the environment's). */
function oidcFlags(opts: ServeOptions): Record<string, unknown> | undefined {
  const oidc: Record<string, unknown> = {};
  if (opts.oidcIssuer !== undefined) oidc.issuer = opts.oidcIssuer;
  if (opts.oidcAudience !== undefined) oidc.audiences = opts.oidcAudience.flatMap((a) => a.split(",")).filter(Boolean);
  return Object.keys(oidc).length > 0 ? { oidc } : undefined;
}

const program = new Command().name("voxelgate").description("DICOMweb archive and imaging-aware gateway");

program
  .command("serve", { isDefault: true })
  .description("start the DICOMweb archive (SQLite index + files in the data folder)")
  .option("--host <address>", "address to bind (env VOXELGATE_HOST; default 127.0.0.1)")
  .option("--port <number>", "port to listen on, 0 for any free port (env VOXELGATE_PORT; default 8042)", positiveInt)
  .option("--data <dir>", "data folder, created when missing (env VOXELGATE_DATA; default ./voxelgate-data)")
  .option("--config <file>", "JSON config file with any other setting (see README)")
  .option("--cors-origin <origin...>", "allow browser viewers on these origins (CORS), e.g. http://localhost:3000")
  .option("--public-url <url>", "public URL of this server as clients reach it, for RetrieveURL and BulkDataURI")
  .option("--oidc-issuer <url>", "accept OIDC bearer tokens from this issuer (env VOXELGATE_OIDC_ISSUER)")
  .option("--oidc-audience <aud...>", "accepted token audiences, repeatable (env VOXELGATE_OIDC_AUDIENCE, comma-separated)")
  .option(
    "--upstream <url...>",
    "proxy mode: serve these DICOMweb archives (e.g. http://user:pass@orthanc:8042/dicom-web) instead of the local one",
  )
  .option("--viewer-port <number>", "port of the hosted OHIF viewer (default: the API port + 1; 0 = any free port)", positiveInt)
  .option("--no-viewer", "do not host the OHIF viewer")
  .action(async (opts: ServeOptions) => {
    let config;
    try {
      config = loadConfig({
        file: opts.config,
        env: process.env,
        flags: {
          host: opts.host,
          port: opts.port,
          data: opts.data,
          corsOrigins: opts.corsOrigin,
          publicUrl: opts.publicUrl,
          auth: oidcFlags(opts),
          upstreams: opts.upstream ? upstreamsFromUrls(opts.upstream) : undefined,
          // --no-viewer sets viewer=false; without it the file's setting stays.
          viewer: { enabled: opts.viewer === false ? false : undefined, port: opts.viewerPort },
        },
      });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    const archive = await openArchive({
      dataDir: config.data,
      duplicatePolicy: config.duplicatePolicy,
      maxInstanceBytes: config.maxInstanceBytes,
    });
    let server;
    try {
      server = await startServer(config, archive);
    } catch (err) {
      await archive.close();
      process.stderr.write(`Voxelgate cannot start: ${(err as Error).message}\n`);
      process.exit(1);
    }
    const stats = archive.index.stats();
    process.stdout.write(`Voxelgate is listening on ${server.url}\n`);
    process.stdout.write(
      `  DICOMweb root: ${server.url}${config.dicomwebPath.slice(1)}   data: ${archive.dataDir} (${stats.studies} studies, ${stats.instances} instances)\n`,
    );
    if (server.viewerUrl) {
      const missing = server.viewerMissing;
      process.stdout.write(missing ? `  Viewer: not installed — ${missing}\n` : `  Viewer (OHIF): ${server.viewerUrl}\n`);
    }
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      void server.close().then(() => process.exit(0));
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });

program
  .command("apikey")
  .description("API keys for service accounts")
  .command("create")
  .description("print a new random API key (once) and the auth.apiKeys config entry that accepts it (only its SHA-256)")
  .requiredOption("--id <name>", "name of the service account (audit subject)")
  .option("--scope <scope...>", "scopes, e.g. dicomweb.search dicomweb.retrieve or system/ImagingStudy.rs", [])
  .option("--role <role...>", "roles for rule-based grants", [])
  .action((opts: { id: string; scope: string[]; role: string[] }) => {
    const { key, entry } = createApiKey(opts.id, opts.scope, opts.role);
    process.stdout.write(
      `API key for ${opts.id} (shown once; send it as "Authorization: ApiKey <key>" or "X-Api-Key: <key>"):\n\n  ${key}\n\n`,
    );
    process.stdout.write(`Add this entry to "auth": { "apiKeys": [...] } in the config file:\n\n${JSON.stringify(entry, null, 2)}\n`);
  });

program
  .command("dump")
  .description("print DICOM files as DICOM JSON (PS3.18 Annex F) or PS3.19 XML")
  .argument("<files...>", "DICOM files (Part 10, or bare datasets)")
  .option("--xml", "print Native DICOM Model XML instead of JSON")
  .option("--bulk-threshold <bytes>", "show binary values larger than this as BulkDataURI", positiveInt, 1024)
  .action(async (files: string[], opts: { xml?: boolean; bulkThreshold: number }) => {
    process.exitCode = await dumpFiles(files, { xml: opts.xml, bulkThreshold: opts.bulkThreshold }, process.stdout, process.stderr);
  });

program
  .command("import")
  .description("import DICOM files, folders (recursively) and .zip files into a data folder, or into a running server by STOW-RS")
  .argument("<paths...>", "files, folders and .zip files")
  .option("--data <dir>", `data folder to import into (default: $VOXELGATE_DATA or ${DEFAULT_DATA_DIR})`)
  .option("--url <url>", "send to a running server instead: its DICOMweb root, e.g. http://127.0.0.1:8042/dicomweb")
  .option("--parallel <n>", "files (or STOW requests) in flight at once", positiveInt, 4)
  .option("--quiet", "no progress bar or progress lines; only the summary")
  .action(async (paths: string[], opts: { data?: string; url?: string; parallel: number; quiet?: boolean }) => {
    const options = { paths, dataDir: opts.data, url: opts.url, parallel: opts.parallel, quiet: opts.quiet };
    process.exitCode = await runImport(options, { stdout: process.stdout, stderr: process.stderr });
  });

await program.parseAsync(process.argv);

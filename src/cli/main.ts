#!/usr/bin/env node
/** The `voxelgate` command. */
import { Command, InvalidArgumentError } from "commander";
import { startServer } from "../http/server.js";
import { dumpFiles } from "./dump.js";

const positiveInt = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a non-negative integer");
  return n;
};

const program = new Command().name("voxelgate").description("DICOMweb archive and imaging-aware gateway");

program
  .command("serve", { isDefault: true })
  .description("start the HTTP server")
  .option("--host <address>", "address to bind", process.env.VOXELGATE_HOST ?? "127.0.0.1")
  .option("--port <number>", "port to listen on", positiveInt, Number(process.env.VOXELGATE_PORT ?? 8042))
  .action(async (opts: { host: string; port: number }) => {
    const server = await startServer({ host: opts.host, port: opts.port });
    process.stdout.write(`Voxelgate is listening on ${server.url}\n`);
    const stop = () => {
      void server.close().then(() => process.exit(0));
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
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

await program.parseAsync(process.argv);

/**
 * The public URL of the DICOMweb root for a request, used in RetrieveURL and BulkDataURI values.
 * Order: the configured publicUrl; else Forwarded (RFC 7239) or X-Forwarded-Proto/Host, believed
 * only when the connection comes from a trusted proxy; else the Host header of the request.
 */
import proxyAddr from "@fastify/proxy-addr";
import type { FastifyRequest } from "fastify";

const SAFE_HOST = /^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$/;

function firstHeader(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return v?.split(",")[0]?.trim() || undefined;
}

/** proto= and host= of the first (client-side) element of a Forwarded header. */
export function parseForwarded(header: string): { proto?: string; host?: string } {
  const first = header.split(",")[0] ?? "";
  const out: { proto?: string; host?: string } = {};
  for (const pair of first.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const name = pair.slice(0, eq).trim().toLowerCase();
    let value = pair.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (name === "proto") out.proto = value.toLowerCase();
    if (name === "host") out.host = value;
  }
  return out;
}

export function publicBaseResolver(options: {
  publicUrl?: string;
  dicomwebPath: string;
  trustedProxies: string[];
}): (request: FastifyRequest) => string {
  if (options.publicUrl) {
    const fixed = options.publicUrl.replace(/\/+$/, "") + options.dicomwebPath;
    return () => fixed;
  }
  const trust = proxyAddr.compile(options.trustedProxies);
  return (request) => {
    let proto = "http";
    let host = request.headers.host;
    const peer = request.raw.socket.remoteAddress ?? "";
    if (options.trustedProxies.length > 0 && trust(peer, 0)) {
      const forwarded = firstHeader(request.headers.forwarded) !== undefined ? parseForwarded(String(request.headers.forwarded)) : {};
      proto = forwarded.proto ?? firstHeader(request.headers["x-forwarded-proto"]) ?? proto;
      host = forwarded.host ?? firstHeader(request.headers["x-forwarded-host"]) ?? host;
    }
    if (proto !== "http" && proto !== "https") proto = "http";
    if (!host || !SAFE_HOST.test(host)) {
      const local = request.raw.socket.localAddress ?? "127.0.0.1";
      host = `${local.includes(":") ? `[${local}]` : local}:${request.raw.socket.localPort ?? 80}`;
    }
    return `${proto}://${host}${options.dicomwebPath}`;
  };
}

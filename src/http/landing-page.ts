/** The landing page at `/`: where the DICOMweb root is, what is stored, and how to point OHIF at it. */
import type { IndexStats } from "../store/types.js";

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The OHIF 3 data source for this server (window.config.dataSources entry in app-config.js). */
export function ohifDataSource(dicomwebRoot: string): object {
  return {
    namespace: "@ohif/extension-default.dataSourcesModule.dicomweb",
    sourceName: "voxelgate",
    configuration: {
      friendlyName: "Voxelgate",
      name: "voxelgate",
      qidoRoot: dicomwebRoot,
      wadoRoot: dicomwebRoot,
      wadoUriRoot: dicomwebRoot,
      qidoSupportsIncludeField: true,
      supportsReject: false,
      imageRendering: "wadors",
      thumbnailRendering: "wadors",
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: true,
      supportsWildcard: true,
      staticWado: false,
      singlepart: "bulkdata,video",
      bulkDataURI: { enabled: true },
      omitQuotationForMultipartRequest: true,
    },
  };
}

export function landingPage(options: { dicomwebRoot: string; stats: IndexStats; dataDir: string; corsOrigins: string[] }): string {
  const { dicomwebRoot, stats } = options;
  const root = escapeHtml(dicomwebRoot);
  const snippet = escapeHtml(JSON.stringify({ dataSources: [ohifDataSource(dicomwebRoot)], defaultDataSourceName: "voxelgate" }, null, 2));
  const count = (n: number, one: string, many: string) => `${n.toLocaleString("en")} ${n === 1 ? one : many}`;
  const cors =
    options.corsOrigins.length > 0
      ? `CORS allows: <code>${escapeHtml(options.corsOrigins.join(", "))}</code>.`
      : `CORS is off: a viewer on another origin needs <code>--cors-origin https://viewer.example.org</code>.`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Voxelgate</title>
<style>body{font-family:system-ui,sans-serif;max-width:52rem;margin:3rem auto;padding:0 1rem;line-height:1.5}code,pre{background:#f2f2f2;padding:0 .2em}pre{padding:.8em;overflow:auto}td{padding:.1em 1em .1em 0}</style>
</head>
<body>
<h1>Voxelgate</h1>
<p>A DICOMweb archive and imaging-aware gateway for web viewers.</p>
<h2>DICOMweb</h2>
<p>DICOMweb root (QIDO-RS, WADO-RS, STOW-RS): <a href="${root}/studies"><code>${root}</code></a></p>
<p>Stored: <strong id="studies">${count(stats.studies, "study", "studies")}</strong>, ${count(stats.series, "series", "series")}, ${count(stats.instances, "instance", "instances")}.
Data folder: <code>${escapeHtml(options.dataDir)}</code>.</p>
<table>
<tr><td>Search studies</td><td><code>GET ${root}/studies?PatientName=DOE*</code></td></tr>
<tr><td>Study metadata</td><td><code>GET ${root}/studies/{study}/metadata</code></td></tr>
<tr><td>Frames</td><td><code>GET ${root}/studies/{study}/series/{series}/instances/{instance}/frames/1</code></td></tr>
<tr><td>Store</td><td><code>POST ${root}/studies</code> (multipart/related; type="application/dicom"), or <code>npx voxelgate import FOLDER</code></td></tr>
</table>
<h2>Use it with OHIF</h2>
<p>Put this data source in OHIF's <code>app-config.js</code> (<code>window.config</code>). ${cors}</p>
<pre>${snippet}</pre>
<h2>Operations</h2>
<ul>
<li><a href="/healthz">/healthz</a> — alive</li>
<li><a href="/readyz">/readyz</a> — index and storage reachable</li>
<li><a href="/metrics">/metrics</a> — Prometheus metrics</li>
</ul>
</body>
</html>
`;
}

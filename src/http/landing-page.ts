/** The landing page at `/`: where the DICOMweb root is, what is stored, the hosted viewer, and how to point another OHIF at it. */
import type { IndexStats } from "../store/types.js";
import { ohifConfigSnippet } from "../viewer/ohif-config.js";

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export interface LandingPageOptions {
  dicomwebRoot: string;
  stats: IndexStats;
  dataDir: string;
  corsOrigins: string[];
  /** The hosted viewer, when enabled: its URL, and why it cannot be used yet (not installed). */
  viewer?: { url: string; missing?: string };
}

/** The hosted viewer's section: a link to the study list, or what to do to get the viewer. */
function viewerSection(viewer: LandingPageOptions["viewer"]): string {
  if (!viewer) return `<p>The hosted viewer is off (<code>--no-viewer</code> or <code>"viewer": {"enabled": false}</code>).</p>`;
  const url = escapeHtml(viewer.url);
  if (viewer.missing)
    return `<p id="viewer-missing">No hosted viewer yet at <code data-url="${url}">${url}</code>: ${escapeHtml(viewer.missing)}.</p>`;
  return `<p>OHIF, ready to use: <a id="viewer" href="${url}"><strong>open the study list</strong></a> (<code>${url}</code>).
Open one study directly with <code>${url}viewer?StudyInstanceUIDs=…</code>.</p>`;
}

export function landingPage(options: LandingPageOptions): string {
  const { dicomwebRoot, stats } = options;
  const root = escapeHtml(dicomwebRoot);
  const snippet = escapeHtml(JSON.stringify(ohifConfigSnippet(dicomwebRoot), null, 2));
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
<h2>Viewer</h2>
${viewerSection(options.viewer)}
<h2>Use it with your own OHIF</h2>
<p>Put this data source in OHIF's <code>app-config.js</code> (<code>window.config</code>), or take it from
<a href="/ohif-config">/ohif-config</a> (JSON) or a whole <code>app-config.js</code> from <a href="/ohif-config?format=js">/ohif-config?format=js</a>. ${cors}</p>
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

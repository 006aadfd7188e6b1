/** One small stylesheet for both widgets, injected once per document. */

export const STYLE_ID = "wistro-widgets-style";

export const CSS = `
.wistro-widget {
  --w-fg: var(--jp-ui-font-color1, #1f2328);
  --w-fg2: var(--jp-ui-font-color2, #57606a);
  --w-fg3: var(--jp-ui-font-color3, #8c959f);
  --w-bg: var(--jp-layout-color1, #ffffff);
  --w-bg2: var(--jp-layout-color2, #f3f4f6);
  --w-bg3: var(--jp-layout-color3, #e5e7eb);
  --w-border: var(--jp-border-color1, #c9d1d9);
  --w-border2: var(--jp-border-color2, #e1e4e8);
  --w-accent: var(--jp-brand-color1, #1976d2);
  --w-error: var(--jp-error-color1, #d32f2f);
  --w-ok: var(--jp-success-color1, #388e3c);
  --w-warn: var(--jp-warn-color1, #f57c00);
  --w-mono: var(--jp-code-font-family, ui-monospace, SFMono-Regular, Menlo, monospace);
  --w-c-step: var(--jp-brand-color1, #1976d2);
  --w-c-noop: var(--jp-ui-font-color3, #8c959f);
  --w-c-api: var(--jp-success-color1, #2e7d32);
  --w-c-cron: var(--jp-warn-color1, #ef6c00);
  --w-c-topic: #8e44ad;
  --w-c-trigger: #00838f;
  --w-c-flow: #6d4c41;
  --w-lit: #f59e0b;
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  color: var(--w-fg);
  background: var(--w-bg);
  border: 1px solid var(--w-border2);
  border-radius: 4px;
  box-sizing: border-box;
  max-width: 100%;
}
.wistro-widget *, .wistro-widget *::before, .wistro-widget *::after { box-sizing: border-box; }
.wistro-widget pre {
  font-family: var(--w-mono);
  font-size: var(--jp-code-font-size, 12px);
  background: var(--w-bg2);
  color: var(--w-fg);
  border: 1px solid var(--w-border2);
  border-radius: 3px;
  padding: 6px 8px;
  margin: 4px 0;
  max-height: 260px;
  overflow: auto;
  white-space: pre;
}
.wistro-widget button, .wistro-widget select {
  font: inherit;
  color: var(--w-fg);
  background: var(--w-bg2);
  border: 1px solid var(--w-border);
  border-radius: 3px;
  padding: 2px 8px;
  min-height: 24px;
}
.wistro-widget button { cursor: pointer; min-width: 26px; }
.wistro-widget button:hover, .wistro-widget select:hover { border-color: var(--w-accent); }
.wistro-widget h4 {
  margin: 10px 0 4px;
  font-size: var(--jp-ui-font-size1, 13px);
  font-weight: 600;
  color: var(--w-fg2);
}
.wistro-muted { color: var(--w-fg3); }
.wistro-toolbar {
  display: flex; flex-wrap: wrap; gap: 6px; align-items: center;
  padding: 6px 8px; border-bottom: 1px solid var(--w-border2); background: var(--w-bg2);
}
.wistro-toolbar .wistro-spacer { flex: 1; }
.wistro-toolbar label { display: inline-flex; gap: 4px; align-items: center; color: var(--w-fg2); }

/* ------------------------------------------------------------ flow graph */
.wistro-fg-body { display: flex; min-height: 0; position: relative; }
.wistro-fg-view {
  position: relative; flex: 1 1 auto; min-width: 0; height: 480px; overflow: hidden;
  cursor: grab; touch-action: none; user-select: none; background: var(--w-bg);
}
.wistro-fg-view.dragging { cursor: grabbing; }
.wistro-fg-view > svg.wistro-graph-svg { display: block; width: 100%; height: 100%; }
.wistro-fg-status {
  position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
  color: var(--w-fg2); pointer-events: none; padding: 16px; text-align: center;
}
.wistro-fg-status.error { color: var(--w-error); white-space: pre-wrap; }
.wistro-legend {
  display: flex; flex-wrap: wrap; gap: 10px; padding: 4px 8px; font-size: 11px;
  color: var(--w-fg2); border-top: 1px solid var(--w-border2);
}
.wistro-legend span { display: inline-flex; align-items: center; gap: 4px; }
.wistro-legend i {
  display: inline-block; width: 14px; height: 10px; border: 1.5px solid var(--k);
  background: color-mix(in srgb, var(--k) 18%, transparent); border-radius: 3px;
}
.wistro-legend .kind-noop i { border-style: dashed; }
.wistro-legend .kind-topic i { border-radius: 50%; }
.wistro-legend .kind-cron i { clip-path: polygon(25% 0, 75% 0, 100% 50%, 75% 100%, 25% 100%, 0 50%); }
.wistro-legend .kind-api i { clip-path: polygon(0 0, 80% 0, 100% 50%, 80% 100%, 0 100%); }
.wistro-widget .kind-step { --k: var(--w-c-step); }
.wistro-widget .kind-noop { --k: var(--w-c-noop); }
.wistro-widget .kind-api { --k: var(--w-c-api); }
.wistro-widget .kind-cron { --k: var(--w-c-cron); }
.wistro-widget .kind-topic { --k: var(--w-c-topic); }
.wistro-widget .kind-trigger { --k: var(--w-c-trigger); }
.wistro-widget .kind-flow { --k: var(--w-c-flow); }
.wistro-fg-view g.node { cursor: pointer; }
.wistro-fg-view g.node > polygon, .wistro-fg-view g.node > ellipse,
.wistro-fg-view g.node > path, .wistro-fg-view g.node > polyline {
  stroke: var(--k, var(--w-fg2)); fill: var(--k, var(--w-bg2)); fill-opacity: 0.14;
  stroke-width: 1.4px; transition: fill-opacity .2s, stroke-width .2s;
}
.wistro-fg-view g.node.kind-noop > * { stroke-dasharray: 5 3; }
.wistro-fg-view g.node.kind-noop text { fill: var(--w-fg2); font-style: italic; }
.wistro-fg-view g.node text { fill: var(--w-fg); stroke: none; }
.wistro-fg-view g.node.inactive { opacity: 0.45; }
.wistro-fg-view g.node:hover > polygon, .wistro-fg-view g.node:hover > ellipse,
.wistro-fg-view g.node:hover > path { fill-opacity: 0.3; }
.wistro-fg-view g.node.selected > polygon, .wistro-fg-view g.node.selected > ellipse,
.wistro-fg-view g.node.selected > path { stroke: var(--w-accent); stroke-width: 3px; fill-opacity: 0.28; }
.wistro-fg-view g.node.has-errors > polygon, .wistro-fg-view g.node.has-errors > ellipse,
.wistro-fg-view g.node.has-errors > path { stroke: var(--w-error); }
.wistro-fg-view g.node.running > polygon, .wistro-fg-view g.node.running > ellipse,
.wistro-fg-view g.node.running > path { animation: wistro-pulse 1s ease-in-out infinite; }
@keyframes wistro-pulse {
  0%, 100% { fill-opacity: 0.15; stroke-width: 1.4px; }
  50% { fill-opacity: 0.55; stroke-width: 3.5px; }
}
.wistro-fg-view g.edge path { stroke: var(--w-fg3); fill: none; }
.wistro-fg-view g.edge polygon { stroke: var(--w-fg3); fill: var(--w-fg3); }
.wistro-fg-view g.edge text { fill: var(--w-fg2); }
.wistro-fg-view g.edge.virtual path { stroke-dasharray: 5 3; }
.wistro-fg-view g.edge.conditional text { font-style: italic; fill: var(--w-warn); }
.wistro-fg-view g.edge.active path { stroke: var(--w-accent); stroke-width: 2px; }
.wistro-fg-view g.edge.active polygon { stroke: var(--w-accent); fill: var(--w-accent); }
.wistro-badge rect { fill: var(--w-accent); stroke: var(--w-bg); stroke-width: 1px; }
.wistro-badge text { fill: #fff; font-size: 9px; font-family: inherit; font-weight: 600; }
.wistro-badge.err rect { fill: var(--w-error); }
/* The details panel overlays the graph: the graph keeps its size and scale when it opens. */
.wistro-details {
  position: absolute; top: 0; right: 0; bottom: 0; width: 380px; max-width: 60%;
  overflow: auto; padding: 6px 10px; z-index: 3;
  border-left: 1px solid var(--w-border2); background: var(--w-bg);
  box-shadow: -4px 0 12px rgba(0, 0, 0, .12);
}
.wistro-details pre { white-space: pre-wrap; overflow-wrap: anywhere; word-break: break-word; max-width: 100%; }
.wistro-details[hidden] { display: none; }
.wistro-details .wistro-details-head { display: flex; align-items: center; gap: 6px; }
.wistro-details .wistro-details-head strong { flex: 1; font-size: 14px; overflow-wrap: anywhere; }
.wistro-kind-tag {
  font-size: 10px; padding: 0 6px; border-radius: 8px; border: 1px solid var(--k);
  color: var(--w-fg); background: color-mix(in srgb, var(--k) 15%, transparent);
}
.wistro-details table, .wistro-tv-detail table { border-collapse: collapse; width: 100%; font-size: 12px; }
.wistro-tv-detail table { width: auto; min-width: 60%; }
.wistro-tv-detail td:first-child { white-space: nowrap; }
.wistro-details td, .wistro-details th, .wistro-tv-detail td, .wistro-tv-detail th {
  text-align: left; padding: 2px 6px; border-bottom: 1px solid var(--w-border2); vertical-align: top;
}
.wistro-details .wistro-file { font-family: var(--w-mono); font-size: 11px; color: var(--w-fg2); overflow-wrap: anywhere; }
.wistro-link { color: var(--w-accent); cursor: pointer; text-decoration: underline; font-family: var(--w-mono); }

.wistro-toolbar .wistro-search { min-width: 150px; font: inherit; padding: 2px 6px; border: 1px solid var(--w-border); border-radius: 3px; background: var(--w-bg); color: var(--w-fg); }
.wistro-toolbar .wistro-hops { width: 44px; font: inherit; padding: 2px 4px; border: 1px solid var(--w-border); border-radius: 3px; background: var(--w-bg); color: var(--w-fg); }
.wistro-toolbar button.on { border-color: var(--w-accent); background: color-mix(in srgb, var(--w-accent) 18%, var(--w-bg2)); }
.wistro-toolbar button[hidden] { display: none; }
.wistro-fg-view g.cluster > path, .wistro-fg-view g.cluster > polygon { stroke: var(--w-border); fill: color-mix(in srgb, var(--w-bg2) 60%, transparent); }
.wistro-fg-view g.cluster > text { fill: var(--w-fg2); font-weight: 600; cursor: pointer; }
.wistro-fg-view g.cluster { cursor: pointer; }
.wistro-searching .wistro-fg-view g.node:not(.match) { opacity: 0.35; }
.wistro-fg-view g.node.match > polygon, .wistro-fg-view g.node.match > ellipse,
.wistro-fg-view g.node.match > path { stroke: var(--w-lit); stroke-width: 3px; fill-opacity: 0.35; }
.wistro-fg-view g.node.lit > polygon, .wistro-fg-view g.node.lit > ellipse,
.wistro-fg-view g.node.lit > path {
  stroke: var(--w-lit); stroke-width: 3.5px; fill: var(--w-lit); fill-opacity: 0.45;
  transition: fill-opacity 2.5s ease-out, stroke-width 2.5s ease-out;
}
.wistro-fg-view g.node.lit.lit-running > polygon, .wistro-fg-view g.node.lit.lit-running > ellipse,
.wistro-fg-view g.node.lit.lit-running > path { fill-opacity: 0.7; }
.wistro-fg-view g.node.lit.lit-error > polygon, .wistro-fg-view g.node.lit.lit-error > ellipse,
.wistro-fg-view g.node.lit.lit-error > path { stroke: var(--w-error); fill: var(--w-error); }
.wistro-fg-view g.node.lit.lit-fade > polygon, .wistro-fg-view g.node.lit.lit-fade > ellipse,
.wistro-fg-view g.node.lit.lit-fade > path { fill-opacity: 0.08; stroke-width: 1.6px; }
.wistro-fg-view g.edge.lit path { stroke: var(--w-lit); stroke-width: 3px; transition: stroke-width 2.5s ease-out; }
.wistro-fg-view g.edge.lit polygon { stroke: var(--w-lit); fill: var(--w-lit); }
.wistro-fg-view g.edge.lit.lit-fade path { stroke-width: 1.2px; }
.wistro-fg-view > svg.wistro-minimap {
  position: absolute; right: 8px; bottom: 8px; width: 170px; height: 110px; z-index: 2;
  background: color-mix(in srgb, var(--w-bg) 88%, transparent); border: 1px solid var(--w-border);
  border-radius: 3px; cursor: crosshair;
}
.wistro-minimap.hidden { display: none; }
.wistro-minimap rect { fill: var(--k, var(--w-fg3)); fill-opacity: .6; }
.wistro-minimap rect.wistro-minimap-view { fill: var(--w-accent); fill-opacity: .12; stroke: var(--w-accent); }
.wistro-emit .wistro-form-row { display: grid; grid-template-columns: minmax(80px, 35%) 1fr; gap: 6px; align-items: center; margin: 3px 0; }
.wistro-emit .wistro-form-row > label { color: var(--w-fg2); overflow-wrap: anywhere; }
.wistro-emit input[type=text], .wistro-emit input[type=number], .wistro-emit textarea, .wistro-emit select {
  font: inherit; width: 100%; min-width: 0; padding: 2px 4px; border: 1px solid var(--w-border);
  border-radius: 3px; background: var(--w-bg); color: var(--w-fg);
}
.wistro-emit .wistro-form-object .wistro-form-object { border-left: 2px solid var(--w-border2); padding-left: 6px; }
.wistro-emit .wistro-form-item { display: flex; gap: 4px; align-items: center; margin: 2px 0; }
.wistro-emit .wistro-req { color: var(--w-error); }
.wistro-emit-actions { margin: 6px 0; }
.wistro-emit-status { font-size: 12px; overflow-wrap: anywhere; }
.wistro-emit-status.error { color: var(--w-error); }
.wistro-emit-status.ok { color: var(--w-ok); }
.span-row .span-name .span-toggle { display: inline-block; width: 14px; color: var(--w-fg2); cursor: pointer; }
.span-row .span-name .span-indent { display: inline-block; }

/* ------------------------------------------------------------ status colours */
.wistro-status {
  display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11px; font-weight: 600;
  color: #fff; background: var(--w-fg3); text-transform: uppercase; letter-spacing: .03em;
}
.wistro-widget .status-ok { --s: var(--w-ok); }
.wistro-widget .status-error, .wistro-widget .status-invalid, .wistro-widget .status-failed { --s: var(--w-error); }
.wistro-widget .status-timeout { --s: var(--w-warn); }
.wistro-widget .status-running, .wistro-widget .status-retrying { --s: var(--w-accent); }
.wistro-status[class*="status-"] { background: var(--s, var(--w-fg3)); }
.wistro-widget td.status-cell { color: var(--s, var(--w-fg2)); font-weight: 600; }

/* ------------------------------------------------------------ trace view */
.wistro-tv-head { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; padding: 8px; }
.wistro-tv-head .wistro-tv-title { font-weight: 600; }
.wistro-tv-head code { font-family: var(--w-mono); font-size: 11px; color: var(--w-fg2); }
.wistro-tv-errors { margin: 0 8px 6px; color: var(--w-error); font-size: 12px; }
.wistro-tv-errors div { overflow-wrap: anywhere; }
.wistro-tv-axis {
  display: grid; grid-template-columns: 220px 1fr 72px; font-size: 10px; color: var(--w-fg3);
  padding: 2px 8px; border-bottom: 1px solid var(--w-border2);
}
.wistro-tv-axis .ticks { display: flex; justify-content: space-between; }
.wistro-waterfall { max-height: 420px; overflow: auto; padding: 2px 0; }
.wistro-waterfall .wistro-empty { padding: 12px; color: var(--w-fg3); }
.span-row {
  display: grid; grid-template-columns: 220px 1fr 72px; align-items: center; height: 22px;
  padding: 0 8px; cursor: pointer; content-visibility: auto; contain-intrinsic-size: auto 22px;
}
.span-row[hidden] { display: none; }
.span-row:hover { background: var(--w-bg2); }
.span-row.selected { background: color-mix(in srgb, var(--w-accent) 16%, transparent); }
.span-row .span-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; padding-right: 8px; }
.span-row .span-name small { color: var(--w-fg3); margin-left: 4px; }
.span-row .span-track { position: relative; height: 100%; }
.span-row .span-bar {
  position: absolute; top: 5px; bottom: 5px; min-width: 2px; border-radius: 2px;
  background: var(--s, var(--w-fg3));
}
.span-row.status-running .span-bar {
  background-image: linear-gradient(45deg, rgba(255,255,255,.35) 25%, transparent 25%,
    transparent 50%, rgba(255,255,255,.35) 50%, rgba(255,255,255,.35) 75%, transparent 75%);
  background-size: 12px 12px; animation: wistro-stripes .6s linear infinite;
}
@keyframes wistro-stripes { from { background-position: 0 0; } to { background-position: 12px 0; } }
.span-row .span-dur { text-align: right; font-size: 11px; color: var(--w-fg2); font-variant-numeric: tabular-nums; }
.wistro-tv-detail { border-top: 1px solid var(--w-border2); padding: 4px 10px 10px; }
.wistro-tv-detail .wistro-kv { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; }
.wistro-tv-detail .wistro-kv b { color: var(--w-fg2); font-weight: 600; margin-right: 4px; }
.wistro-traceback { margin: 6px 0; border: 1px solid color-mix(in srgb, var(--w-error) 50%, transparent); border-radius: 3px; }
.wistro-traceback > summary { cursor: pointer; color: var(--w-error); padding: 4px 8px; overflow-wrap: anywhere; }
.wistro-traceback pre { margin: 0 6px 6px; }
.wistro-log-level { font-family: var(--w-mono); font-size: 11px; text-transform: uppercase; }
.wistro-log-level.level-error, .wistro-log-level.level-critical { color: var(--w-error); }
.wistro-log-level.level-warning, .wistro-log-level.level-warn { color: var(--w-warn); }
.wistro-tv-detail code { font-family: var(--w-mono); font-size: 11px; }
`;

/** Adds the stylesheet to the document once (and refreshes it if a newer bundle differs). */
export function ensureStyles(doc: Document = document): void {
  const existing = doc.getElementById(STYLE_ID);
  if (existing) {
    if (existing.textContent !== CSS) existing.textContent = CSS;
    return;
  }
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  (doc.head ?? doc.documentElement).appendChild(style);
}

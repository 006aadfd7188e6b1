/** The panel's CSS (JupyterLab's theme variables), added to the page once. */
const STYLE_ID = "wistro-workbench-styles";

const CSS = `
.wistro-workbench {
  min-width: 380px; overflow: auto; padding: 6px 8px 24px; box-sizing: border-box;
  background: var(--jp-layout-color1); color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size1); font-family: var(--jp-ui-font-family);
}
.wistro-wb-toolbar { display: flex; gap: 6px; align-items: center; padding: 2px 0 6px; }
.wistro-wb-toolbar label { flex: 1 1 auto; display: flex; gap: 6px; align-items: center; }
.wistro-wb-toolbar select { flex: 1 1 auto; min-width: 0; }
.wistro-workbench select, .wistro-workbench input, .wistro-workbench textarea {
  font: inherit; color: var(--jp-ui-font-color1); background: var(--jp-input-background, var(--jp-layout-color1));
  border: 1px solid var(--jp-border-color1); border-radius: 2px; padding: 2px 4px;
}
.wistro-workbench button { cursor: pointer; }
.wistro-wb-header-status { color: var(--jp-ui-font-color2); padding-bottom: 4px; }
.wistro-wb-status:empty { display: none; }
.wistro-wb-status { padding: 2px 0 4px; color: var(--jp-ui-font-color2); }
.wistro-wb-status.wistro-wb-error, .wistro-wb-header-status[data-kind="error"] { color: var(--jp-error-color1); }
.wistro-wb-status[data-kind="ok"] { color: var(--jp-success-color1); }
.wistro-wb-section { border-top: 1px solid var(--jp-border-color2); padding: 4px 0; }
.wistro-wb-section > summary { cursor: pointer; font-weight: 600; padding: 2px 0; user-select: none; }
.wistro-wb-count { font-weight: 400; color: var(--jp-ui-font-color2); }
.wistro-wb-muted { color: var(--jp-ui-font-color2); }
.wistro-wb-graph-host .wistro-fg-view { height: 280px; }
.wistro-wb-step { display: flex; gap: 6px; align-items: flex-start; padding: 3px 0; border-bottom: 1px dashed var(--jp-border-color3); }
.wistro-wb-step[data-active="false"] .wistro-wb-step-name { text-decoration: line-through; color: var(--jp-ui-font-color2); }
.wistro-wb-step-main { flex: 1 1 auto; min-width: 0; }
.wistro-wb-step-name { font-weight: 600; margin-right: 4px; }
.wistro-wb-file { font-family: var(--jp-code-font-family); font-size: 11px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.wistro-wb-tag { display: inline-block; font-size: 10px; padding: 0 4px; margin-right: 3px; border-radius: 6px; background: var(--jp-layout-color3); }
.wistro-wb-flow-tag { background: var(--jp-brand-color3); color: var(--jp-ui-font-color0); }
.wistro-wb-filters { display: flex; gap: 4px; padding-bottom: 4px; }
.wistro-wb-filters select { flex: 1 1 0; min-width: 0; }
.wistro-wb-run-list { max-height: 220px; overflow: auto; }
.wistro-wb-run { display: grid; grid-template-columns: 52px minmax(0, 1.3fr) minmax(0, 1fr) 60px 56px; gap: 6px; align-items: center; padding: 2px 2px; cursor: pointer; border-radius: 2px; }
.wistro-wb-run:hover { background: var(--jp-layout-color2); }
.wistro-wb-run.wistro-wb-selected { background: var(--jp-brand-color3); }
.wistro-wb-run-topic { font-family: var(--jp-code-font-family); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.wistro-wb-run-flows { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-size: 11px; }
.wistro-wb-run-duration { text-align: right; font-variant-numeric: tabular-nums; }
.wistro-wb-run-time { font-size: 11px; font-variant-numeric: tabular-nums; }
.wistro-wb-badge { display: inline-block; text-align: center; font-size: 10px; font-weight: 600; padding: 0 4px; border-radius: 6px; color: white; background: var(--jp-ui-font-color2); }
.wistro-wb-status-ok { background: var(--jp-success-color1); }
.wistro-wb-status-error, .wistro-wb-status-failed, .wistro-wb-status-dead { background: var(--jp-error-color1); }
.wistro-wb-status-running, .wistro-wb-status-pending { background: var(--jp-brand-color1); }
.wistro-wb-status-refused, .wistro-wb-status-inactive, .wistro-wb-status-skipped { background: var(--jp-warn-color1); }
.wistro-wb-trace:empty { display: none; }
.wistro-wb-trace { margin-top: 6px; padding: 4px; border: 1px solid var(--jp-border-color2); border-radius: 2px; background: var(--jp-layout-color0); }
.wistro-wb-trace-head { display: flex; gap: 8px; align-items: center; font-family: var(--jp-code-font-family); font-size: 11px; }
.wistro-wb-trace-head .wistro-wb-muted { flex: 1 1 auto; font-family: var(--jp-ui-font-family); }
.wistro-wb-span-tree, .wistro-wb-span-children { list-style: none; margin: 0; padding-left: 0; }
.wistro-wb-span-children { padding-left: 14px; border-left: 1px solid var(--jp-border-color2); margin-left: 6px; }
.wistro-wb-span-row { display: flex; gap: 6px; align-items: center; padding: 1px 0; }
.wistro-wb-span-row .wistro-wb-run-duration { margin-left: auto; }
.wistro-wb-span-step { font-weight: 600; }
.wistro-wb-span-error { color: var(--jp-error-color1); font-family: var(--jp-code-font-family); font-size: 11px; white-space: pre-wrap; }
.wistro-wb-dead { display: flex; gap: 6px; align-items: center; padding: 3px 0; border-bottom: 1px dashed var(--jp-border-color3); }
.wistro-wb-dead-main { flex: 1 1 auto; min-width: 0; }
.wistro-wb-logs { max-height: 180px; overflow: auto; font-family: var(--jp-code-font-family); font-size: 11px; background: var(--jp-layout-color0); padding: 2px 4px; }
.wistro-wb-log { white-space: pre-wrap; word-break: break-word; }
.wistro-wb-level-error, .wistro-wb-level-critical { color: var(--jp-error-color1); }
.wistro-wb-level-warning { color: var(--jp-warn-color1); }
.wistro-wb-log-step { color: var(--jp-brand-color1); }
.wistro-wb-state-groups { display: flex; flex-wrap: wrap; gap: 4px; padding-bottom: 4px; }
.wistro-wb-state-group.wistro-wb-selected { outline: 2px solid var(--jp-brand-color1); }
.wistro-wb-state-items:empty { display: none; }
.wistro-wb-state-items { max-height: 200px; overflow: auto; margin: 0; padding: 4px; background: var(--jp-layout-color0); font-size: 11px; }
.wistro-wb-emit-topic-label { display: flex; gap: 6px; align-items: center; padding-bottom: 4px; }
.wistro-wb-emit-topic-label select { flex: 1 1 auto; }
.wistro-wb-field { display: grid; grid-template-columns: 120px 1fr; gap: 2px 6px; align-items: center; padding: 2px 0; }
.wistro-wb-field > .wistro-wb-help, .wistro-wb-field > .wistro-wb-field-error { grid-column: 2; }
.wistro-wb-field-label { overflow: hidden; text-overflow: ellipsis; font-family: var(--jp-code-font-family); }
.wistro-wb-required { color: var(--jp-error-color1); }
.wistro-wb-help { font-size: 11px; color: var(--jp-ui-font-color2); }
.wistro-wb-field-error { color: var(--jp-error-color1); font-size: 11px; }
.wistro-wb-field-error:empty { display: none; }
.wistro-wb-invalid > input, .wistro-wb-invalid > select, .wistro-wb-invalid > textarea { border-color: var(--jp-error-color1); }
.wistro-wb-fieldset { border: 1px solid var(--jp-border-color2); margin: 2px 0; padding: 2px 6px; }
.wistro-wb-fieldset > legend { font-family: var(--jp-code-font-family); }
.wistro-wb-emit-actions { padding-top: 4px; }
`;

export function ensurePanelStyles(doc: Document): void {
  if (doc.getElementById(STYLE_ID)) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  doc.head.appendChild(style);
}

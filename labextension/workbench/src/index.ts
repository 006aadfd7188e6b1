/**
 * The JupyterLab 4 extension `wistro-workbench`: the Workbench side panel and the command
 * "Wistro: Open Workbench" (in the command palette). The panel reads from the current
 * notebook's kernel (comm target `wistro.workbench`, registered by `%load_ext wistro_jupyter`)
 * or from a running project through the server extension `wistro_jupyter.server`.
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { ILayoutRestorer } from "@jupyterlab/application";
import { ICommandPalette } from "@jupyterlab/apputils";
import { INotebookTracker } from "@jupyterlab/notebook";
import { LabIcon } from "@jupyterlab/ui-components";
import { KernelTransport } from "./kernel";
import { WorkbenchPanel, type Sources } from "./panel";
import { listProjects, ServerTransport } from "./server";

export const PLUGIN_ID = "wistro-workbench:plugin";
export const COMMAND = "wistro:open-workbench";

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">' +
  '<g class="jp-icon3" fill="#616161"><circle cx="5" cy="6" r="2.5"/><circle cx="19" cy="6" r="2.5"/>' +
  '<circle cx="12" cy="18" r="2.5"/><path d="M6.6 7.6l4.2 8.2 1.4-.7-4.2-8.2zM17.4 7.6l-4.2 8.2-1.4-.7 4.2-8.2zM7.5 5.3h9v1.4h-9z"/></g></svg>';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "Wistro Workbench: flows, steps, runs, traces, dead letters, logs, state and emit",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
  ) => {
    const sources: Sources = {
      notebook: () => tracker.currentWidget?.context.path.split("/").pop() ?? null,
      kernelTransport: () => {
        const nb = tracker.currentWidget;
        const kernel = nb?.sessionContext.session?.kernel;
        if (!nb || !kernel) return null;
        return new KernelTransport(kernel, `kernel of ${nb.context.path.split("/").pop()}`);
      },
      projects: () => listProjects(app.serviceManager.serverSettings),
      serverTransport: (p) => new ServerTransport(p.root, `project ${p.name} (${p.root})`, app.serviceManager.serverSettings),
    };
    const panel = new WorkbenchPanel(sources);
    panel.title.icon = new LabIcon({ name: "wistro-workbench:icon", svgstr: ICON_SVG });

    // a kernel source follows the current notebook and its kernel (restarts, changes)
    let watched: INotebookTracker["currentWidget"] = null;
    const onKernel = () => panel.notebookChanged();
    tracker.currentChanged.connect((_, nb) => {
      if (watched && !watched.isDisposed) watched.sessionContext.kernelChanged.disconnect(onKernel);
      watched = nb;
      nb?.sessionContext.kernelChanged.connect(onKernel);
      nb?.sessionContext.ready.then(onKernel, () => undefined);
      if (panel.isAttached) panel.notebookChanged();
    });

    app.commands.addCommand(COMMAND, {
      label: "Wistro: Open Workbench",
      caption: "The Wistro Workbench panel: flows, steps, runs, traces, logs, state, emit",
      execute: () => {
        if (!panel.isAttached) app.shell.add(panel, "right", { rank: 900 });
        app.shell.activateById(panel.id);
        void panel.refreshSources();
      },
    });
    palette?.addItem({ command: COMMAND, category: "Wistro" });
    app.shell.add(panel, "right", { rank: 900 });
    restorer?.add(panel, "wistro-workbench");
  },
};

export default plugin;

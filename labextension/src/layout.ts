/**
 * Graph layout: DOT text in, SVG text out, with Graphviz (@viz-js/viz, wasm) in the browser.
 *
 * Small graphs are laid out on the main thread; graphs with more than `workerThreshold` nodes
 * in a Web Worker started from a Blob URL of the inline runtime source (no separate file), so
 * the page keeps responding. Without `Worker` (jsdom, old hosts) everything runs on the main
 * thread. The layout function is injectable (tests use a deterministic fake).
 */

/** DOT text -> SVG text. `nodeCount` decides main thread vs worker. */
export type LayoutFn = (dot: string, nodeCount: number) => Promise<string>;

export interface VizLike {
  renderString(dot: string, options?: { format?: string; engine?: string }): string;
}

export interface VizRuntime {
  instance(): Promise<VizLike>;
}

export interface WorkerLike {
  postMessage(msg: unknown): void;
  terminate(): void;
  onmessage: ((ev: MessageEvent) => void) | null;
  onerror: ((ev: ErrorEvent | Event) => void) | null;
}

export interface VizLayoutOptions {
  /** The runtime for the main thread (loaded lazily, once). */
  loadRuntime: () => Promise<VizRuntime>;
  /** Source of the runtime module, used to start the worker; null/undefined: no worker. */
  workerSource?: string | null;
  /** Graphs with more nodes than this go to the worker (default 300). */
  workerThreshold?: number;
  /** Starts a worker from module source; default: Blob URL + `new Worker(url, {type: "module"})`. */
  createWorker?: (source: string) => WorkerLike | null;
}

export const WORKER_THRESHOLD = 300;

export function defaultCreateWorker(source: string): WorkerLike | null {
  if (typeof Worker === "undefined" || typeof Blob === "undefined" || typeof URL === "undefined") {
    return null;
  }
  if (typeof URL.createObjectURL !== "function") return null;
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return new Worker(url, { type: "module", name: "wistro-graph-layout" }) as WorkerLike;
  } catch {
    return null;
  } finally {
    // The worker has fetched (or failed to fetch) its script by the time it posts anything;
    // revoking a little later is safe in every browser.
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}

/** Imports ES module source text through a Blob URL (what anywidget itself does). */
export async function importModuleSource<T>(source: string): Promise<T> {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return (await import(/* @vite-ignore */ url)) as T;
  } finally {
    URL.revokeObjectURL(url);
  }
}

export interface VizLayout extends LayoutFn {
  /** How the last layout ran: "main" or "worker" (for tests and diagnostics). */
  lastMode: "main" | "worker" | null;
  dispose(): void;
}

export function createVizLayout(options: VizLayoutOptions): VizLayout {
  const threshold = options.workerThreshold ?? WORKER_THRESHOLD;
  const createWorker = options.createWorker ?? defaultCreateWorker;
  let vizPromise: Promise<VizLike> | null = null;
  let worker: WorkerLike | null = null;
  let workerBroken = !options.workerSource;
  let nextId = 1;
  const pending = new Map<number, { resolve: (svg: string) => void; reject: (e: Error) => void }>();

  const mainThread = async (dot: string): Promise<string> => {
    if (!vizPromise) {
      vizPromise = options.loadRuntime().then((rt) => rt.instance());
      vizPromise.catch(() => (vizPromise = null));
    }
    const viz = await vizPromise;
    return viz.renderString(dot, { format: "svg", engine: "dot" });
  };

  const failWorker = (message: string): void => {
    workerBroken = true;
    const w = worker;
    worker = null;
    if (w) w.terminate();
    for (const p of pending.values()) p.reject(new Error(message));
    pending.clear();
  };

  const getWorker = (): WorkerLike | null => {
    if (worker || workerBroken) return worker;
    try {
      worker = createWorker(options.workerSource as string);
    } catch {
      worker = null;
    }
    if (!worker) {
      workerBroken = true;
      return null;
    }
    worker.onmessage = (ev: MessageEvent) => {
      const { id, svg, error } = (ev.data ?? {}) as { id: number; svg?: string; error?: string };
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      if (typeof svg === "string") p.resolve(svg);
      else p.reject(new Error(error || "layout failed"));
    };
    worker.onerror = (ev) => {
      const msg = (ev as ErrorEvent).message || "layout worker failed to start";
      failWorker(msg);
    };
    return worker;
  };

  const inWorker = (w: WorkerLike, dot: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      w.postMessage({ id, dot });
    });

  const layout = (async (dot: string, nodeCount: number): Promise<string> => {
    if (nodeCount > threshold) {
      const w = getWorker();
      if (w) {
        try {
          const svg = await inWorker(w, dot);
          layout.lastMode = "worker";
          return svg;
        } catch (err) {
          // A Graphviz error is reported as such; a dead worker falls back to the main thread.
          if (!workerBroken) throw err;
        }
      }
    }
    const svg = await mainThread(dot);
    layout.lastMode = "main";
    return svg;
  }) as VizLayout;
  layout.lastMode = null;
  layout.dispose = () => failWorker("layout disposed");
  return layout;
}

// ------------------------------------------------------------------ cache

const caches = new WeakMap<LayoutFn, Map<string, Promise<string>>>();
const CACHE_SIZE = 24;

/** Layout through a small LRU cache keyed by the DOT text (a function of graph and flow). */
export function cachedLayout(fn: LayoutFn, dot: string, nodeCount: number): Promise<string> {
  let cache = caches.get(fn);
  if (!cache) caches.set(fn, (cache = new Map()));
  const hit = cache.get(dot);
  if (hit) {
    cache.delete(dot);
    cache.set(dot, hit);
    return hit;
  }
  const p = fn(dot, nodeCount);
  cache.set(dot, p);
  p.catch(() => cache!.delete(dot));
  while (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  return p;
}

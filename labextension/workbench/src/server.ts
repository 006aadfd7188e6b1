/**
 * The Workbench of a running `wistro dev` / `wistro start`, through the Jupyter server extension
 * `wistro_jupyter.server`: `GET /wistro/api/projects`, `POST /wistro/api/workbench?project=<root>`.
 * ServerConnection.makeRequest carries the token and the XSRF cookie.
 */
import { ServerConnection } from "@jupyterlab/services";
import { oneLine, TIMEOUT_MS, unwrap, type Op, type ProjectInfo, type Transport } from "./protocol";

function apiUrl(settings: ServerConnection.ISettings, path: string): string {
  const base = settings.baseUrl.endsWith("/") ? settings.baseUrl : `${settings.baseUrl}/`;
  return `${base}wistro/api/${path}`;
}

async function call(
  url: string,
  init: RequestInit,
  settings: ServerConnection.ISettings,
  what: string,
  timeoutMs: number,
): Promise<unknown> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, { ...init, signal: abort.signal }, settings);
  } catch (err) {
    if (abort.signal.aborted) {
      throw new Error(`no reply from the Jupyter server in ${Math.round(timeoutMs / 1000)} s (${what})`);
    }
    throw new Error(oneLine(`${what}: ${(err as Error)?.message ?? err}`));
  } finally {
    clearTimeout(timer);
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (body && typeof body === "object" && "ok" in body) return body;
  if (!response.ok) {
    const message =
      body && typeof body === "object" && "message" in body
        ? String((body as { message: unknown }).message)
        : text || response.statusText;
    if (response.status === 404 && !text.includes("{")) {
      throw new Error(`${what}: the Jupyter server has no wistro_jupyter.server extension (404)`);
    }
    throw new Error(oneLine(`${what}: HTTP ${response.status} ${message}`));
  }
  return body;
}

/** The running projects the server knows; accepts `{projects: [...]}` or a protocol reply. */
export async function listProjects(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
  timeoutMs = TIMEOUT_MS,
): Promise<ProjectInfo[]> {
  let body = await call(apiUrl(settings, "projects"), { method: "GET" }, settings, "projects", timeoutMs);
  if (body && typeof body === "object" && "ok" in body) body = unwrap(body, "projects");
  const list: unknown[] = Array.isArray(body)
    ? body
    : Array.isArray((body as { projects?: unknown })?.projects)
      ? ((body as { projects: unknown[] }).projects as unknown[])
      : [];
  const out: ProjectInfo[] = [];
  for (const item of list) {
    if (typeof item === "string") {
      out.push({ root: item, name: item.split("/").filter(Boolean).pop() ?? item });
    } else if (item && typeof item === "object") {
      const o = item as Record<string, unknown>;
      const root = String(o.root ?? o.path ?? o.project ?? "");
      if (o.running === false) continue;
      out.push({ root, name: String(o.name ?? (root.split("/").filter(Boolean).pop() || root || ".")) });
    }
  }
  return out;
}

export class ServerTransport implements Transport {
  private disposed = false;

  constructor(
    readonly root: string,
    readonly label: string,
    private readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
    private readonly timeoutMs = TIMEOUT_MS,
  ) {}

  async request<T = unknown>(op: Op, args: Record<string, unknown> = {}): Promise<T> {
    if (this.disposed) throw new Error("this source was closed");
    const url = `${apiUrl(this.settings, "workbench")}?project=${encodeURIComponent(this.root)}`;
    const init: RequestInit = {
      method: "POST",
      body: JSON.stringify({ op, args }),
      headers: { "Content-Type": "application/json" },
    };
    const body = await call(url, init, this.settings, op, this.timeoutMs);
    return unwrap<T>(body, op);
  }

  dispose(): void {
    this.disposed = true;
  }
}

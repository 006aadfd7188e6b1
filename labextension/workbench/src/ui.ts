/** Small DOM helpers of the panel. */

type Child = Node | string | number | null | undefined | false;

export function el(
  tag: string,
  attrs: Record<string, string | number | boolean | null | undefined> | null = null,
  ...children: Child[]
): HTMLElement {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "object" ? child : String(child));
  }
  return node;
}

export function clearNode(node: Element): void {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

/** A timestamp in seconds (or ms, or ISO text) as local HH:MM:SS. */
export function clock(ts: number | string | null | undefined): string {
  if (ts === null || ts === undefined || ts === "") return "";
  let date: Date;
  if (typeof ts === "number") date = new Date(ts > 1e11 ? ts : ts * 1000);
  else date = new Date(ts);
  if (Number.isNaN(date.getTime())) return String(ts);
  return date.toLocaleTimeString([], { hour12: false });
}

export function json(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    return String(value);
  }
}

export function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split("\n")[0];
}

/**
 * The Workbench protocol, the same over the kernel comm `wistro.workbench` and over the server's
 * `POST /wistro/api/workbench?project=<root>`: a request `{op, args}`, a reply `{ok: true,
 * result}` or `{ok: false, error: "<one line>"}` (over the comm each message also carries an
 * `id`, echoed in the reply).
 */

export type Op =
  | "project"
  | "graph"
  | "flows"
  | "steps"
  | "toggle"
  | "topics"
  | "emit"
  | "runs"
  | "trace"
  | "dead_letters"
  | "replay"
  | "logs"
  | "state";

export type Reply = { ok: true; result: unknown } | { ok: false; error: string };

/** Where the panel's requests go: a notebook's kernel or a running `wistro dev`/`start`. */
export interface Transport {
  /** What the source toolbar shows, e.g. "kernel of shop.ipynb". */
  readonly label: string;
  request<T = unknown>(op: Op, args?: Record<string, unknown>): Promise<T>;
  dispose(): void;
}

/** A reply's error as an Error (its one line), its result otherwise. */
export function unwrap<T>(reply: unknown, op: string): T {
  if (!reply || typeof reply !== "object" || !("ok" in reply)) {
    throw new Error(`${op}: not a Workbench reply`);
  }
  const r = reply as Reply;
  if (r.ok) return r.result as T;
  throw new Error(oneLine(String(r.error ?? "error")));
}

export function oneLine(text: string): string {
  const line = text.split("\n").find((l) => l.trim()) ?? text;
  return line.trim().slice(0, 500);
}

export const TIMEOUT_MS = 10_000;

export interface StepInfo {
  name: string;
  type?: string;
  language?: string;
  file?: string;
  flows?: string[];
  subscribes?: string[];
  emits?: string[];
  active?: boolean;
}

export interface TopicInfo {
  name: string;
  schema?: Record<string, unknown> | null;
  publishers?: string[];
  subscribers?: string[];
}

export interface RunInfo {
  trace_id: string;
  topic?: string;
  status?: string;
  start?: number | null;
  duration_ms?: number | null;
  flows?: string[];
  steps?: string[];
}

export interface SpanInfo {
  id: string;
  parent_id?: string | null;
  step?: string;
  topic?: string;
  status?: string;
  start?: number | null;
  end?: number | null;
  error?: string | null;
}

export interface TraceInfo {
  spans?: SpanInfo[];
  events?: unknown[];
  logs?: unknown[];
}

export interface DeadLetter {
  id: string;
  step?: string;
  topic?: string;
  error?: string;
  attempts?: number;
  at?: number | string | null;
  trace_id?: string | null;
}

export interface LogLine {
  time?: number | string | null;
  ts?: number | string | null;
  level?: string;
  message?: string;
  step?: string | null;
  trace_id?: string | null;
  fields?: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface ProjectInfo {
  root: string;
  name: string;
}

/** The subset of the anywidget model API the widgets use. */
export interface AnyModel {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: unknown[]): void;
}

export interface RenderProps {
  model: AnyModel;
  el: HTMLElement;
}

export type Cleanup = () => void;

// ------------------------------------------------------------------ FlowGraph state

export type NodeKind = "step" | "noop" | "api" | "cron" | "topic" | "trigger" | "flow";

export interface GraphNode {
  id: string;
  label?: string;
  kind?: NodeKind | string;
  language?: string;
  flows?: string[];
  description?: string;
  subscribes?: string[];
  emits?: string[];
  active?: boolean;
}

export interface GraphEdge {
  source: string;
  target: string;
  topic?: string;
  label?: string;
  virtual?: boolean;
  conditional?: boolean;
}

export interface GraphData {
  nodes?: GraphNode[];
  edges?: GraphEdge[];
}

export interface NodeCounts {
  deliveries?: number;
  errors?: number;
  running?: number;
}

export interface NodeDetails {
  config?: Record<string, unknown> | null;
  schema?: Record<string, unknown> | null;
  source?: string | null;
  file?: string | null;
  recent_runs?: { trace_id: string; status: string; duration_ms?: number | null }[];
  /** Topics the node's emit form offers, with their JSON Schema (null: any JSON). */
  emit_topics?: { topic: string; schema: Record<string, unknown> | null }[];
}

// ------------------------------------------------------------------ TraceView state

export interface TraceRun {
  trace_id?: string;
  status?: string;
  topic?: string;
  trigger?: string;
  version?: string | null;
  start?: number | null;
  end?: number | null;
}

export interface TraceSpan {
  id: string;
  step?: string;
  language?: string;
  topic?: string;
  event_id?: string | null;
  /** The span that emitted the event this span handles (null: the run's first event). */
  parent_id?: string | null;
  attempt?: number;
  status?: string;
  start?: number | null;
  end?: number | null;
  error?: string | null;
  traceback?: string | null;
}

export interface TraceEvent {
  id: string;
  topic?: string;
  data?: unknown;
  source?: string;
  parent_span_id?: string | null;
  ts?: number | null;
  error?: string | null;
}

export interface TraceLog {
  ts?: number | null;
  level?: string;
  message?: string;
  fields?: Record<string, unknown> | null;
  step?: string | null;
  span_id?: string | null;
}

export interface TraceStateOp {
  ts?: number | null;
  op?: string;
  group?: string;
  key?: string | null;
  value?: unknown;
  step?: string | null;
  span_id?: string | null;
}

export interface TraceData {
  run?: TraceRun;
  spans?: TraceSpan[];
  events?: TraceEvent[];
  logs?: TraceLog[];
  state_ops?: TraceStateOp[];
}

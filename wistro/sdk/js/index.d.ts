// Types for Wistro steps written in JavaScript (JSDoc) or TypeScript.
//
//   import type { StepConfig, Handler } from "wistro";   // path mapped to this file
//
//   export const config: StepConfig = { name: "notify", subscribes: ["order.paid"], emits: [] };
//   export const handler: Handler<{ order_id: string }> = async (input, ctx) => { ... };
//
// `wistro types` can generate a narrower `Topics` map (topic -> payload type); `Context<T>` then
// types `ctx.emit` per topic.

/** A JSON value, as it crosses the worker protocol. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A JSON Schema object, or a zod schema (converted to JSON Schema when the config is read). */
export type Schema = { [key: string]: unknown } | { safeParse(data: unknown): unknown };

export interface EmitDecl {
  topic: string;
  label?: string;
  conditional?: boolean;
  schema?: Schema;
}

interface StepConfigBase {
  name: string;
  description?: string;
  emits?: Array<string | EmitDecl>;
  virtual_subscribes?: string[];
  virtual_emits?: Array<string | EmitDecl>;
  flows?: string[];
  concurrency?: number;
  timeout_s?: number;
  retries?: number;
  retry_backoff_s?: number;
}

export interface EventStepConfig extends StepConfigBase {
  type?: "event";
  subscribes: string[];
  input?: Schema;
}

export interface ApiStepConfig extends StepConfigBase {
  type: "api";
  path: string;
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS";
  body?: Schema;
  query?: Schema;
  responses?: Record<number | string, Schema>;
  auth?: Record<string, unknown>;
}

export interface CronStepConfig extends StepConfigBase {
  type: "cron";
  cron: string;
  timezone?: string;
  allow_overlap?: boolean;
}

export interface NoopStepConfig extends StepConfigBase {
  type: "noop";
}

export type StepConfig = EventStepConfig | ApiStepConfig | CronStepConfig | NoopStepConfig;

/** Topic name -> payload type. The default accepts any topic with any JSON payload. */
export type TopicMap = Record<string, unknown>;

export interface Logger {
  log(level: "debug" | "info" | "warning" | "error", message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  warning(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** `ctx.state`: JSON values in groups (usually `ctx.traceId`); every operation is traced. */
export interface State {
  get<T = unknown>(group: string, key: string): Promise<T | null>;
  set(group: string, key: string, value: unknown): Promise<null>;
  delete(group: string, key: string): Promise<null>;
  getGroup<T = unknown>(group: string): Promise<Record<string, T>>;
  clear(group: string): Promise<null>;
}

/** Thrown by `ctx.emit` (its `name` is the engine's error class). */
export interface WistroError extends Error {
  name: "PayloadError" | "UndeclaredEmitError" | "UnknownTopicError" | "StateError" | string;
  wistro: true;
}

export interface Context<Topics extends TopicMap = TopicMap> {
  readonly traceId: string;
  readonly spanId: string;
  readonly step: string;
  readonly flows: string[];
  /** Aborted when the engine gives up on this delivery (the step's `timeout_s`). */
  readonly signal: AbortSignal;
  /**
   * Validated by the engine: rejects with a `WistroError` (PayloadError, UndeclaredEmitError).
   * `data` is encoded at once. When the worker's own check of the step's declared topics and
   * their schemas accepts it, the promise is already resolved and the emit travels with the
   * handler's answer (one round trip per hop); otherwise it waits for the engine's verdict
   * (docs/worker-protocol.md, "Deferred emits").
   */
  emit<K extends keyof Topics & string>(topic: K, data: Topics[K]): Promise<null>;
  readonly state: State;
  readonly logger: Logger;
}

/** What an api step's handler receives (the engine's ApiRequest as JSON). */
export interface ApiRequest<Body = unknown, Query = Record<string, unknown>> {
  method: string;
  path: string;
  path_params: Record<string, string>;
  query: Query;
  /** lower-case names; repeated headers joined with ", " */
  headers: Record<string, string>;
  body: Body;
  raw_body: string;
  /** verified claims; {} without auth */
  auth: Record<string, unknown>;
}

export interface ApiResponse<Body = unknown> {
  status: number;
  body?: Body;
  headers?: Record<string, string>;
}

/** An event step's handler: `(input, ctx)`; a cron step's may take `(ctx)` only. */
export type Handler<Input = any, Topics extends TopicMap = TopicMap> = (
  input: Input,
  ctx: Context<Topics>,
) => Promise<unknown> | unknown;

export type ApiHandler<Body = unknown, Topics extends TopicMap = TopicMap> = (
  req: ApiRequest<Body>,
  ctx: Context<Topics>,
) => Promise<ApiResponse> | ApiResponse;

export type CronHandler<Topics extends TopicMap = TopicMap> = (ctx: Context<Topics>) => Promise<unknown> | unknown;

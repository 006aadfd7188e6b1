// The Wistro JavaScript/TypeScript worker: one long-lived process per project, speaking the
// framed JSON protocol of docs/worker-protocol.md over stdin/stdout. stderr is its log.
//
// Environment (set by wistro/runtimes/node.py):
//   WISTRO_ESBUILD    folder of the esbuild package (only needed for .ts steps)
//   WISTRO_BUILD_DIR  where compiled TypeScript is cached (by source hash)
//   WISTRO_LANGUAGE   the language reported in `hello` (default "javascript")
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { format } from "node:util";

const MAX_FRAME = 64 * 1024 * 1024;

// stdout carries the protocol: whatever user code prints goes to stderr (the worker's log).
const writeOut = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, encoding, cb) => process.stderr.write(chunk, encoding, cb);
for (const name of ["log", "info", "debug"]) {
  console[name] = (...args) => process.stderr.write(`${format(...args)}\n`);
}

// ------------------------------------------------------------------ framing
let outTexts = []; // frames (JSON text) to write on the next flush
let flushScheduled = false;

function send(msg) {
  sendText(JSON.stringify(msg)); // throws when a value is not JSON
}

function sendText(text) {
  outTexts.push(text);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

function flush() {
  flushScheduled = false;
  if (deferring.size) {
    // the handlers that emitted went on waiting for something else: their emits go out now
    for (const inv of deferring) sendEmits(inv);
    deferring.clear();
  }
  const texts = outTexts;
  if (texts.length === 0) return;
  outTexts = [];
  // one buffer, one write for every frame of this turn
  const sizes = new Array(texts.length);
  let total = 0;
  for (let i = 0; i < texts.length; i++) {
    sizes[i] = Buffer.byteLength(texts[i], "utf8");
    total += 4 + sizes[i];
  }
  const data = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    data.writeUInt32BE(sizes[i], at);
    at += 4;
    at += data.write(texts[i], at, "utf8");
  }
  writeOut(data);
}

let inBuf = Buffer.alloc(0);
process.stdin.on("data", (chunk) => {
  inBuf = inBuf.length ? Buffer.concat([inBuf, chunk]) : chunk;
  let pos = 0;
  while (inBuf.length - pos >= 4) {
    const size = inBuf.readUInt32BE(pos);
    if (size > MAX_FRAME) {
      process.stderr.write(`wistro worker: frame of ${size} bytes is too large\n`);
      realExit(2);
    }
    if (inBuf.length - pos - 4 < size) break;
    const text = inBuf.toString("utf8", pos + 4, pos + 4 + size);
    pos += 4 + size;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      process.stderr.write(`wistro worker: a frame is not JSON: ${e.message}\n`);
      realExit(2);
    }
    dispatch(msg);
  }
  inBuf = pos === inBuf.length ? Buffer.alloc(0) : inBuf.subarray(pos);
});
process.stdin.on("end", () => {
  // The engine is gone (it closes stdin only by dying): nothing can answer a call any more, so
  // there is nothing to wait for.
  flush();
  realExit(0);
});

process.on("unhandledRejection", (reason) => {
  process.stderr.write(`wistro worker: unhandled rejection: ${reason?.stack ?? reason}\n`);
});

// ------------------------------------------------------------------ dying
// A handler that ends the process (process.exit, an exception thrown outside any promise) takes
// every invoke in flight with it. Before the worker goes, it sends what it has queued (the logs
// the handler wrote first) and a `fatal` error for the invokes of the step file that caused it:
// the engine fails those, and sends the others again to a fresh worker (they were not at fault).
const realExit = process.exit.bind(process);
let dying = false;

function die(error, stack) {
  if (dying) return;
  dying = true;
  const culprits = culpritsOf(stack);
  for (const inv of culprits) {
    const payload = { ...errorPayload(error, inv.file), type: "WorkerCrashed", fatal: true };
    if (inv.emits !== null) sendEmits(inv);
    outTexts.push(JSON.stringify({ t: "error", id: inv.id, error: payload }));
  }
  flush();
  return culprits;
}

/** The invokes in flight of the innermost step file on the stack (where the exit came from). */
function culpritsOf(stack) {
  const files = new Set();
  for (const inv of invokes.values()) files.add(inv.file);
  for (const raw of String(stack ?? "").split("\n")) {
    const m = raw.match(FRAME);
    if (!m) continue;
    const path = framePath(m[1]);
    if (files.has(path)) return [...invokes.values()].filter((inv) => inv.file === path);
  }
  return [];
}

process.exit = (code) => {
  const n = code === undefined ? (process.exitCode ?? 0) : code;
  const site = new Error(`process.exit(${n}) called in the handler: the worker exits (exit code ${n})`);
  Error.captureStackTrace(site, process.exit);
  die(site, site.stack);
  realExit(n);
};

process.on("uncaughtException", (e) => {
  const error = e instanceof Error ? e : new Error(`non-Error thrown: ${safeString(e)}`);
  const culprits = die(error, error.stack) ?? [];
  process.stderr.write(
    `wistro worker: uncaught exception${culprits.length ? "" : " (no step to blame)"}: ${error.stack ?? error}\n`,
  );
  realExit(1);
});
process.on("exit", () => flush()); // whatever is queued (logs) goes out before the worker does

// ------------------------------------------------------------------ dispatch
const invokes = new Map(); // engine invoke id -> state
const calls = new Map(); // our call id -> {resolve, reject}
let callSeq = 0;
let shuttingDown = false;

function dispatch(msg) {
  switch (msg.t) {
    case "load":
      load(msg).then(
        (value) => send({ t: "result", id: msg.id, ok: true, value }),
        (e) => send({ t: "error", id: msg.id, error: errorPayload(e, null) }),
      );
      break;
    case "invoke":
      runInvoke(msg);
      break;
    case "cancel": {
      const inv = invokes.get(msg.id);
      if (inv) {
        inv.cancelled = true;
        takeEmits(inv); // the engine gave up on the invoke: its deferred emits are dropped
        inv.abort?.abort(new Error("cancelled by the engine (timeout)"));
        invokes.delete(msg.id); // the engine gave up on it: shutdown need not wait for it
        maybeExit();
      }
      break;
    }
    case "result":
    case "error": {
      const c = calls.get(msg.id);
      if (!c) break;
      calls.delete(msg.id);
      if (msg.t === "result") c.resolve(msg.value ?? null);
      else c.reject(toError(msg.error, c.site));
      break;
    }
    case "shutdown":
      shuttingDown = true;
      maybeExit();
      break;
    default:
      process.stderr.write(`wistro worker: unknown message type ${JSON.stringify(msg.t)}\n`);
  }
}

function maybeExit() {
  if (shuttingDown && invokes.size === 0) {
    flush();
    realExit(0);
  }
}

function toError(err, site) {
  const e = new Error(err?.message ?? "error");
  e.name = err?.type ?? "Error";
  e.wistro = true;
  if (site?.stack) {
    const frames = site.stack.split("\n").slice(1).join("\n");
    e.stack = `${e.name}: ${e.message}\n${frames}`;
  }
  return e;
}

// ------------------------------------------------------------------ loading step files
const modules = new Map(); // file -> Promise<module>

const loaded = new Map(); // file -> module, once imported

function stepModule(file) {
  let p = modules.get(file);
  if (!p) {
    p = importStep(file);
    modules.set(file, p);
    p.then(
      (mod) => loaded.set(file, mod),
      () => modules.delete(file),
    );
  }
  return p;
}

async function importStep(file) {
  const url = /\.(ts|mts|cts)$/.test(file) ? await compileTs(file) : pathToFileURL(file).href;
  const v = statSync(file).mtimeMs;
  return import(`${url}?v=${v}`);
}

let esbuildPromise = null;
function esbuild() {
  if (!esbuildPromise) {
    const dir = process.env.WISTRO_ESBUILD;
    if (!dir) {
      const e = new Error(
        "TypeScript steps need esbuild; it is installed on first use by wistro (npm install)",
      );
      e.name = "ToolchainError";
      throw e;
    }
    const require = createRequire(join(dir, "package.json"));
    esbuildPromise = Promise.resolve(require(dir));
  }
  return esbuildPromise;
}

async function compileTs(file) {
  const source = readFileSync(file);
  const es = await esbuild();
  const hash = createHash("sha256")
    .update(es.version ?? "")
    .update("\0")
    .update(file)
    .update("\0")
    .update(source)
    .digest("hex")
    .slice(0, 16);
  const buildDir = process.env.WISTRO_BUILD_DIR || join(dirname(file), ".wistro-build");
  const out = join(buildDir, `${basename(file).replace(/\.[cm]?ts$/, "")}.${hash}.mjs`);
  if (!existsSync(out)) {
    mkdirSync(buildDir, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp.mjs`;
    try {
      await es.build({
        entryPoints: [file],
        outfile: tmp,
        bundle: true,
        packages: "external",
        platform: "node",
        format: "esm",
        target: "node18",
        sourcemap: "inline",
        sourcesContent: false,
        logLevel: "silent",
        absWorkingDir: dirname(file),
      });
    } catch (e) {
      const first = e.errors?.[0];
      const err = new Error(first ? first.text : e.message);
      err.name = "TypeScriptError";
      if (first?.location) {
        err.file = resolve(dirname(file), first.location.file);
        err.line = first.location.line;
      }
      throw err;
    }
    renameSync(tmp, out);
  }
  return pathToFileURL(out).href;
}

const SCHEMA_KEYS = ["input", "body", "query"];

async function load(msg) {
  const steps = [];
  const errors = [];
  await Promise.all(
    msg.files.map(async (file) => {
      try {
        const mod = await stepModule(file);
        let config = mod.config ?? mod.default?.config;
        if (config === undefined) {
          errors.push({ file, message: "no `config` exported", line: null });
          return;
        }
        if (typeof config === "function") config = await config();
        config = await jsonConfig(config, file);
        if (typeof (mod.handler ?? mod.default?.handler) !== "function" && config?.type !== "noop") {
          errors.push({
            file,
            message: "no `handler` exported (export async function handler(input, ctx))",
            line: configLine(file),
          });
          return;
        }
        steps.push({ file, config, line: configLine(file) });
      } catch (e) {
        const where = e?.name === "SyntaxError" ? syntaxErrorLine(e, file) : errorLocation(e, file);
        const name = e?.name ?? "Error";
        const what = name === "SyntaxError" ? "syntax error" : "importing the step failed";
        errors.push({
          file,
          message: `${what}: ${name}: ${e?.message ?? e}`,
          line: e?.line ?? where.line,
        });
      }
    }),
  );
  return { steps, errors };
}

function syntaxErrorLine(e, file) {
  // Node's ESM loader does not put the location of a syntax error in its stack: ask `node --check`
  const found = errorLocation(e, file);
  if (found.line !== null && found.file === file) return found;
  if (/\.[cm]?ts$/.test(file)) return found;
  try {
    const r = spawnSync(process.execPath, ["--input-type=module", "--check"], {
      input: readFileSync(file),
      encoding: "utf8",
      timeout: 10000,
    });
    const m = (r.stderr || "").match(/^\[stdin\]:(\d+)\s*$/m);
    if (m) return { file, line: Number(m[1]) };
  } catch {}
  return found;
}

function configLine(file) {
  try {
    const lines = readFileSync(file, "utf8").split("\n");
    const i = lines.findIndex((l) => /^\s*export\s+(const|let|var)\s+config\b/.test(l));
    return i >= 0 ? i + 1 : null;
  } catch {
    return null;
  }
}

function isZod(s) {
  return (
    s !== null &&
    typeof s === "object" &&
    typeof s.safeParse === "function" &&
    ("_def" in s || "_zod" in s)
  );
}

async function zodToJson(schema, file) {
  const require = createRequire(file);
  const tryImport = async (name) => {
    try {
      return await import(pathToFileURL(require.resolve(name)).href);
    } catch {
      return null;
    }
  };
  let out = null;
  const z = await tryImport("zod");
  const toJSONSchema = z?.toJSONSchema ?? z?.z?.toJSONSchema ?? z?.default?.toJSONSchema;
  if ("_zod" in schema && typeof toJSONSchema === "function") {
    out = toJSONSchema(schema);
  } else {
    const z2j = await tryImport("zod-to-json-schema");
    const fn = z2j?.zodToJsonSchema ?? z2j?.default?.zodToJsonSchema ?? z2j?.default;
    if (typeof fn === "function") out = fn(schema, { $refStrategy: "none" });
    else if (typeof toJSONSchema === "function") out = toJSONSchema(schema);
  }
  if (out === null) {
    throw new Error(
      "a zod schema needs zod v4 (z.toJSONSchema) or the zod-to-json-schema package in the project",
    );
  }
  const { $schema: _drop, ...rest } = out;
  return rest;
}

async function jsonConfig(config, file) {
  if (config === null || typeof config !== "object") return config;
  const out = { ...config };
  for (const key of SCHEMA_KEYS) {
    if (isZod(out[key])) out[key] = await zodToJson(out[key], file);
  }
  if (Array.isArray(out.emits)) {
    out.emits = await Promise.all(
      out.emits.map(async (e) =>
        e && typeof e === "object" && isZod(e.schema)
          ? { ...e, schema: await zodToJson(e.schema, file) }
          : e,
      ),
    );
  }
  if (out.responses && typeof out.responses === "object") {
    const responses = {};
    for (const [k, v] of Object.entries(out.responses)) {
      responses[k] = isZod(v) ? await zodToJson(v, file) : v;
    }
    out.responses = responses;
  }
  return JSON.parse(JSON.stringify(out));
}

// ------------------------------------------------------------------ invoking
function call(inv, op, args, track = true) {
  const id = ++callSeq;
  const site = {}; // where the handler called: the stack of an error this call answers
  if (track) Error.captureStackTrace(site, call);
  const p = new Promise((resolve, reject) => calls.set(id, { resolve, reject, site }));
  const rec = { p, observed: false, error: null, done: false };
  p.then(
    () => {
      rec.done = true;
    },
    (e) => {
      rec.error = e;
      rec.done = true;
    },
  );
  if (track) inv.calls.push(rec);
  if (inv.emits !== null) sendEmits(inv); // deferred emits go first: the engine sees them in order
  try {
    send({ t: "call", id, invoke: inv.id, op, args });
  } catch (e) {
    calls.delete(id);
    const err = new TypeError(`${op}: the value is not JSON: ${e.message}`);
    rec.error = err;
    return Promise.reject(err);
  }
  return {
    then(a, b) {
      rec.observed = true;
      return p.then(a, b);
    },
    catch(b) {
      rec.observed = true;
      return p.catch(b);
    },
    finally(f) {
      rec.observed = true;
      return p.finally(f);
    },
  };
}

// `ctx`, `ctx.state` and `ctx.logger` have their methods as own (bound) functions, so handlers may
// destructure them: `async (input, { emit, logger }) => ...`. State and logger are made on first use.
function makeLogger(inv) {
  const log = (level, message, fields) => {
    call(inv, "log", { level, message: String(message), fields: fields ?? {} }, false);
  };
  return {
    log,
    debug: (m, f) => log("debug", m, f),
    info: (m, f) => log("info", m, f),
    warn: (m, f) => log("warning", m, f),
    warning: (m, f) => log("warning", m, f),
    error: (m, f) => log("error", m, f),
  };
}

function makeState(inv) {
  return {
    get: (group, key) => call(inv, "state.get", { group, key }),
    set: (group, key, value) =>
      call(inv, "state.set", { group, key, value: value === undefined ? null : value }),
    delete: (group, key) => call(inv, "state.delete", { group, key }),
    getGroup: (group) => call(inv, "state.get_group", { group }),
    clear: (group) => call(inv, "state.clear", { group }),
  };
}

/** The handler's `ctx` (see index.d.ts). */
class Ctx {
  constructor(inv, info) {
    this._inv = inv;
    this.traceId = info.trace_id;
    this.spanId = info.span_id;
    this.step = info.step;
    this.flows = info.flows ?? [];
    this.emit = (topic, data) => emit(inv, topic, data === undefined ? null : data);
    this._state = null;
    this._logger = null;
  }
  get state() {
    return (this._state ??= makeState(this._inv));
  }
  get logger() {
    return (this._logger ??= makeLogger(this._inv));
  }
  get signal() {
    return signalOf(this._inv);
  }
}

function signalOf(inv) {
  if (!inv.abort) {
    inv.abort = new AbortController();
    if (inv.cancelled) inv.abort.abort(new Error("cancelled by the engine (timeout)"));
  }
  return inv.abort.signal;
}

async function runInvoke(msg) {
  const inv = {
    id: msg.id,
    file: msg.file,
    calls: [],
    cancelled: false,
    abort: null,
    emits: null,
    checks: null,
  };
  invokes.set(msg.id, inv);
  const key = `${msg.file}\0${msg.step}`;
  if (msg.emits !== undefined) stepChecks.set(key, compileChecks(msg.emits));
  inv.checks = stepChecks.get(key) ?? null;
  let reply;
  try {
    const mod = loaded.get(msg.file) ?? (await stepModule(msg.file));
    const handler = mod.handler ?? mod.default?.handler;
    if (typeof handler !== "function") throw new Error("the step exports no `handler` function");
    const ctx = new Ctx(inv, msg.ctx ?? {});
    const config = mod.config ?? mod.default?.config;
    const value =
      config?.type === "cron" && handler.length <= 1
        ? await handler(ctx)
        : await handler(msg.data, ctx);
    if (!allSettled(inv)) await settleCalls(inv);
    const unobserved = inv.calls.find((c) => c.error && !c.observed);
    if (unobserved) throw unobserved.error;
    reply = value === undefined || value === null ? null : { t: "result", id: msg.id, ok: true, value };
  } catch (e) {
    await settleCalls(inv);
    reply = { t: "error", id: msg.id, error: errorPayload(e, msg.file) };
  }
  invokes.delete(msg.id);
  const emits = takeEmits(inv);
  if (inv.cancelled) {
    // the engine gave up on it: it drops the answer, which only tells it the handler ended (an
    // invoke not answered within the grace period after its cancel gets the worker killed)
    sendText(`{"t":"result","id":${msg.id},"ok":true,"value":null}`);
  } else {
    // the emits the handler made since its last frame travel in its answer, before it
    const tail = emits === null ? "}" : `,"emits":[${emits}]}`;
    let text;
    try {
      text = reply === null ? `{"t":"result","id":${msg.id},"ok":true,"value":null}` : JSON.stringify(reply);
    } catch (e) {
      text = JSON.stringify({ t: "error", id: msg.id, error: errorPayload(e, msg.file) });
    }
    sendText(text.slice(0, -1) + tail);
  }
  maybeExit();
}

// ------------------------------------------------------------------ deferred emits
// An emit the worker's own check of the step's declared topics and their schemas accepts
// (`invoke.emits`, docs/worker-protocol.md) needs no round trip: it is encoded now (a snapshot)
// and sent with the invoke's next frame (its answer, usually), or on the next turn of the event
// loop if the handler goes on waiting for something else. The engine validates it again and
// publishes it. An emit the check refuses or cannot decide goes the old way (a `call` the
// handler awaits), so a refused emit still rejects where the handler awaits it.
const stepChecks = new Map(); // `${file}\0${step}` -> Map(topic -> check) from invoke.emits
const deferring = new Set(); // invokes with deferred emits not sent yet
const RESOLVED = Promise.resolve(null);

function emit(inv, topic, data) {
  const check = inv.checks?.get(topic);
  if (check !== undefined && !inv.cancelled && invokes.has(inv.id) && plain(data, 0)) {
    if (check(data) === VALID) {
      const part = `{"topic":${JSON.stringify(topic)},"data":${JSON.stringify(data)}}`;
      if (inv.emits === null) {
        inv.emits = part;
        deferring.add(inv);
        if (!flushScheduled) {
          flushScheduled = true;
          setImmediate(flush);
        }
      } else {
        inv.emits += `,${part}`;
      }
      return RESOLVED;
    }
  }
  return call(inv, "emit", { topic, data });
}

function takeEmits(inv) {
  const emits = inv.emits;
  if (emits !== null) {
    inv.emits = null;
    deferring.delete(inv);
  }
  return emits;
}

function sendEmits(inv) {
  const emits = takeEmits(inv);
  if (emits !== null && !inv.cancelled) {
    sendText(`{"t":"emits","invoke":${inv.id},"emits":[${emits}]}`);
  }
}

// ------------------------------------------------------------------ the worker's emit check
// A subset of JSON Schema (draft 7, as the engine's fastjsonschema reads it), three-valued:
// VALID only when the engine is certain to accept the payload too; UNKNOWN for any keyword,
// value or schema outside the subset (the emit then takes the round trip).
const VALID = 1;
const INVALID = 0;
const UNKNOWN = -1;
const ANNOTATIONS = new Set([
  "title",
  "description",
  "examples",
  "default",
  "$comment",
  "deprecated",
  "readOnly",
  "writeOnly",
  "$defs",
  "definitions",
]);
const DRAFT7 = new Set([
  "http://json-schema.org/draft-07/schema#",
  "http://json-schema.org/draft-07/schema",
]);
const unknown = () => UNKNOWN;
const valid = () => VALID;
const TYPES = {
  null: (v) => v === null,
  boolean: (v) => typeof v === "boolean",
  string: (v) => typeof v === "string",
  number: (v) => typeof v === "number",
  integer: (v) => typeof v === "number" && Number.isInteger(v),
  array: (v) => Array.isArray(v),
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
};

function compileChecks(table) {
  const out = new Map();
  if (table === null || typeof table !== "object") return out;
  for (const [topic, schema] of Object.entries(table)) {
    let check;
    try {
      check = compileSchema(schema, schema, new Map());
    } catch {
      check = unknown;
    }
    out.set(topic, check);
  }
  return out;
}

/** A value JSON keeps as it is: plain objects and arrays, strings, finite numbers, booleans, null. */
function plain(v, depth) {
  switch (typeof v) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(v);
    case "object": {
      if (v === null) return true;
      if (depth > 64) return false;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) if (!plain(v[i], depth + 1)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return false;
      if (typeof v.toJSON === "function") return false;
      for (const k in v) if (!plain(v[k], depth + 1)) return false;
      return true;
    }
    default:
      return false; // undefined, functions, symbols, bigint
  }
}

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function codePoints(s) {
  return /[\uD800-\uDFFF]/.test(s) ? [...s].length : s.length;
}

function isCount(n) {
  return Number.isInteger(n) && n >= 0;
}

function compileSchema(schema, root, refs) {
  if (schema === true) return valid;
  if (schema === false) return () => INVALID;
  if (!isPlainObject(schema)) return unknown;
  if (typeof schema.$ref === "string") return compileRef(schema.$ref, root, refs); // siblings ignored
  const checks = [];
  const has = (k) => Object.hasOwn(schema, k);
  for (const key of Object.keys(schema)) {
    if (ANNOTATIONS.has(key)) continue;
    const value = schema[key];
    switch (key) {
      case "$schema":
        if (schema !== root || !DRAFT7.has(value)) return unknown;
        break;
      case "type": {
        const names = Array.isArray(value) ? value : [value];
        if (names.length === 0 || !names.every((n) => Object.hasOwn(TYPES, n))) return unknown;
        const tests = names.map((n) => TYPES[n]);
        checks.push((v) => (tests.some((t) => t(v)) ? VALID : INVALID));
        break;
      }
      case "properties": {
        if (!isPlainObject(value)) return unknown;
        const props = Object.entries(value).map(([k, sub]) => [k, compileSchema(sub, root, refs)]);
        checks.push((v) => {
          if (!isPlainObject(v)) return VALID;
          let out = VALID;
          for (const [k, check] of props) {
            if (!Object.hasOwn(v, k)) continue;
            const r = check(v[k]);
            if (r === INVALID) return INVALID;
            if (r === UNKNOWN) out = UNKNOWN;
          }
          return out;
        });
        break;
      }
      case "required": {
        if (!Array.isArray(value) || !value.every((k) => typeof k === "string")) return unknown;
        checks.push((v) => (!isPlainObject(v) || value.every((k) => Object.hasOwn(v, k)) ? VALID : INVALID));
        break;
      }
      case "additionalProperties": {
        if (has("patternProperties")) return unknown;
        const known = new Set(isPlainObject(schema.properties) ? Object.keys(schema.properties) : []);
        const check = compileSchema(value, root, refs);
        checks.push((v) => {
          if (!isPlainObject(v)) return VALID;
          let out = VALID;
          for (const k of Object.keys(v)) {
            if (known.has(k)) continue;
            const r = check(v[k]);
            if (r === INVALID) return INVALID;
            if (r === UNKNOWN) out = UNKNOWN;
          }
          return out;
        });
        break;
      }
      case "items": {
        if (Array.isArray(value)) return unknown; // tuples: not in the subset
        const check = compileSchema(value, root, refs);
        checks.push((v) => {
          if (!Array.isArray(v)) return VALID;
          let out = VALID;
          for (const item of v) {
            const r = check(item);
            if (r === INVALID) return INVALID;
            if (r === UNKNOWN) out = UNKNOWN;
          }
          return out;
        });
        break;
      }
      case "minItems":
      case "maxItems":
      case "minProperties":
      case "maxProperties":
      case "minLength":
      case "maxLength": {
        if (!isCount(value)) return unknown;
        const min = key.startsWith("min");
        const size = key.endsWith("Items")
          ? (v) => (Array.isArray(v) ? v.length : null)
          : key.endsWith("Properties")
            ? (v) => (isPlainObject(v) ? Object.keys(v).length : null)
            : (v) => (typeof v === "string" ? codePoints(v) : null);
        checks.push((v) => {
          const n = size(v);
          if (n === null) return VALID;
          return (min ? n >= value : n <= value) ? VALID : INVALID;
        });
        break;
      }
      case "minimum":
      case "maximum":
      case "exclusiveMinimum":
      case "exclusiveMaximum": {
        if (typeof value !== "number" || !Number.isFinite(value)) return unknown;
        const ok = {
          minimum: (n) => n >= value,
          maximum: (n) => n <= value,
          exclusiveMinimum: (n) => n > value,
          exclusiveMaximum: (n) => n < value,
        }[key];
        checks.push((v) => {
          if (typeof v === "boolean") return UNKNOWN; // a bool is a number to Python here
          if (typeof v !== "number") return VALID;
          if (Number.isInteger(v) && !Number.isSafeInteger(v)) return UNKNOWN;
          return ok(v) ? VALID : INVALID;
        });
        break;
      }
      case "enum":
      case "const": {
        const options = key === "enum" ? value : [value];
        if (!Array.isArray(options) || !options.every((o) => o === null || typeof o === "string")) {
          return unknown;
        }
        checks.push((v) => (options.includes(v) ? VALID : INVALID));
        break;
      }
      case "anyOf":
      case "allOf":
      case "oneOf": {
        if (!Array.isArray(value) || value.length === 0) return unknown;
        const subs = value.map((sub) => compileSchema(sub, root, refs));
        checks.push((v) => combine(key, subs, v));
        break;
      }
      case "not": {
        const sub = compileSchema(value, root, refs);
        checks.push((v) => {
          const r = sub(v);
          return r === UNKNOWN ? UNKNOWN : r === VALID ? INVALID : VALID;
        });
        break;
      }
      default:
        return unknown; // outside the subset: the engine decides
    }
  }
  if (checks.length === 0) return valid;
  if (checks.length === 1) return checks[0];
  return (v) => {
    let out = VALID;
    for (const check of checks) {
      const r = check(v);
      if (r === INVALID) return INVALID;
      if (r === UNKNOWN) out = UNKNOWN;
    }
    return out;
  };
}

function combine(kind, subs, v) {
  let valids = 0;
  let unknowns = 0;
  for (const sub of subs) {
    const r = sub(v);
    if (r === VALID) valids++;
    else if (r === UNKNOWN) unknowns++;
    else if (kind === "allOf") return INVALID;
  }
  if (kind === "anyOf") return valids > 0 ? VALID : unknowns > 0 ? UNKNOWN : INVALID;
  if (unknowns > 0) return UNKNOWN;
  if (kind === "allOf") return VALID;
  return valids === 1 ? VALID : INVALID; // oneOf
}

function compileRef(ref, root, refs) {
  const found = refs.get(ref);
  if (found !== undefined) return found;
  let target;
  if (ref === "#") target = root;
  else {
    const m = /^#\/(\$defs|definitions)\/([A-Za-z0-9_.-]+)$/.exec(ref);
    target = m && isPlainObject(root[m[1]]) && Object.hasOwn(root[m[1]], m[2]) ? root[m[1]][m[2]] : undefined;
  }
  if (target === undefined) return unknown;
  let compiled = null; // compiled on first use: a model may refer to itself
  const lazy = (v) => (compiled ??= compileSchema(target, root, refs))(v);
  refs.set(ref, lazy);
  return lazy;
}

function allSettled(inv) {
  for (const c of inv.calls) if (!c.done) return false;
  return true;
}

async function settleCalls(inv) {
  // wait for every call this invoke made, including those made while waiting
  let n = 0;
  while (n < inv.calls.length) {
    const batch = inv.calls.slice(n);
    n = inv.calls.length;
    await Promise.allSettled(batch.map((c) => c.p));
  }
}

// ------------------------------------------------------------------ errors
const FRAME = /(?:\(|at )((?:file:\/\/)?\/[^\s():]+):(\d+):(\d+)\)?\s*$/;

function framePath(p) {
  if (p.startsWith("file://")) {
    try {
      return fileURLToPath(p.split("?")[0]);
    } catch {
      return p;
    }
  }
  return p.split("?")[0];
}

function errorLocation(e, file) {
  const stack = typeof e?.stack === "string" ? e.stack : "";
  let first = null;
  for (const raw of stack.split("\n")) {
    const m = raw.match(FRAME);
    if (!m) continue;
    const path = framePath(m[1]);
    if (file && path === file) return { file, line: Number(m[2]) };
    if (!first && !path.includes("/node_modules/") && !path.endsWith("/worker.mjs")) {
      first = { file: path, line: Number(m[2]) };
    }
  }
  // a syntax error names the file on the first line: "/path/x.step.js:3"
  const head = stack.split("\n")[0] ?? "";
  const hm = head.match(/^((?:file:\/\/)?\/\S+?):(\d+)$/);
  if (hm && (!file || framePath(hm[1]) === file)) return { file: framePath(hm[1]), line: Number(hm[2]) };
  return first ?? { file: null, line: null };
}

function errorPayload(e, file) {
  if (!(e instanceof Error)) {
    return { type: "Error", message: `non-Error thrown: ${safeString(e)}`, file, line: null };
  }
  const where = e.file ? { file: e.file, line: e.line ?? null } : errorLocation(e, file);
  return {
    type: e.name || "Error",
    message: e.message,
    stack: e.stack,
    file: where.file ?? file,
    line: where.line,
  };
}

function safeString(v) {
  try {
    return typeof v === "string" ? v : JSON.stringify(v);
  } catch {
    return String(v);
  }
}

send({
  t: "hello",
  language: process.env.WISTRO_LANGUAGE || "javascript",
  version: process.version,
  pid: process.pid,
});

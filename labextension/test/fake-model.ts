/** A tiny stand-in for the anywidget model: get/set/on/off/save_changes/send + an emitter. */
type Cb = (...args: any[]) => void;

export class FakeModel {
  state: Record<string, unknown>;
  saves = 0;
  sent: unknown[] = [];
  private listeners = new Map<string, Set<Cb>>();

  constructor(state: Record<string, unknown> = {}) {
    this.state = { ...state };
  }

  get(name: string): any {
    return this.state[name];
  }

  /** Like Backbone: stores the value and fires `change:name` when it differs. */
  set(name: string, value: unknown): void {
    const old = this.state[name];
    this.state[name] = value;
    if (old !== value) this.emit(`change:${name}`, value);
  }

  save_changes(): void {
    this.saves++;
  }

  send(content: unknown): void {
    this.sent.push(content);
  }

  on(event: string, cb: Cb): void {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(cb);
  }

  off(event?: string | null, cb?: Cb | null): void {
    if (!event) this.listeners.clear();
    else if (!cb) this.listeners.delete(event);
    else this.listeners.get(event)?.delete(cb);
  }

  emit(event: string, ...args: unknown[]): void {
    for (const cb of [...(this.listeners.get(event) ?? [])]) cb(...args);
  }

  listenerCount(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  /** What Python does: replace a trait with a new value (a change event fires). */
  pythonSets(name: string, value: unknown): void {
    this.set(name, value);
  }
}

/** Waits for pending promise callbacks (layouts resolve asynchronously). */
export async function flush(times = 5): Promise<void> {
  for (let i = 0; i < times; i++) await new Promise((r) => setTimeout(r, 0));
}

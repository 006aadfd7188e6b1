/** The Workbench over a notebook's kernel: a comm to the target `wistro.workbench`. */
import type { Kernel, KernelMessage } from "@jupyterlab/services";
import { oneLine, TIMEOUT_MS, unwrap, type Op, type Transport } from "./protocol";

export const COMM_TARGET = "wistro.workbench";

interface Pending {
  op: string;
  resolve: (value: unknown) => void;
  reject: (reason: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const NO_TARGET =
  "the kernel has no Workbench (comm target wistro.workbench): run %load_ext wistro_jupyter in the notebook";

export class KernelTransport implements Transport {
  private comm: Kernel.IComm | null = null;
  private readonly pending = new Map<string, Pending>();
  private nextId = 1;
  private disposed = false;

  constructor(
    private readonly kernel: Kernel.IKernelConnection,
    readonly label: string,
    private readonly timeoutMs = TIMEOUT_MS,
  ) {}

  request<T = unknown>(op: Op, args: Record<string, unknown> = {}): Promise<T> {
    if (this.disposed) return Promise.reject(new Error("this source was closed"));
    if (this.kernel.isDisposed) return Promise.reject(new Error("the kernel is gone"));
    const id = `wb-${Date.now().toString(36)}-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        reject(
          new Error(
            `no reply from the kernel in ${Math.round(this.timeoutMs / 1000)} s (op ${op}): ` +
              "is it busy, or is %load_ext wistro_jupyter not loaded?",
          ),
        );
      }, this.timeoutMs);
      this.pending.set(id, { op, resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        this.ensureComm().send({ id, op, args } as never);
      } catch (err) {
        this.settle(id, null, new Error(oneLine(String((err as Error)?.message ?? err))));
      }
    });
  }

  private ensureComm(): Kernel.IComm {
    if (this.comm && !this.comm.isDisposed) return this.comm;
    const comm = this.kernel.createComm(COMM_TARGET);
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
      const data = (msg.content.data ?? {}) as { id?: unknown };
      const id = typeof data.id === "string" ? data.id : String(data.id ?? "");
      const entry = this.pending.get(id);
      if (!entry) return;
      try {
        this.settle(id, unwrap(data, entry.op), null);
      } catch (err) {
        this.settle(id, null, err as Error);
      }
    };
    comm.onClose = () => {
      if (this.comm === comm) this.comm = null;
      this.failAll(new Error(NO_TARGET));
    };
    comm.open({});
    this.comm = comm;
    return comm;
  }

  private settle(id: string, value: unknown, error: Error | null): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    clearTimeout(entry.timer);
    if (error) entry.reject(error);
    else entry.resolve(value);
  }

  private failAll(error: Error): void {
    for (const id of [...this.pending.keys()]) this.settle(id, null, error);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.failAll(new Error("this source was closed"));
    const comm = this.comm;
    this.comm = null;
    if (comm && !comm.isDisposed && !this.kernel.isDisposed) {
      try {
        comm.close();
      } catch {
        // the kernel went away first
      }
    }
  }
}

/**
 * An AbortController that follows a parent signal and an optional deadline. Hand-rolled rather than
 * AbortSignal.any/timeout because those keep listeners alive on long-lived parents in Node 20.
 */
export interface LinkedAbort {
  readonly signal: AbortSignal;
  timedOut(): boolean;
  /** (Re)start the deadline, e.g. on every streamed chunk for an idle timeout. */
  arm(ms: number): void;
  /** Abort now, e.g. when the work lost a race against its own deadline. */
  abort(reason?: unknown): void;
  dispose(): void;
}

export function linkedAbort(parent: AbortSignal | undefined, ms?: number): LinkedAbort {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const onParentAbort = () => controller.abort(parent?.reason);
  if (parent?.aborted) controller.abort(parent.reason);
  else parent?.addEventListener('abort', onParentAbort, { once: true });
  const arm = (deadline: number) => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error('timeout'));
    }, deadline);
    timer.unref();
  };
  if (ms !== undefined) arm(ms);
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    arm,
    abort: (reason) => controller.abort(reason),
    dispose() {
      if (timer) clearTimeout(timer);
      parent?.removeEventListener('abort', onParentAbort);
    },
  };
}

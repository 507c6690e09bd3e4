import type { Response } from 'express';
import type { OpenAIErrorBody } from './errors.js';

/**
 * The text a chunk arrived as, for chunks relayed unchanged: writing it back saves re-serialising every event.
 * A plugin that rewrites a chunk makes a new object, which has no entry and is serialised afresh.
 */
export const rawJson = new WeakMap<object, string>();

/** Server-sent events in the framing the OpenAI SDK parses: `data: <json>\n\n`, ending with `data: [DONE]`. */
export class SseWriter {
  private corked = false;

  constructor(private readonly res: Response) {}

  start(headers: Record<string, string>): void {
    this.res.status(200);
    this.res.set({
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Tell reverse proxies (nginx) not to buffer: chunks must reach the client as they are made.
      'x-accel-buffering': 'no',
      ...headers,
    });
    this.res.flushHeaders();
  }

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** Writes one event; waits when the socket's buffer is full so a slow client slows the upstream, not our memory. */
  async send(data: object): Promise<void> {
    if (this.closed) return;
    if (!this.corked) {
      // Events that arrive together (one network read upstream) leave in one write: fewer syscalls per stream.
      this.corked = true;
      this.res.cork();
      setImmediate(() => {
        this.corked = false;
        this.res.uncork();
      });
    }
    if (!this.res.write(`data: ${rawJson.get(data) ?? JSON.stringify(data)}\n\n`)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.res.off('drain', done);
          this.res.off('close', done);
          resolve();
        };
        this.res.on('drain', done);
        this.res.on('close', done);
      });
    }
  }

  async error(body: OpenAIErrorBody): Promise<void> {
    await this.send(body);
    this.done();
  }

  done(): void {
    if (this.closed) return;
    this.res.end('data: [DONE]\n\n');
  }
}

import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What went through a delaying forwarder so far. */
export interface DelayStats {
  /** Requests forwarded (answered or not). */
  requests: number;
  /** Sum over requests of the time from arrival to the end of the answer (the added delay included). */
  totalMs: number;
  /** Sum over requests of the time from forwarding to the end of the answer: the target's own time, HTTP included. */
  targetMs: number;
  /** Requests the target answered with a status >= 400, or that failed outright. */
  failures: number;
}

export interface DelayProxy {
  url: string;
  port: number;
  stats: Readonly<DelayStats>;
  close(): Promise<void>;
}

/**
 * A plain node:http forwarder on 127.0.0.1 that holds every request for `delayMs` before passing it on to
 * `targetPort` (also on 127.0.0.1), so a server in this process looks like one across a network. Bodies are piped
 * both ways untouched; connections to the target are kept alive, as a client of a remote API would.
 */
export async function startDelayProxy(targetPort: number, delayMs: number): Promise<DelayProxy> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const stats: DelayStats = { requests: 0, totalMs: 0, targetMs: 0, failures: 0 };
  const server = http.createServer((req, res) => {
    const arrived = performance.now();
    stats.requests++;
    let forwarded = arrived;
    let counted = false;
    const done = (failed: boolean) => {
      if (counted) return;
      counted = true;
      const end = performance.now();
      stats.totalMs += end - arrived;
      stats.targetMs += end - forwarded;
      if (failed) stats.failures++;
    };
    setTimeout(() => {
      forwarded = performance.now();
      const up = http.request(
        {
          host: '127.0.0.1',
          port: targetPort,
          path: req.url,
          method: req.method,
          headers: { ...req.headers, host: `127.0.0.1:${targetPort}` },
          agent,
        },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
          ur.on('end', () => done((ur.statusCode ?? 502) >= 400));
        },
      );
      up.on('error', (err) => {
        done(true);
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `delay proxy: ${err.message}`, type: 'api_error' } }));
      });
      req.pipe(up);
    }, delayMs);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      }),
  };
}

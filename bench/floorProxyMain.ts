/**
 * Reference floor for the proxy bench (`--targets ...,floor`): the least a Node proxy can do — node:http in,
 * node:http with a keep-alive agent out, bytes piped both ways, nothing parsed. Not a product; it shows how much
 * of a proxy's cost is the platform (sockets, HTTP parsing) and how much is its own code.
 * Usage: node --import tsx bench/floorProxyMain.ts <upstream base url, e.g. http://127.0.0.1:1234/v1>
 * Prints one JSON line `{"url": ...}` once listening.
 */
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

const upstream = new URL(process.argv[2] ?? '');
const base = upstream.pathname.replace(/\/$/, '');
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const path = `${base}${(req.url ?? '/').replace(/^\/v1/, '')}`;
    const up = request(
      {
        agent,
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path,
        headers: {
          'content-type': 'application/json',
          'content-length': body.length,
          authorization: req.headers.authorization ?? '',
        },
      },
      (ur) => {
        const headers: Record<string, string> = {
          'content-type': String(ur.headers['content-type'] ?? 'application/json'),
        };
        if (ur.headers['content-length']) headers['content-length'] = String(ur.headers['content-length']);
        res.writeHead(ur.statusCode ?? 502, headers);
        ur.pipe(res);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    up.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => process.exit(0));

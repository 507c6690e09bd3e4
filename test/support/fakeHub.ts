import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP server on 127.0.0.1 with the Hugging Face hub's URL layout: the model-info API
 * (`/api/models/{repo}/revision/{rev}`) and `/{repo}/resolve/{rev}/{file}`. LFS files redirect, as on the real hub,
 * to a second server (another origin, like the hub's CDN) with x-linked-size / x-linked-etag on the redirect. Both
 * honour `Range: bytes=N-` with 206. Faults are set on `faults` and may be changed between pulls.
 */
export interface HubRequest {
  server: 'hub' | 'cdn';
  path: string;
  query: string;
  headers: IncomingMessage['headers'];
}

export interface HubFaults {
  /** The API answers 404, as a plain file server would. */
  noApi: boolean;
  /** Files whose resolve URL answers 404 although the API lists them. */
  missing: Set<string>;
  /** What the API claims instead of the truth, for mismatch tests. */
  declared: Map<string, { size?: number; sha256?: string }>;
  /** Serve N bytes of the file, then destroy the socket; consumed by the first request for it. */
  dropAfter: Map<string, number>;
  /** Statuses answered (one per request, consumed) before the file is served. */
  statuses: Map<string, number[]>;
  /** Answer 200 with the whole file even when a Range is asked for. */
  ignoreRange: boolean;
}

export interface FakeHub {
  /** What to pass as the hub endpoint. */
  endpoint: string;
  requests: HubRequest[];
  faults: HubFaults;
  /** Requests for one file's bytes (hub resolve or CDN), in order. */
  fileRequests(path: string): HubRequest[];
  close(): Promise<void>;
}

export interface FakeHubOptions {
  repo: string;
  revision?: string;
  files: Record<string, Buffer>;
  /** Which files are LFS (redirected, listed with sha256); default: ONNX graphs and their data. */
  isLfs?: (path: string) => boolean;
  /** When set, every hub request (not the CDN's) must carry `Authorization: Bearer <token>`, else 401. */
  token?: string;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const defaultLfs = (p: string) => /\.onnx($|_data|\.data)/.test(p);

export async function startFakeHub(opts: FakeHubOptions): Promise<FakeHub> {
  const revision = opts.revision ?? 'main';
  const isLfs = opts.isLfs ?? defaultLfs;
  const requests: HubRequest[] = [];
  const faults: HubFaults = {
    noApi: false,
    missing: new Set(),
    declared: new Map(),
    dropAfter: new Map(),
    statuses: new Map(),
    ignoreRange: false,
  };

  const serveFile = async (req: IncomingMessage, res: ServerResponse, path: string) => {
    const data = opts.files[path];
    if (!data || faults.missing.has(path)) return text(res, 404, 'Entry not found');
    const status = faults.statuses.get(path)?.shift();
    if (status !== undefined) return text(res, status, `fake ${status}`);
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let start = 0;
    let end = data.length - 1;
    if (range && !faults.ignoreRange) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(Number(range[2]), end);
      if (start >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` });
        return res.end();
      }
    }
    const body = data.subarray(start, end + 1);
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'content-length': body.length,
      'accept-ranges': 'bytes',
    };
    if (range && !faults.ignoreRange) headers['content-range'] = `bytes ${start}-${end}/${data.length}`;
    res.writeHead(range && !faults.ignoreRange ? 206 : 200, headers);
    const drop = faults.dropAfter.get(path);
    if (drop !== undefined) {
      faults.dropAfter.delete(path);
      // Let the first bytes reach the client, then cut the connection mid-body.
      await new Promise<void>((r) => res.write(body.subarray(0, drop), () => r()));
      await new Promise((r) => setTimeout(r, 50));
      req.socket.destroy();
      return;
    }
    res.end(body);
  };

  const hubPrefix = `/${opts.repo}/resolve/${revision}/`;
  const apiPath = `/api/models/${opts.repo}/revision/${revision}`;

  const hub = createServer((req, res) => {
    const [rawPath = '', query = ''] = (req.url ?? '').split('?');
    const path = decodeURIComponent(rawPath);
    requests.push({ server: 'hub', path, query, headers: req.headers });
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
      return json(res, 401, { error: 'Invalid credentials in Authorization header' });
    }
    if (path === apiPath) {
      if (faults.noApi) return text(res, 404, 'Not Found');
      const blobs = new URLSearchParams(query).get('blobs') === 'true';
      const siblings = Object.entries(opts.files).map(([rfilename, data]) => {
        const d = faults.declared.get(rfilename) ?? {};
        const size = d.size ?? data.length;
        if (!blobs) return { rfilename };
        return isLfs(rfilename)
          ? { rfilename, size, blobId: 'x', lfs: { sha256: d.sha256 ?? sha256(data), size, pointerSize: 134 } }
          : { rfilename, size, blobId: 'x' };
      });
      return json(res, 200, { id: opts.repo, sha: 'f'.repeat(40), siblings });
    }
    if (path.startsWith(hubPrefix)) {
      const file = path.slice(hubPrefix.length);
      const data = opts.files[file];
      if (data && isLfs(file) && !faults.missing.has(file)) {
        res.writeHead(302, {
          location: `${cdnUrl}/cdn/${file.split('/').map(encodeURIComponent).join('/')}?signed=1`,
          'x-linked-size': String(data.length),
          'x-linked-etag': `"${sha256(data)}"`,
        });
        return res.end();
      }
      return serveFile(req, res, file).catch(() => res.destroy());
    }
    return text(res, 404, 'Not Found');
  });

  const cdn = createServer((req, res) => {
    const [rawPath = '', query = ''] = (req.url ?? '').split('?');
    const path = decodeURIComponent(rawPath);
    requests.push({ server: 'cdn', path, query, headers: req.headers });
    if (!path.startsWith('/cdn/')) return text(res, 404, 'Not Found');
    serveFile(req, res, path.slice('/cdn/'.length)).catch(() => res.destroy());
  });

  const listen = async (s: Server) => {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  const endpoint = await listen(hub);
  const cdnUrl = await listen(cdn);
  const close = (s: Server) =>
    new Promise<void>((r) => {
      s.closeAllConnections();
      s.close(() => r());
    });

  return {
    endpoint,
    requests,
    faults,
    fileRequests: (path) =>
      requests.filter((r) => r.path === `${hubPrefix}${path}` || (r.server === 'cdn' && r.path === `/cdn/${path}`)),
    close: async () => {
      await Promise.all([close(hub), close(cdn)]);
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown) {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}

function text(res: ServerResponse, status: number, body: string) {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

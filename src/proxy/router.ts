import type { Pipeline } from '../plugins/pipeline.js';
import type { Upstream } from './upstream/types.js';

export interface ResolvedRoute {
  /** The route's `model` pattern; also its label in metrics. */
  id: string;
  upstream: Upstream;
  upstreamModel?: string;
  pipeline: Pipeline;
  cache: boolean;
  isGlob: boolean;
}

const globToRegExp = (glob: string) =>
  new RegExp(
    `^${glob
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );

/** Model name -> route. Exact names win over globs; among globs the first in config order wins. */
export class Router {
  private readonly exact = new Map<string, ResolvedRoute>();
  private readonly globs: { re: RegExp; route: ResolvedRoute }[] = [];

  constructor(readonly routes: ResolvedRoute[]) {
    for (const r of routes) {
      if (r.isGlob) this.globs.push({ re: globToRegExp(r.id), route: r });
      else if (!this.exact.has(r.id)) this.exact.set(r.id, r);
    }
  }

  /** The route that takes any model (`*`), where requests without a model go. */
  catchAll(): ResolvedRoute | undefined {
    return this.routes.find((r) => r.id === '*');
  }

  resolve(model: string): ResolvedRoute | undefined {
    return this.exact.get(model) ?? this.globs.find((g) => g.re.test(model))?.route;
  }
}

/** Route path comparisons the host needs in more than one place: collisions, and aliases that name another route (served and documented). */

/** `/a/:x` and `/a/:y` are the same route to the router: parameter names do not matter. */
export function samePath(a: string, b: string): boolean {
  return a.replace(/:[^/]+/g, ":") === b.replace(/:[^/]+/g, ":");
}

/** The `:parameter` names of a path, in order. */
export function paramNames(path: string): string[] {
  return [...path.matchAll(/:([^/]+)/g)].map((match) => match[1]!);
}

/** The routes that serve an alias's target path (with the alias's method); aliases are never targets. */
export function aliasTargets<Route extends { method: string; path: string; sameAs?: string }>(
  alias: Route,
  routes: readonly Route[],
): Route[] {
  return routes.filter((r) => r.sameAs === undefined && r.method === alias.method && samePath(r.path, alias.sameAs!));
}

/** Checks a plugin module's default export once, at load time, so a broken plugin fails loudly instead of at its first request. */
import { TypeCompiler, type TypeCheck } from "@sinclair/typebox/compiler";
import type { TSchema } from "@sinclair/typebox";
import type { HttpMethod, PluginDefinition, RouteAlias, RouteDefinition } from "../pluginApi/definePlugin.ts";
import { compileDecoder, type Decoder } from "./compileDecoder.ts";
import { paramNames } from "./routePath.ts";

const methods = new Set<HttpMethod>(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]);

/** A route ready to serve: its body checker is compiled once. */
export interface CompiledRoute {
  method: HttpMethod;
  path: string;
  /** The handler route, or for an alias (`sameAs`) the alias itself: the host serves it with its target's route. */
  definition: RouteDefinition | RouteAlias;
  /** Set for an alias: the path of the route it answers as. */
  sameAs?: string;
  bodyCheck?: TypeCheck<TSchema>;
  /** Runs the body schema's transforms on a checked body. */
  bodyDecode?: Decoder;
  /** Neutral field names to this route's wire names: the plugin's `fields`, then the route's own. */
  fields: Readonly<Record<string, string>>;
  /** `when.header`, lowercased: the route serves only requests with this header. */
  header?: string;
  /** `when.includes`, lowercased: ...whose value contains this text. */
  headerIncludes?: string;
}

export function checkPluginDefinition(value: unknown): { plugin: PluginDefinition; routes: CompiledRoute[] } {
  const candidate = (value as { default?: unknown })?.default ?? value;
  if (typeof candidate !== "object" || candidate === null) throw new Error("the module must `export default definePlugin({...})`");
  const plugin = candidate as PluginDefinition;
  if (typeof plugin.name !== "string" || !/^[a-z0-9][a-z0-9._-]*$/i.test(plugin.name))
    throw new Error("plugin `name` must be a non-empty string of letters, digits, '.', '_' or '-'");
  if (!Array.isArray(plugin.routes)) throw new Error(`plugin "${plugin.name}": \`routes\` must be an array`);
  for (const list of ["prefixes"] as const)
    if (
      plugin[list] !== undefined &&
      (!Array.isArray(plugin[list]) || !plugin[list].every((p) => typeof p === "string" && p.startsWith("/")))
    )
      throw new Error(`plugin "${plugin.name}": \`${list}\` must be a list of paths starting with "/"`);
  for (const hook of ["setup", "dispose", "error", "streamError"] as const)
    if (plugin[hook] !== undefined && typeof plugin[hook] !== "function")
      throw new Error(`plugin "${plugin.name}": \`${hook}\` must be a function`);
  const seen = new Set<string>();
  const routes = plugin.routes.map((route, index) => {
    const where = `plugin "${plugin.name}", routes[${index}]`;
    if (!methods.has(route?.method)) throw new Error(`${where}: method must be one of ${[...methods].join(", ")}`);
    if (typeof route.path !== "string" || !route.path.startsWith("/")) throw new Error(`${where}: path must start with "/"`);
    const when = "sameAs" in route ? undefined : route.when;
    if (
      when !== undefined &&
      !(
        typeof when?.header === "string" &&
        /^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(when.header) &&
        (when.includes === undefined || (typeof when.includes === "string" && when.includes !== ""))
      )
    )
      throw new Error(`${where}: when must be { header: "<header name>", includes?: "<text>" }`);
    const header = when?.header.toLowerCase();
    const headerIncludes = when?.includes?.toLowerCase();
    const key = `${route.method} ${route.path}${header ? ` with ${describeCondition(header, headerIncludes)}` : ""}`;
    if (seen.has(key)) throw new Error(`${where}: ${key} is declared twice`);
    seen.add(key);
    if ("sameAs" in route) return checkAlias(route, where, plugin);
    if (typeof route.handler !== "function") throw new Error(`${where}: handler must be a function`);
    let bodyCheck: TypeCheck<TSchema> | undefined;
    let bodyDecode: Decoder | undefined;
    if (route.body !== undefined) {
      try {
        bodyCheck = TypeCompiler.Compile(route.body);
        bodyDecode = compileDecoder(route.body);
      } catch (error) {
        throw new Error(`${where}: body is not a valid TypeBox schema: ${(error as Error).message}`);
      }
    }
    return {
      method: route.method,
      path: route.path,
      definition: route,
      bodyCheck,
      bodyDecode,
      fields: { ...plugin.fields, ...route.fields },
      ...(header && { header }),
      ...(headerIncludes && { headerIncludes }),
    };
  });
  return { plugin, routes };
}

/** An alias names another path, with as many parameters as its own (they are passed on by position), and nothing else. */
function checkAlias(route: RouteAlias, where: string, plugin: PluginDefinition): CompiledRoute {
  const { sameAs } = route;
  if (typeof sameAs !== "string" || !sameAs.startsWith("/")) throw new Error(`${where}: sameAs must be a path starting with "/"`);
  if (sameAs === route.path) throw new Error(`${where}: sameAs names the route itself`);
  if ("handler" in route || "body" in route) throw new Error(`${where}: a route with sameAs has no handler or body of its own`);
  if (paramNames(sameAs).length !== paramNames(route.path).length)
    throw new Error(`${where}: ${route.path} and its sameAs ${sameAs} must have the same number of :parameters`);
  return { method: route.method, path: route.path, definition: route, sameAs, fields: { ...plugin.fields } };
}

/** `x-special-version`, or `accept: text/html` for a header that must hold a text. */
export function describeCondition(header: string, includes: string | undefined): string {
  return includes === undefined ? header : `${header}: ${includes}`;
}

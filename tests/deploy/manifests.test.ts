/**
 * The Dockerfile and deploy/kubernetes/, checked offline (no container runtime or cluster here): every manifest against
 * the Kubernetes, Gateway API and InferencePool schemas, strictly; the pieces against each other (labels, ports,
 * probes, drain time, metric names) and against llamaport itself (its settings, models.yaml, /metrics).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Copy, DockerfileParser } from "dockerfile-ast";
import { validate as validateDockerfile } from "dockerfile-utils";
import { flags, parseArgs } from "../../src/cli/parseArgs.ts";
import { parseDuration } from "../../src/config/duration.ts";
import { loadModelsFile } from "../../src/config/loadModelsFile.ts";
import { startTestServer, type TestServer, tempDir } from "../support/testServer.ts";
import { crdSchemas, type Manifest, readManifests, schemaProblems, unknownFields } from "./kubernetesSchemas.ts";

const root = resolve(import.meta.dir, "../..");
const dir = join(root, "deploy/kubernetes");
const files = readdirSync(dir)
  .filter((file) => file.endsWith(".yaml"))
  .map((file) => join(dir, file));
const manifests = readManifests(files).map(({ manifest }) => manifest);
const crds = crdSchemas([join(import.meta.dir, "fixtures/inferencepools.crd.yaml")]);

function one(kind: string, name?: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  expect(found).toHaveLength(1);
  return found[0]!;
}

const deployment = one("Deployment");
const pod = deployment.spec.template;
const container = pod.spec.containers.find((c: { name: string }) => c.name === "llamaport");
const env = Object.fromEntries(
  (container.env as { name: string; value?: string }[]).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]),
);

/** Variables llamaport reads: each flag's, and the two that have no flag. */
const knownVariables = new Set([...Object.values(flags), "LLAMAPORT_CACHE", "LLAMAPORT_HF_ENDPOINT"]);

describe("Kubernetes manifests", () => {
  test("each is valid against its kind's schema: Kubernetes', the Gateway API's, the InferencePool CRD's", async () => {
    expect(manifests.map((m) => `${m.apiVersion} ${m.kind}`).sort()).toEqual([
      "apps/v1 Deployment",
      "autoscaling/v2 HorizontalPodAutoscaler",
      "gateway.networking.k8s.io/v1 Gateway",
      "gateway.networking.k8s.io/v1 HTTPRoute",
      "inference.networking.k8s.io/v1 InferencePool",
      "v1 ConfigMap",
      "v1 ConfigMap",
      "v1 ConfigMap",
      "v1 PersistentVolumeClaim",
      "v1 Service",
    ]);
    for (const manifest of manifests) expect([manifest.kind, await schemaProblems(manifest, crds)]).toEqual([manifest.kind, []]);
  });

  test("no field is unknown to its kind (strict validation, as kubectl --validate=strict)", () => {
    expect(unknownFields(manifests, crds)).toEqual([]);
  });

  test("the validators catch what they should (a typo, a wrong type, a port out of range)", async () => {
    const typo = structuredClone(deployment);
    typo.spec.template.spec.containers[0].readinessProbe.httpGet.pth = "/health";
    expect(unknownFields([typo], crds)).toEqual([expect.stringContaining("'\"pth\"' does not exist in type 'IHTTPGetAction'")]);
    const wrongType = structuredClone(deployment);
    wrongType.spec.replicas = "two";
    expect(await schemaProblems(wrongType, crds)).toEqual([expect.stringContaining("replicas must be integer")]);
    const pool = structuredClone(one("InferencePool"));
    pool.spec.targetPorts[0].number = 70000;
    pool.spec.endpointPickerRef.prot = 1;
    expect(await schemaProblems(pool, crds)).toEqual([
      "/spec/endpointPickerRef must NOT have additional properties",
      "/spec/targetPorts/0/number must be <= 65535",
    ]);
  });

  test("the Service, the InferencePool and the HTTPRoute reach the Deployment's pods on its port", () => {
    const labels = pod.metadata.labels as Record<string, string>;
    const matches = (selector: Record<string, string>) => Object.entries(selector).every(([key, value]) => labels[key] === value);
    const port = container.ports.find((p: { name: string }) => p.name === "http");
    expect(port.containerPort).toBe(Number(env.LLAMAPORT_PORT ?? 9112));
    expect(matches(deployment.spec.selector.matchLabels)).toBe(true);
    const service = one("Service");
    expect(matches(service.spec.selector)).toBe(true);
    expect(service.spec.ports[0].targetPort).toBe("http");
    const pool = one("InferencePool");
    expect(matches(pool.spec.selector.matchLabels)).toBe(true);
    expect(pool.spec.targetPorts).toEqual([{ number: port.containerPort }]);
    const route = one("HTTPRoute");
    expect(route.spec.rules[0].backendRefs).toEqual([
      { group: "inference.networking.k8s.io", kind: "InferencePool", name: pool.metadata.name },
    ]);
    expect(route.spec.parentRefs[0].name).toBe(one("Gateway").metadata.name);
  });

  test("readiness, liveness and startup probe /health; the grace period covers preStop, the drain and the close", () => {
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"])
      expect(container[probe].httpGet).toEqual({ path: "/health", port: "http" });
    const drainSeconds = parseDuration(env.LLAMAPORT_SHUTDOWN_TIMEOUT!) / 1000;
    const preStopSeconds = container.lifecycle.preStop.sleep.seconds;
    // After the deadline the server still ends streams, lets the last bytes go (up to 2 s) and frees the models.
    expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(preStopSeconds + drainSeconds + 4);
    // A draining pod answers 503: liveness must tolerate that for the whole grace period.
    const live = container.livenessProbe;
    expect(live.periodSeconds * live.failureThreshold).toBeGreaterThanOrEqual(preStopSeconds + drainSeconds);
  });

  test("the container's environment is llamaport's own variables, with values it accepts", () => {
    for (const variable of container.env.map((e: { name: string }) => e.name)) expect(knownVariables.has(variable)).toBe(true);
    const command = parseArgs(container.args, env);
    expect(command).toMatchObject({
      kind: "serve",
      settings: { logFormat: "json", publicMetrics: true, shutdownTimeoutMs: 20_000, models: "/etc/llamaport/config/models.yaml" },
    });
    const mounts = Object.fromEntries(container.volumeMounts.map((m: { mountPath: string; name: string }) => [m.mountPath, m.name]));
    expect(mounts["/etc/llamaport/config"]).toBe("config");
    expect(mounts[env.LLAMAPORT_PLUGINS!]).toBe("plugins");
  });

  test("the ConfigMap's models.yaml is valid, and names the file the init container downloads", async () => {
    using temp = tempDir();
    const file = join(temp.path, "models.yaml");
    await Bun.write(file, one("ConfigMap", "llamaport-models").data["models.yaml"]);
    const config = await loadModelsFile(file);
    expect(config.models).toHaveLength(1);
    const source = config.models[0]!.source;
    expect(source).toMatch(/^\/models\/[^/]+\.gguf$/);
    const init = pod.spec.initContainers[0];
    expect(init.args[0]).toContain(`file=${source}\n`);
  });
});

describe("autoscaling and the inference gateway read metrics llamaport exports", () => {
  let server: TestServer;
  let metrics: string;
  beforeAll(async () => {
    server = await startTestServer({ demo: { source: "synthetic:demo", context: 256 } });
    await server.engine.load("demo");
    metrics = await (await fetch(`${server.url}/metrics`)).text();
  });
  afterAll(() => server?.[Symbol.asyncDispose]());
  const exported = (name: string) => new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}[{ ]`, "m").test(metrics);

  test("the HPA scales the Deployment on a per-pod metric that /metrics has, through the adapter rule", () => {
    const hpa = one("HorizontalPodAutoscaler");
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name });
    const metric = hpa.spec.metrics[0].pods.metric.name;
    expect(exported(metric)).toBe(true);
    const rules = one("ConfigMap", "llamaport-adapter-rules").data["config.yaml"];
    expect(rules).toContain(`seriesQuery: '${metric}{`);
    expect(rules).toContain(`matches: ${metric}`);
  });

  test("the model server protocol's gauges the endpoint picker reads by default are there", () => {
    for (const name of ["vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"])
      expect(exported(name)).toBe(true);
    expect(metrics).toMatch(/^# TYPE vllm:num_requests_waiting gauge$/m);
    expect(metrics).toMatch(/^# TYPE vllm:kv_cache_usage_perc gauge$/m);
  });
});

describe("Dockerfile", () => {
  const text = readFileSync(join(root, "Dockerfile"), "utf8");
  const dockerfile = DockerfileParser.parse(text);
  const instructions = dockerfile.getInstructions();
  const final = instructions.slice(instructions.findLastIndex((i) => i.getKeyword() === "FROM"));
  const argsOf = (keyword: string) => final.filter((i) => i.getKeyword() === keyword).map((i) => i.getArguments().map((a) => a.getValue()));

  test("parses without problems", () => {
    expect(validateDockerfile(text).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
  });

  test("multi-stage: builds the binary with npm ci and npm run build, runs it on a slim base as a non-root user", () => {
    const froms = instructions.filter((i) => i.getKeyword() === "FROM").map((i) => i.getArgumentsContent());
    expect(froms).toEqual([expect.stringMatching(/^node:\d+-bookworm AS build$/), "debian:bookworm-slim"]);
    const runs = instructions.filter((i) => i.getKeyword() === "RUN").map((i) => i.getArgumentsContent() ?? "");
    expect(runs.some((r) => r.includes("npm ci"))).toBe(true);
    expect(runs.some((r) => r.includes("npm run build"))).toBe(true);
    const copies = final.filter((i): i is Copy => i instanceof Copy).map((i) => [i.getFromFlag()?.getValue(), i.getArgumentsContent()]);
    expect(copies).toEqual([["build", "/llamaport /usr/local/bin/llamaport"]]);
    const [user] = argsOf("USER");
    expect(user![0]).not.toMatch(/^(root|0)(:|$)/);
    expect(argsOf("ENTRYPOINT")).toEqual([['["llamaport"]']]);
  });

  test("health check on /health at the port it listens on; its variables are llamaport's", () => {
    const health = final.find((i) => i.getKeyword() === "HEALTHCHECK")!.getArgumentsContent()!;
    const envs = Object.fromEntries(
      argsOf("ENV")
        .flat()
        .map((pair) => pair.split("=") as [string, string]),
    );
    for (const name of Object.keys(envs)) expect(knownVariables.has(name)).toBe(true);
    expect(health).toContain(`http://127.0.0.1:${envs.LLAMAPORT_PORT}/health`);
    expect(argsOf("EXPOSE")).toEqual([[envs.LLAMAPORT_PORT!]]);
    expect(envs.LLAMAPORT_HOST).toBe("0.0.0.0");
  });
});

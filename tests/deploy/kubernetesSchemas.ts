/**
 * Offline validation of Kubernetes manifests. Built-in kinds and Gateway API kinds are checked against the OpenAPI
 * schemas that kubernetes-models ships (types, formats, required fields, enums) and, through TypeScript's excess
 * property checks on their generated types, for fields no schema has (what `kubectl apply --validate=strict` refuses).
 * CRDs without a package (InferencePool) are checked with Ajv against the CRD's own openAPIV3Schema, made strict.
 */
import Ajv from "ajv";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import ts from "typescript";
import { parseAllDocuments } from "yaml";

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [key: string]: any; // whatever the YAML says; the validators decide
}

const root = resolve(import.meta.dir, "../..");

/** Every document of every file, with the file it came from. */
export function readManifests(files: string[]): { file: string; manifest: Manifest }[] {
  return files.flatMap((file) =>
    parseAllDocuments(readFileSync(file, "utf8")).map((document) => {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]!.message}`);
      return { file, manifest: document.toJS() as Manifest };
    }),
  );
}

/** The kubernetes-models module and type of a kind (a missing one fails to import: no schema). */
function modelOf(apiVersion: string, kind: string): { module: string; type: string } | undefined {
  if (apiVersion.startsWith("gateway.networking.k8s.io/"))
    return { module: `@kubernetes-models/gateway-api/${apiVersion}/${kind}`, type: `I${kind}` };
  return { module: `kubernetes-models/${apiVersion}/${kind}`, type: `I${kind}` };
}

/** Schema problems of one manifest (empty when valid), from the package's validator or the CRD's schema. */
export async function schemaProblems(manifest: Manifest, crds: Record<string, object>): Promise<string[]> {
  const crd = crds[`${manifest.apiVersion}/${manifest.kind}`];
  if (crd) {
    const ajv = new Ajv({
      strict: false,
      allErrors: true,
      // The OpenAPI formats Kubernetes uses; times only appear in `status`, which manifests do not set.
      formats: {
        int32: { type: "number", validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 },
        int64: { type: "number", validate: (n: number) => Number.isSafeInteger(n) },
        "date-time": true,
      },
    });
    const validate = ajv.compile(crd);
    return validate(manifest) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message}`);
  }
  const model = modelOf(manifest.apiVersion, manifest.kind);
  if (!model) return [`no schema for ${manifest.apiVersion} ${manifest.kind}`];
  const module = (await import(model.module).catch(() => ({}))) as Record<string, new (data: unknown) => { validate(): void }>;
  if (!module[manifest.kind]) return [`no schema for ${manifest.apiVersion} ${manifest.kind}`];
  try {
    new module[manifest.kind]!(manifest).validate();
    return [];
  } catch (error) {
    return [(error as Error).message];
  }
}

/**
 * Fields the kinds' types do not have, for every manifest at once (one TypeScript program): each manifest becomes an
 * object literal typed as its kind, and an unknown field anywhere in it is an excess property error.
 */
export function unknownFields(manifests: Manifest[], crds: Record<string, object>): string[] {
  const lines: string[] = [];
  manifests.forEach((manifest, index) => {
    // CRD kinds were made strict in their schema instead.
    if (crds[`${manifest.apiVersion}/${manifest.kind}`]) return;
    const model = modelOf(manifest.apiVersion, manifest.kind);
    if (!model) return;
    lines.push(`import type { ${model.type} as T${index} } from ${JSON.stringify(model.module)};`);
    lines.push(`export const m${index}: T${index} = ${JSON.stringify(manifest)};`);
  });
  const fileName = join(root, "__manifests__.ts");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const source = lines.join("\n");
  const getSourceFile = host.getSourceFile;
  host.getSourceFile = (name, version, ...rest) =>
    name === fileName ? ts.createSourceFile(name, source, version) : getSourceFile.call(host, name, version, ...rest);
  const readFile = host.readFile;
  host.readFile = (name) => (name === fileName ? source : readFile.call(host, name));
  const fileExists = host.fileExists;
  host.fileExists = (name) => name === fileName || fileExists.call(host, name);
  const program = ts.createProgram([fileName], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const manifest = line >= 0 ? manifests[Number(/^export const m(\d+)/.exec(source.split("\n")[line] ?? "")?.[1] ?? -1)] : undefined;
    const where = manifest ? `${manifest.kind} ${manifest.metadata.name}: ` : "";
    return where + ts.flattenDiagnosticMessageText(d.messageText, " ");
  });
}

/**
 * The schema of a CRD version, made strict the way the API server treats it: an object that declares its properties
 * takes no others (unless it says it keeps unknown fields), and `apiVersion` and `kind` must be the CRD's.
 */
export function crdSchemas(files: string[]): Record<string, object> {
  const schemas: Record<string, object> = {};
  for (const { manifest } of readManifests(files)) {
    const { group, names, versions } = manifest.spec;
    for (const version of versions) {
      const schema = strict(structuredClone(version.schema.openAPIV3Schema)) as { properties: Record<string, object> };
      schema.properties.apiVersion = { const: `${group}/${version.name}` };
      schema.properties.kind = { const: names.kind };
      schemas[`${group}/${version.name}/${names.kind}`] = schema;
    }
  }
  return schemas;
}

function strict(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(strict);
  if (typeof schema !== "object" || schema === null) return schema;
  const node = schema as Record<string, unknown>;
  for (const [key, value] of Object.entries(node)) node[key] = strict(value);
  if (node.type === "object" && node.properties && node.additionalProperties === undefined && !node["x-kubernetes-preserve-unknown-fields"])
    node.additionalProperties = false;
  return node;
}

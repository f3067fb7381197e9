/** Where a GGUF file's tensor data ends according to its header: a file shorter than that was cut. */
import { getLlamaRuntime, importNodeLlamaCpp } from "../nodeLlamaCpp.ts";

/** Bytes per block and elements per block of a ggml type, from llama.cpp itself (node-llama-cpp's internal binding). */
interface GgmlTypeSizes {
  getTypeSizeForGgmlType(type: number): number | undefined;
  getBlockSizeForGgmlType(type: number): number | undefined;
}

/** The smallest size the complete file has: the end of the tensor that ends last. Throws if the header is unreadable. */
export async function ggufDataEnd(path: string): Promise<number> {
  const [{ readGgufFileInfo }, llama] = await Promise.all([importNodeLlamaCpp(), getLlamaRuntime()]);
  const info = await readGgufFileInfo(path, { readTensorInfo: true, logWarnings: false, spliceSplitFiles: false });
  // node-llama-cpp computes tensor sizes the same way (GgufInsights); the sizes are not part of its public API.
  const sizes = (llama as unknown as { _bindings: GgmlTypeSizes })._bindings;
  let end = 0;
  for (const tensor of info.tensorInfo ?? []) {
    const typeSize = sizes.getTypeSizeForGgmlType(tensor.ggmlType);
    const blockSize = sizes.getBlockSizeForGgmlType(tensor.ggmlType);
    if (typeSize === undefined || blockSize === undefined) throw new Error(`tensor ${tensor.name} has an unknown type ${tensor.ggmlType}`);
    let elements = 1;
    for (const dimension of tensor.dimensions) elements *= Number(dimension);
    end = Math.max(end, Number(tensor.fileOffset) + (elements / blockSize) * typeSize);
  }
  return end;
}

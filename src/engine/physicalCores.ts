/** Physical CPU cores (not hyper-threads): llama.cpp decoding is memory-bound and gains nothing from SMT siblings. */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";

export function physicalCores(): number {
  const logical = availableParallelism();
  try {
    const cores = new Set<string>();
    let physical = "0";
    for (const line of readFileSync("/proc/cpuinfo", "utf8").split("\n")) {
      if (line.startsWith("physical id")) physical = line.split(":")[1]!.trim();
      else if (line.startsWith("core id")) cores.add(`${physical}:${line.split(":")[1]!.trim()}`);
    }
    // Containers may limit us below the host's core count; never exceed what we may run on.
    return cores.size > 0 ? Math.min(cores.size, logical) : logical;
  } catch {
    return logical; // Not Linux: the logical count is the best cheap answer.
  }
}

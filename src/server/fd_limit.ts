import { assert } from "../util/assert.ts";

/**
 * The C libraries `getrlimit`/`setrlimit` are looked up in, in order. Deno has no API for resource limits,
 * so the node calls libc through FFI, and `deno.json`'s tasks grant FFI for exactly these paths
 * (`--allow-ffi=<this list>`): a dependency of the node cannot load any other native library.
 */
export const libcPaths: readonly string[] = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/usr/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/usr/lib/aarch64-linux-gnu/libc.so.6",
  "/lib64/libc.so.6",
  "/usr/lib64/libc.so.6",
  "/usr/lib/libc.so.6",
  "/usr/lib/libSystem.B.dylib",
];

/** `RLIMIT_NOFILE` on Linux; macOS numbers it 8. */
const rlimitNofileLinux = 7;
const rlimitNofileDarwin = 8;
/** `RLIM_INFINITY` as an unsigned 64-bit value (Linux); macOS's is 2^63 - 1. Either is "no limit". */
const rlimInfinityFloor = 1n << 62n;
/** What an unlimited or unreadable hard limit is taken as: far above any connection count a node serves. */
const unlimitedFds = 1 << 20;

/** The file-descriptor limits of this process, and what the node did about them. */
export interface FdLimit {
  /** The soft limit in force now: accepting past it fails with EMFILE. */
  soft: number;
  /** The hard limit: the soft one can be raised up to it. */
  hard: number;
  /** The soft limit before the node raised it. */
  softBefore: number;
  /** Why the limits could not be read or raised, when they could not. */
  problem?: string;
}

/** The C functions the server calls: resource limits, and a socket's addresses and shutdown. */
const symbols = {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
} as const;

/** The C library, opened through FFI. */
export type Libc = Deno.DynamicLibrary<typeof symbols>;

/**
 * Raises this process's soft `RLIMIT_NOFILE` to its hard limit, so connections run out at the hard limit
 * rather than at a distribution's low default soft limit (often 1,024). When no listed C library can be
 * loaded (another OS, or a runtime without FFI permission), it changes nothing and returns
 * `fallbackFds` for both limits with the reason in `problem`, so the caller caps conservatively.
 */
export function raiseFdLimit(options: { fallbackFds: number }): FdLimit {
  assert(Number.isSafeInteger(options.fallbackFds));
  assert(options.fallbackFds > 0);
  const fallback = (problem: string): FdLimit => ({
    soft: options.fallbackFds,
    hard: options.fallbackFds,
    softBefore: options.fallbackFds,
    problem,
  });
  const library = openLibc();
  if (typeof library === "string") return fallback(library);
  try {
    const resource = Deno.build.os === "darwin" ? rlimitNofileDarwin : rlimitNofileLinux;
    const limits = new BigUint64Array(2);
    if (library.symbols.getrlimit(resource, limits) !== 0) return fallback("getrlimit failed");
    const softBefore = fdsOf(limits[0]!);
    const hard = fdsOf(limits[1]!);
    if (softBefore >= hard) return { soft: softBefore, hard, softBefore };
    limits[0] = limits[1]!;
    if (library.symbols.setrlimit(resource, limits) !== 0) {
      return { soft: softBefore, hard, softBefore, problem: "setrlimit failed" };
    }
    library.symbols.getrlimit(resource, limits);
    const soft = fdsOf(limits[0]!);
    assert(soft >= softBefore, "raising the soft limit never lowers it");
    return { soft, hard, softBefore };
  } finally {
    library.close();
  }
}

/** The first listed C library that loads, or why none did. */
export function openLibc(): Libc | string {
  let reason = "no C library found";
  for (const path of libcPaths) {
    try {
      return Deno.dlopen(path, symbols);
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
        reason = `no FFI permission for ${path} (run with --allow-ffi as deno.json's tasks do)`;
      }
    }
  }
  return reason;
}

function fdsOf(limit: bigint): number {
  return limit >= rlimInfinityFloor || limit > BigInt(unlimitedFds) ? unlimitedFds : Number(limit);
}

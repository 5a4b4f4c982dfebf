// Types for scripts/preflight.mjs, which stays plain JavaScript so that an old Node can run it.
export declare const MIN_NODE: readonly [number, number];
export declare function nodeProblem(version?: string): string | undefined;
export declare const SYSTEM_PROGRAMS: ReadonlyArray<{ program: string; pkg: string }>;
export declare function runnable(program: string, path?: string): boolean;
export declare function missingPackages(isRunnable?: (program: string) => boolean): string[];
export declare function systemProblem(missing: readonly string[]): string | undefined;

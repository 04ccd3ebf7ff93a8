/**
 * A dynarust node: built from its configuration, started, joined to its cluster and stopped. main.ts, the
 * composition root, reads the invocation, handles signals and exit codes, and calls this module for the rest.
 */
export { type DiskOptions, version } from "./build.ts";
export { JoinError } from "./join.ts";
export { leftLastTime } from "./members.ts";
export { type NodeHandle, startNode, type StartOptions } from "./lifecycle.ts";
export { type CommandIo, runBackup, runHealth } from "./commands.ts";

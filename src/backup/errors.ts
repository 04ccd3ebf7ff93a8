import { KvError } from "../util/errors.ts";

/** A backup that cannot go on: unreachable node, refused secret, a line that is not a record. */
export class BackupError extends KvError {
  constructor(message: string, options?: ErrorOptions) {
    super("invalid_request", message, options);
  }
}

/**
 * The storage engine of one node: an in-memory index of every key, made durable by an encrypted,
 * group-committed write-ahead log, compacted into `storage.db` and copied into snapshots. It owns every
 * file of the data dir and touches them only through the {@linkcode Fs} seam. It knows nothing of HTTP,
 * users' secrets, tokens or the cluster: it stores `(table, key) -> JSON value` with a version and an
 * owner, and reports each durable change to `onChange` listeners with its source. For replication it is
 * each key's Paxos acceptor: it keeps, durably, the ballot a key's state was accepted at (in the key's
 * record) and the key's explicit promise (`acceptorOf`, `promise`, `accept`); it applies states shipped
 * from other nodes as delayed accepts, by ballot (`applyReplicas`; `compareReplicaEntries` orders only
 * legacy states at the zero ballot), reads them out (`replicaOf`, `scan`) and drops keys that moved away
 * (`purge`); which node holds which key, and the protocol, are not its business.
 *
 * ```ts
 * import { defaultLimits } from "../config/limits.ts";
 * import { systemClock } from "../util/clock.ts";
 * import { createLogger } from "../util/log.ts";
 *
 * const encryption = await loadBuildEncryption(); // the build's key (src/store/encryption_key.ts)
 * const store = await Store.open({
 *   dir: "./data", fs: new DenoFs(), clock: systemClock, logger: createLogger({ level: "info" }),
 *   limits: defaultLimits, encryption, snapshotLimit: 100, snapshotIntervalSecs: 3600,
 * });
 * const entry = await store.put("fruits", "apple", { color: "red" }, { owner: "alice" }); // durable now
 * store.get("fruits", "apple")?.json;
 * // '{"value":{"color":"red"},"version":1,"timestamp":...,"owner":"alice"}'
 * // As the key's Paxos acceptor: check the rule, then queue in the same turn; answer once durable.
 * const ballot = { counter: 2, node: "10.0.0.7:6660" };
 * const { promised, accepted } = store.acceptorOf("fruits", "apple");
 * if (compareBallots(ballot, promised) > 0 && compareBallots(ballot, accepted) > 0) {
 *   await store.promise("fruits", "apple", ballot); // durable now; acceptorOf saw it at once
 * }
 * await store.close();
 * ```
 *
 * # On-disk format, version 1
 *
 * All integers are big-endian. Every file lives in the data dir:
 *
 * | file | magic | content |
 * |---|---|---|
 * | `wal.log` | `DYNW` | frames of WAL batches, appended; cut back to its header after each checkpoint |
 * | `storage.db` | `DYNS` | the whole state at the last checkpoint |
 * | `snapshots/snapshot_<ms>.json` | `DYNS` | the whole state at `<ms>` (ms since the epoch) |
 * | secret files (e.g. a generated JWT secret) | `DYNK` | one frame holding one record: the secret's UTF-8 |
 * | `changes/changes_<seq>.log` | `DYNC` | the change log's segments (`change_log.ts`), never deflated |
| `node.lock` | none | empty; an open store holds its `flock` (see "Lock") |
 *
 * Every file is created `0600` (temp files and `.broken.<ms>` copies too), the data dir and `snapshots/`
 * `0700`, with the mode passed at creation so no umask can widen them. A data dir that already exists
 * with wider bits is kept as it is, with a warning (it may be a shared working directory); `snapshots/`,
 * `wal.log` and `storage.db` left wider by an older build are narrowed at open.
 *
 * ## Lock

`Store.open` takes an advisory lock (`flock`) on `node.lock` without waiting, and holds it until `close`
(or the process's end): exclusively for a store that writes (a node, an offline import), shared for a
read-only one (an offline export). A conflicting holder makes the open fail with `DataDirLockedError`
before any file is read or changed, so two nodes never share a data dir and a reader never reads one that a
node is writing. A read-only open of a dir without `node.lock` takes no lock: no store opened it to write.

## Key
 *
 * The build's key is `encryptionKeyBase64` (base64 of 32 random bytes) of `src/store/encryption_key.ts`,
 * written by `deno task gen-key` (`task start` and `task compile` run it when the module is missing) and
 * ignored by git: the repository holds no key. `deno compile` embeds it in the binary.
 *
 * ## File header (21 bytes)
 *
 * `magic` (4 ASCII bytes) `format version` (1 byte, = 1) `key id` (16 ASCII lowercase hex). The key id is
 * the first 16 hex characters of SHA-256("dynarust-key-id\0" + raw key); a file whose key id differs
 * from the build's is refused with `WrongKeyError` and never modified.
 *
 * ## Frame (20-byte header + ciphertext)
 *
 * ```
 * u32 ciphertext length L | u32 CRC-32 (IEEE, zlib) of the ciphertext | 12-byte random IV | L bytes
 * ```
 * The ciphertext is AES-256-GCM (16-byte tag included in L) of the plaintext, with the 21-byte file header
 * as additional authenticated data, so a frame cannot be moved into another kind of file or another key's
 * file. One frame is encrypted at a time, never one record. The plaintext is:
 * ```
 * u8 flags (bit 0: deflate-raw compressed; other bits 0) | body
 * body (after inflating when bit 0 is set) = { u32 record length | record bytes }+
 * ```
 * A body of at least 1 KiB is deflated (node:zlib `deflateRawSync`) when that makes it smaller: below
 * 4 KiB at level 1 with a 4 KiB window (small WAL batches, for speed), else at the default level. A
 * plaintext is at most 256 MiB. One WAL batch is one frame; state files use frames of about 256 KiB.
 * Random 96-bit IVs are safe under one key up to the 2^32 frames NIST SP 800-38D allows; one frame
 * per batch keeps a node far below that.
 *
 * ## Record
 *
 * ```
 * u8  op           1 = put, 2 = delete (tombstone), 3 = checkpoint end, 4 = purge,
 *                  5 = put with a ballot, 6 = delete with a ballot, 7 = promise;
 *                  bit 7 (0x80) set on ops 1, 2, 5 and 6 (129, 130, 133, 134): with an expiry, below
 * u64 sequence     store-wide commit sequence, +1 per change; 0 for records of state files;
 *                  ops 4 and 7: the sequence of the last change before it (0 when there was none:
 *                  a purge or a promise takes none)
 * u64 version      version of the key (>= 1); op 3: the number of records before it; ops 4 and 7: 0
 * u64 timestamp    ms since the epoch of the write (op 3: of the checkpoint; op 4: of the purge;
 *                  op 7: of the promise)
 * u32 T, T bytes   table, UTF-8 (empty for op 3)
 * u32 K, K bytes   key, UTF-8 (empty for op 3)
 * u32 O, O bytes   owner, UTF-8 (empty for ops 3, 4 and 7)
 * V bytes          ops 1 and 5: the value's JSON, UTF-8 (never empty); otherwise nothing
 * ballot           ops 5, 6 and 7 only, to the end of the record:
 *   u64 counter      the ballot's counter
 *   N bytes          the ballot's node id, UTF-8, N <= 300
 *   u32 N            the node id's length (last, so the ballot is found from the record's end; the
 *                    value runs from the owner's end to the ballot's start)
 * ```
 * **Expiry.** A record whose op has bit 7 set is the record of the op without it, byte for byte, followed
 * by `u64 expires_at` (ms since the epoch, >= 1): everything above, the ballot included, is read from the
 * record without its last 8 bytes. On a put (129, 133) it is the state's lifetime: the key reads as missing
 * from `expires_at` on, until it is expired (cluster `DESIGN.md`, "Expiry (TTL)"). On a delete (130, 134)
 * it marks an expiry tombstone, the end of that lifetime: its `Entry.json` is
 * `{"key":"k","version":n,"timestamp":t,"reason":"expired"}`. A state without a lifetime never sets the
 * bit, so records written before expiries, and states without one, keep their layout byte for byte; a
 * build without expiries refuses a record with the bit (`WalCorruptError`, "unknown record op 129").
 *
 * Ops 5 and 6 are ops 1 and 2, byte for byte, with the ballot appended; the ballot is never the zero
 * ballot `(0, "")` there (a state at the zero ballot is written as op 1 or 2, so one state at one
 * ballot has one encoding). Table and key sit at the same offsets in every op, which the index reads
 * without decoding the rest.
 *
 * In memory the index keeps each key's current record in this layout and decodes `Entry.json` from it
 * (`{"value":`, the value's bytes, then the other fields, `,"expires_at":<ms>` last for a put with an expiry)
 * without parsing the value; `Entry.json` never shows the ballot. u64 fields hold safe integers (< 2^53). A
 * put or delete is a plain local write (ops 1, 2: the zero ballot), a Paxos accept, or a replica's state
 * shipped from another node (ops 5, 6 when its ballot is not zero). A purge drops the key from this node
 * without a tombstone (it moved to other nodes), its promise with it; it appears only in the WAL, never in a
 * state file. A promise (op 7) records that the key's acceptor promised `ballot`; it is not a change. Format
 * version 1 gained op 4, then ops 5-7, without a version bump: a file written before them never holds one,
 * and a build without them refuses a file that does (`WalCorruptError`, "unknown record op 5") instead of
 * misreading it.
 *
 * A record is at most `requestBytesMax + 3 * nameBytesMax + 37 + 312 + 8` bytes: 37 fixed bytes, the
 * names, the value, the largest ballot (12 + 300) and an expiry, so a state written without a ballot
 * still fits once it is accepted at one.
 *
 * ## State files (`storage.db`, snapshots)
 *
 * Header, then one record per key (tombstones included) in any order, then one promise record (op 7)
 * per outstanding promise, then exactly one checkpoint-end record whose sequence is the last change
 * included and whose count is the number of records before it. They are written to
 * `<name>.tmp`, synced, renamed over the old file and the directory is synced, so they are always
 * complete: any damage in them, at the tail too, is `WalCorruptError`. A `.tmp` file found at open is
 * an interrupted write and is removed.
 *
 * ## Recovery
 *
 * 1. Remove `*.tmp` in the data dir and `snapshots/`.
 * 2. Load `storage.db` if present (its key id checked first); when it is missing, see 5.
 * 3. Replay `wal.log` frame by frame. A WAL shorter than its header is rewritten (nothing after a torn
 *    header was acknowledged). Within the WAL, sequences strictly increase (a purge or a promise repeats
 *    the sequence before it). Records apply in log order: a put or delete becomes the key's state (the
 *    WAL logs only states that were applied, in the order they were: ballots, not versions, ordered
 *    them), a purge removes the key and its promise, a promise sets the key's promise, a put or delete
 *    with a ballot clears it, and one without leaves it. So WAL records already in `storage.db` (a
 *    crash between the checkpoint's rename and the WAL truncation) are harmless: each key ends on its
 *    last record, which is what the newer `storage.db` holds. (Until ops 5-7, replay applied a state
 *    only when it won by the conflict rule; on files written then, every logged state had won, so both
 *    rules read them the same.) Once the files are read, a promise at or below its key's accepted
 *    ballot (only after writes were lost, see 5) is dropped with a warning.
 * 4. A frame that is damaged (length past the end of the file, length out of range, CRC mismatch, or
 *    GCM authentication failure) is a **torn tail** when it is the last thing in the file: it runs past
 *    the end, ends exactly at the end, or only zero bytes follow it (a zero-filled tail). The file is
 *    truncated at the frame's offset and synced, and a warning names the file and the offset; every
 *    frame before it is kept. A damaged frame followed by other bytes is `WalCorruptError` naming the
 *    file and offset, and the node does not start. A frame that authenticates but does not decode is
 *    corruption too. Limitation: a bit flip in the length field of a middle frame that makes it run past
 *    the end of the file cannot be told from a torn tail.
 *
 *    After a write or sync error the WAL cuts its last frame off again (best effort), so a write that
 *    was answered with an error is not replayed after a restart without a power cut.
 * 5. A missing `storage.db` (never checkpointed, or lost) is replaced by the newest snapshot that reads
 *    cleanly (damaged ones are skipped with a warning), then the WAL is replayed over it as above. When
 *    the WAL's first change is more than one past the base's sequence, the gap is logged as lost writes;
 *    a missing WAL next to a state file is logged too. Nothing else changes on disk.
 *
 * ## Read-only open (`StoreOptions.readOnly`)

It reads the files as steps 2 to 5 do and changes nothing: no directory is created, no permission narrowed,
no `*.tmp` removed, a WAL shorter than its header reads as empty, and a torn tail is read up to its last good
frame and logged as a warning, not cut; there is no checkpoint, snapshot or write (`StoreReadOnlyError`). Its
`Fs` is wrapped so that any call that would write fails an assertion.

## Repair (`--repair`, `DYNA_REPAIR=1`, `StoreOptions.repair`)
 *
 * Off by default: a damaged file stops the node (exit 65) with file and offset. With it, at open:
 * - a WAL damaged at offset X is copied to `wal.log.broken.<ms>` (synced), then cut at X (the start of
 *   the first damaged frame: every frame before it is kept) and synced; the dropped byte count is logged;
 * - a damaged `storage.db` is renamed to `storage.db.broken.<ms>` and recovery goes on as if it were
 *   missing (newest readable snapshot plus the WAL, or the WAL alone), logging the lost sequences;
 * - the repaired state is then checkpointed into a new `storage.db`.
 * `<ms>` is the clock's time, bumped while a file has that name. A wrong-key file is never repaired.
 *
 * ## Checkpoint
 *
 * When the WAL grows past `walCheckpointBytes` (checked after each batch) and at close: WAL flushing
 * pauses, every visible entry and every durable outstanding promise is written to `storage.db` as above,
 * then the WAL is truncated to its header and synced, and flushing resumes. A snapshot takes the entries
 * and promises at one synchronous cut.
 *
 * ## Failpoints
 *
 * `StoreOptions.failpoints` (a {@linkcode Failpoints}, inert by default) names the places a crash test
 * stops the store at; what a crash at each leaves on disk, and what recovery makes of it:
 *
 * | failpoint | reached | a crash there leaves |
 * |---|---|---|
 * | `wal.afterAppendBeforeSync` | batch written, not synced | frame lost or torn; never acknowledged |
 * | `wal.midTruncate` | WAL cut to its header, not synced | new `storage.db` + old or empty WAL |
 * | `checkpoint.afterTmpWriteBeforeRename` | `storage.db.tmp` synced | old `storage.db` + WAL; tmp removed |
 * | `checkpoint.afterRenameBeforeDirSync` | renamed, dir not synced | old or new `storage.db` + whole WAL |
 * | `checkpoint.afterRenameBeforeWalTruncate` | new `storage.db` durable | it + whole WAL (replayed again) |
 * | `snapshot.beforeRename` | `snapshot_<ms>.json.tmp` synced | tmp removed at open; old snapshots kept |
 *
 * @module
 */

export { type Encryption, importEncryptionKey } from "./crypto.ts";
export {
  BuildKeyError,
  DataDirLockedError,
  ForbiddenError,
  KeyNotFoundError,
  NotAnObjectError,
  StorageFailedError,
  StorageFullError,
  StoreClosedError,
  StoreReadOnlyError,
  VersionConflictError,
  WalCorruptError,
  WrongKeyError,
} from "./errors.ts";
export {
  type FailpointAction,
  FailpointError,
  type FailpointName,
  failpointNames,
  Failpoints,
  inertFailpoints,
} from "./failpoints.ts";
export {
  type CreateOptions,
  DenoFs,
  type Fs,
  type FsFile,
  type FsLock,
  type FsStat,
  isNoSpaceError,
  type LockOptions,
  MemoryFs,
  privateDirPermissions,
  privateFilePermissions,
  ReadOnlyFs,
} from "./fs.ts";
export { loadOrCreateSecretFile, type SecretFileOptions } from "./secret_file.ts";
export { replaceFile, type ReplaceFileOptions } from "./replace_file.ts";
export { compareReplicaEntries } from "./replica.ts";
export { lockFileName, Store, walFileName } from "./store.ts";
export { storageFileName } from "./checkpoint.ts";
export type { ExpiringKey } from "./expiry_queue.ts";
export {
  ChangeLog,
  type ChangeLogOptions,
  type ChangeRetention,
  type LoggedChange,
  type LogMarker,
  type LogRecord,
} from "./change_log.ts";
export {
  type AcceptorBallots,
  type AcceptorState,
  type Ballot,
  ballotNodeBytesMax,
  type ChangeEvent,
  type ChangeSource,
  compareBallots,
  type Entry,
  type ReplicaEntry,
  type ReplicaResult,
  type StoredEntry,
  type StoreOptions,
  type StoreStats,
  type WriteOptions,
  zeroBallot,
} from "./types.ts";
export type { KeyState } from "./wal_record.ts";
export { type BuildKeyModule, buildKeyModulePath, loadBuildEncryption } from "./build_key.ts";

import type { Limits } from "../config/limits.ts";
import type { ChangeEvent, Entry, LoggedChange, LogRecord } from "../store/mod.ts";
import { assert } from "../util/assert.ts";
import { type Clock, systemClock, type TimerHandle } from "../util/clock.ts";
import { UnavailableError } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import type { Histogram } from "../util/metrics.ts";
import {
  changeFrames,
  encodeEntryFrame,
  encodeKeyResyncFrame,
  encodeLeftFrame,
  encodeResyncFrame,
  encodeSnapshotFrame,
  encodeSyncedFrame,
  keepaliveFrame,
  keySyncedFrame,
  resyncThenFrame,
  snapshotFrameText,
  snapshotResyncFrame,
} from "./event_format.ts";
import { DeliveryTimer } from "./delivery.ts";
import { TooManySubscribersError } from "./errors.ts";
import { FilterGroups } from "./filter_groups.ts";
import type { Filter } from "../filter/mod.ts";
import { Histories, notNewer } from "./histories.ts";
import { type Frame, frameOf } from "./history.ts";
import { type CloseReason, Subscriber } from "./subscriber.ts";

/** One open event stream, as handed to the HTTP layer. */
export interface Subscription {
  /** The `text/event-stream` body. Cancelling it (the client went away) unregisters the subscriber. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Ends the stream after the frames already queued. */
  close(): void;
  /** Calls `listener` once the stream has stopped, for any reason; one listener per subscription. */
  onEnd(listener: () => void): void;
}

/**
 * The change log as the broker uses it (`ChangeLog` of the store module): every published change, kept on
 * disk within the retention window, read back by resuming streams (see `DESIGN.md`).
 */
export interface ChangeHistory {
  /** The sequence the next published change gets: the broker's table-stream ids continue from it. */
  readonly nextSeq: number;
  /** Every change with a sequence above it is held, or covered by a gap marker. */
  readonly floorSeq: number;
  append(change: LoggedChange): void;
  recordsAfter(
    after: number,
    options: { chunkCount: number; keep?: (change: LoggedChange) => boolean },
  ): AsyncGenerator<LogRecord[]>;
  keyChangesAfter(
    names: { table: string; key: string },
    options: { after: number; chunkCount: number },
  ): AsyncGenerator<LoggedChange[]>;
}

/** Records read from the change log per step of a replay, each step queued when the client has room. */
export const replayChunkCount = 256;

/** Options of {@linkcode Broker}. */
export interface BrokerOptions {
  /**
   * Uses `subscribersMax`, `sseQueueDepthMax`, `sseHistoryDepth`, `sseHistoryKeysMax`,
   * `sseHistoryBytesMax` (one budget shared by key and table histories) and `sseKeepaliveMs`.
   */
  limits: Limits;
  logger: Logger;
  /**
   * Sets the first table-stream id: `clock.nowMs() * 1000`, so ids keep growing across restarts as
   * long as the wall clock does not go back and fewer than 1000 changes a millisecond were published.
   * Its monotonic time times each frame from its change's publication to its hand-over to a stream, and
   * its timers send the keepalive.
   * @default systemClock
   */
  clock?: Clock;
  /**
   * The change log: every published change is appended, and a resume older than the in-memory histories
   * is answered from it. Without one, such a resume gets the key's current value or a table's `Resync`.
   */
  history?: ChangeHistory;
}

/** Options of {@linkcode Broker.subscribeKey}. */
export interface SubscribeKeyOptions {
  /** The client's `Last-Event-ID` (a version), validated by the caller as a safe integer >= 0. */
  lastEventId?: number;
  /**
   * The key's current entry, tombstones included, read just before this call; undefined when the key
   * does not exist, or could not be read (then a fresh stream's position is what this node published).
   */
  current: Entry | undefined;
  /**
   * `?snapshot=true`: a fresh stream starts at position 0 and sends `current` (when live) as its first
   * event; a resumed one replays as usual. Either way `{"event":"Synced"}` follows, then live changes.
   */
  snapshot?: boolean;
}

/** Options of {@linkcode Broker.subscribeTable}. */
export interface SubscribeTableOptions {
  /** The client's `Last-Event-ID` (a table-stream id), validated by the caller as a safe integer >= 0. */
  lastEventId?: number;
  /**
   * `?snapshot=true`: the table's current records first (see `DESIGN.md`, "Snapshots"), unless the stream
   * resumes from a position this node can replay from.
   */
  snapshot?: TableSnapshot;
  /**
   * Ignored: table-stream ids are the broker's own, not store sequences. Kept so that callers written
   * for the old signature still compile.
   */
  sequence?: number;
}

/** One live record of a table snapshot, as a read answers it. */
export interface SnapshotRecord {
  readonly table: string;
  readonly key: string;
  readonly version: number;
  /** The VersionedValue json. */
  readonly json: string;
  /** Read again consistently because this node had not published it (set by the broker). */
  readonly confirmed?: boolean;
}

/** Where a table snapshot's records come from (the HTTP layer reads them through the store or cluster). */
export interface TableSnapshot {
  /** The table's live records in key order, a page at a time; nothing for a table that does not exist. */
  pages: AsyncIterable<SnapshotRecord[]>;
  /**
   * In a cluster, the chosen state of keys whose page state this node has not published (a replica's state
   * may be accepted and never chosen): a consistent read each; undefined (or a tombstone) for a key that
   * has none. Absent on a single node, where every state read was published in the turn it became visible.
   */
  confirm?: (
    names: Array<{ table: string; key: string }>,
  ) => Promise<Array<{ version: number; json: string; deleted: boolean } | undefined>>;
}

/** Sources one multiplexed stream may name (SPEC §4b). */
export const multiSourcesMax = 100;

/** The tables and keys one multiplexed stream follows (`GET /subscribe?table=T&key=T/K`). */
export interface MultiSources {
  readonly tables: readonly string[];
  readonly keys: ReadonlyArray<{ readonly table: string; readonly key: string }>;
}

/** Options of {@linkcode Broker.subscribeMulti}. */
export interface SubscribeMultiOptions {
  /** The client's `Last-Event-ID` (a change sequence of this node), validated by the caller. */
  lastEventId?: number;
  /** `?snapshot=true`: the sources' records (tables' and keys'), unless the stream can be resumed. */
  snapshot?: TableSnapshot;
  /**
   * `?where=`: the table sources send only changes after which a record matches, and `Left` when one that
   * matched stops matching (key sources are not filtered).
   */
  filter?: Filter;
}

/** A stream's filter and the tables it applies to. */
interface StreamFilter {
  readonly filter: Filter;
  readonly tables: ReadonlySet<string>;
}

/** One (registry, topic) a subscriber is registered under; `onEmpty` runs when its last one leaves. */
interface Registration {
  readonly registry: Subscribers;
  readonly topic: string;
  readonly onEmpty?: () => void;
}

/** Keys whose live changes one snapshotting subscriber holds, per queue slot (`sseQueueDepthMax`). */
export const snapshotKeysPerQueueSlot = 16;

type Subscribers = Map<string, Set<Subscriber>>;

/**
 * Bytes a remembered frame takes besides its payload, counted against `sseHistoryBytesMax`: the frame
 * object and its slot in the history. Measured as about 300 bytes in a heap snapshot of 10,000 key
 * histories when frames were held as bytes (object, `Uint8Array`, `ArrayBuffer`, backing store); a frame
 * held as its change's text takes less, so the figure stays a bound.
 */
export const historyFrameOverheadBytes = 256;

/**
 * The replay frame of a filtered table's change: the change when it matches (or deletes a key that
 * matched, or whose past is unknown), `Left` when it stopped matching, nothing when it neither matches nor
 * did. `matched` carries each key's last verdict through the replay.
 */
function filteredReplayFrame(
  change: LoggedChange,
  options: { filter: Filter; matched: Map<string, boolean> },
): Frame | undefined {
  const topic = topicOf(change.table, change.key);
  const before = options.matched.get(topic);
  const now = change.kind === "Updated" && FilterGroups.admits(options.filter, change);
  options.matched.set(topic, now);
  if (!now && before === false) return undefined;
  if (now || change.kind === "Deleted") return changeFrames(change, change.seq).table;
  return frameOf(change.seq, encodeLeftFrame(change, change.seq));
}

/** A snapshot record's frame text. */
function snapshotRecordText(record: SnapshotRecord): string {
  return snapshotFrameText({ kind: "Updated", table: record.table, key: record.key, json: record.json });
}

/** A snapshot record's topic. */
function snapshotRecordTopic(record: SnapshotRecord): string {
  return topicOf(record.table, record.key);
}

/** Unambiguous map key of a (table, key) pair: the table's length fixes where the key starts. */
function topicOf(table: string, key: string): string {
  return `${table.length}:${table}${key}`;
}

/**
 * Fans changes out to SSE subscribers (SPEC §4). Each change becomes one frame per stream kind, kept as
 * text in a bounded history for `Last-Event-ID` replay and encoded once, when a subscriber first needs it;
 * the same bytes then go to every subscriber. A table's frames are always remembered, a key's from its
 * first subscription on this node (see `Histories`): resuming a key here without ever having subscribed
 * here gets its current value.
 *
 * Changes come from the local store and, for keys this node does not replicate, forwarded by their
 * coordinator; the same change may come both ways, and late. So a change is published only when its
 * version is above the highest already published for its key, and table streams are numbered by the
 * broker itself, not by store sequences. A node may also miss versions of a key (paused, cut off, a
 * notification dropped or overtaken by the next): a stream then gets the key's Resync right before the
 * version after the jump, never a silent jump (SPEC §4b; see {@linkcode Broker.publish}).
 */
export class Broker {
  readonly #limits: Limits;
  readonly #logger: Logger;
  readonly #subscribers = new Set<Subscriber>();
  readonly #keySubscribers: Subscribers = new Map();
  readonly #tableSubscribers: Subscribers = new Map();
  /** Multiplexed streams by the key topics they name (their tables are in `#tableSubscribers`). */
  readonly #multiKeySubscribers: Subscribers = new Map();
  /** Filtered streams by filter group (`FilterGroups.join`). */
  readonly #filteredSubscribers: Subscribers = new Map();
  readonly #filterGroups = new FilterGroups();
  /** Key histories by topic and table histories by table, within `sseHistory*` bounds. */
  readonly #histories: Histories;
  readonly #clock: Clock;
  /** The keepalive's next timer; set again each time it fires, cleared with the last subscriber. */
  #keepaliveTimer: TimerHandle | undefined;
  #droppedCount = 0;
  readonly #delivery: DeliveryTimer;
  /** Id of the newest table-stream frame, or the starting id before the first. */
  #tableId: number;
  readonly #history: ChangeHistory | undefined;
  #closed = false;

  constructor(options: BrokerOptions) {
    const limits = options.limits;
    assert(limits.subscribersMax >= 1);
    assert(limits.sseQueueDepthMax >= 1);
    assert(limits.sseHistoryDepth >= 1);
    assert(limits.sseHistoryKeysMax >= 1);
    assert(limits.sseHistoryBytesMax >= 0);
    assert(limits.sseKeepaliveMs >= 1);
    this.#limits = limits;
    this.#histories = new Histories({
      depthMax: limits.sseHistoryDepth,
      topicsMax: limits.sseHistoryKeysMax,
      bytesMax: limits.sseHistoryBytesMax,
      frameOverheadBytes: historyFrameOverheadBytes,
    });
    this.#logger = options.logger;
    this.#clock = options.clock ?? systemClock;
    this.#delivery = new DeliveryTimer(this.#clock);
    this.#history = options.history;
    this.#tableId = options.history === undefined
      ? Math.floor(this.#clock.nowMs()) * 1000
      : options.history.nextSeq - 1;
    assert(Number.isSafeInteger(this.#tableId), "table-stream ids must be safe integers");
    assert(this.#tableId >= 1, "a Resync before the first change needs an id >= 1");
  }

  /** Open subscriptions. */
  get activeCount(): number {
    return this.#subscribers.size;
  }

  /** True while the broker-wide keepalive timer runs: exactly when a subscription is open. */
  get keepaliveRunning(): boolean {
    return this.#keepaliveTimer !== undefined;
  }

  /** Subscribers disconnected for being too slow, since the broker started. */
  get droppedCount(): number {
    return this.#droppedCount;
  }

  /**
   * Seconds from a change's publication to the hand-over of its frame to a subscriber's stream, one
   * observation per frame handed over (see {@linkcode DeliveryTimer}); replayed frames are not counted.
   */
  get deliverySeconds(): Histogram {
    return this.#delivery.seconds;
  }

  /** Tables some filtered stream follows (each keeps a bounded memory of its keys' last states). */
  get filteredTableCount(): number {
    return this.#filterGroups.tableCount;
  }

  /** Keys whose highest published version is remembered; at most `sseHistoryKeysMax`. */
  get publishedVersionCount(): number {
    return this.#histories.topicCount("key");
  }

  /**
   * Bytes counted for the frames of all replay histories (key and table): each frame's encoded bytes plus
   * {@linkcode historyFrameOverheadBytes}; at most `sseHistoryBytesMax`.
   */
  get historyBytes(): number {
    return this.#histories.frameBytes;
  }

  /**
   * Takes one change, local or forwarded: unless its key already had this version or a higher one
   * published, gives it the next table-stream id, builds its key-stream and table-stream frames once,
   * remembers them in the bounded histories and queues them to every subscriber of the key and table.
   * `event.sequence` is ignored.
   *
   * No silent gaps (SPEC §4b). A version above the next one means versions of the key were skipped: this
   * node missed them (paused, cut off, a notification dropped or overtaken), or a stream never had them.
   * - Key streams: a subscriber whose last version (its position, or the last version sent or replayed)
   *   is below `version - 1` first gets the key's Resync. It costs one integer compare per subscriber,
   *   beside the one that skips a version the subscriber has.
   * - Table streams: when the key's previous published version is remembered and below `version - 1`,
   *   the table frame is the key's Resync followed by the change, for every subscriber of the table and
   *   in the table's history, so a replay shows it too. Without a gap the cost is one compare.
   *
   * When the broker does not remember the key's previous version (never published here since start, or
   * forgotten after `sseHistoryKeysMax` other keys changed since), table frames carry no Resync. For a
   * key never published here that is exact: no table subscriber was sent an earlier version of it, so
   * its first frame is the key's state, not a jump. For a forgotten key, a subscriber that was sent its
   * last version more than `sseHistoryKeysMax` key changes ago, on the same connection, is not told of a
   * version missed since. Telling it would take, per table subscriber, the last version sent of every key
   * of the table: unbounded per subscriber, and at the bench's 10,000 subscribers even 1,000 keys each is
   * ten million entries. A conservative rule instead (announce every forgotten key's change to every
   * subscriber older than its last frame) would put a Resync before nearly every change, and a re-read
   * of the key by every subscriber, wherever more than `sseHistoryKeysMax` keys change. The remembered
   * versions serve every subscriber at once, within the key-history bound the broker keeps anyway.
   */
  publish(event: ChangeEvent): void {
    assert(Number.isSafeInteger(event.version));
    assert(event.version >= 1);
    if (this.#closed) return;
    // Without a subscription nothing is handed over: no clock is read. A return before the fan-out
    // leaves the timer begun with nothing counted, which the next begin() resets.
    const timed = this.#subscribers.size > 0;
    if (timed) this.#delivery.begin();
    const topic = topicOf(event.table, event.key);
    // Kept as text until a subscriber needs the bytes: most frames are only remembered.
    const { key: keyFrame, table: changeFrame } = changeFrames(event, this.#tableId + 1);
    // The key's history also knows its newest published version, when it holds no frames.
    const keySubscribers = this.#keySubscribers.get(topic);
    const watched = keySubscribers !== undefined;
    const previous = this.#histories.remember({ kind: "key", topic, frame: keyFrame, watched });
    if (previous === notNewer) return;
    assert(previous < event.version);
    this.#tableId += 1;
    assert(Number.isSafeInteger(this.#tableId));
    // Encoded once for this change, and only when some stream has to announce a gap.
    let resync: Uint8Array | undefined;
    // 0: the key's previous version is not remembered (see above).
    if (event.version !== previous + 1 && previous !== 0) resync = encodeKeyResyncFrame(event);
    const tableFrame = resync === undefined ? changeFrame : resyncThenFrame(resync, changeFrame);
    this.#histories.remember({ kind: "table", topic: event.table, frame: tableFrame });
    this.#history?.append({
      type: "change",
      seq: this.#tableId,
      kind: event.kind,
      table: event.table,
      key: event.key,
      version: event.version,
      json: event.json,
      resyncBefore: resync !== undefined,
    });
    for (const subscriber of keySubscribers ?? []) {
      if (keyFrame.id > subscriber.lastId + 1) subscriber.sendResync(resync ??= encodeKeyResyncFrame(event));
      subscriber.send(keyFrame);
    }
    const tableSubscribers = this.#tableSubscribers.get(event.table);
    if (tableSubscribers !== undefined) {
      this.#sendChange(tableSubscribers, { event, topic, frame: tableFrame });
    }
    const multiSubscribers = this.#multiKeySubscribers.get(topic);
    if (multiSubscribers !== undefined) {
      this.#sendChange(multiSubscribers, { event, topic, frame: tableFrame });
    }
    if (this.#filterGroups.has(event.table)) this.#sendFiltered({ event, topic, frame: tableFrame });
    if (timed) this.#delivery.end();
  }

  /** Sends a change of a filtered table to each filter group that must hear of it: the change, or `Left`. */
  #sendFiltered(change: { event: ChangeEvent; topic: string; frame: Frame }): void {
    const { event, topic, frame } = change;
    let left: Frame | undefined;
    const deleted = event.kind === "Deleted";
    this.#filterGroups.eachVerdict({ ...event, deleted }, (groupTopic, verdict) => {
      const subscribers = this.#filteredSubscribers.get(groupTopic);
      if (subscribers === undefined) return;
      if (verdict === "change") return this.#sendChange(subscribers, { event, topic, frame });
      left ??= frameOf(frame.id, encodeLeftFrame(event, frame.id));
      this.#sendChange(subscribers, {
        event,
        topic,
        frame: left,
        noIdBytes: () => encodeLeftFrame(event, undefined),
      });
    });
  }

  /**
   * Sends a change's table frame to table or multiplexed subscribers; one streaming a snapshot holds it
   * (without an id) for the snapshot to merge. A subscriber of a table and of one of its keys gets the
   * frame twice and sends it once (its ids increase).
   */
  #sendChange(
    subscribers: Set<Subscriber>,
    change: { event: ChangeEvent; topic: string; frame: Frame; noIdBytes?: () => Uint8Array },
  ): void {
    const { event, topic, frame } = change;
    // Encoded only when a subscriber is streaming a snapshot: its changes merge into it, without ids.
    let snapshotBytes: Uint8Array | undefined;
    for (const subscriber of subscribers) {
      if (subscriber.hasVersionFloors && subscriber.shownAlready(topic, event.version)) continue;
      if (!subscriber.snapshotting) {
        subscriber.send(frame);
        continue;
      }
      snapshotBytes ??= change.noIdBytes?.() ?? encodeSnapshotFrame(event);
      subscriber.holdChange({ topic, version: event.version, bytes: snapshotBytes });
    }
    assert(frame.id === this.#tableId, "a change is sent with the newest table id");
  }

  /**
   * Opens a stream of the changes of one key. It starts with a ready block whose id is the stream's
   * position, and sends every change with a higher version (SPEC §4b):
   *
   * - fresh (no `lastEventId`): the position is the newest version this node knows, `current`'s or one
   *   published since the caller read it (0 for a key that never existed);
   * - resumed within what this node knows: the position is `lastEventId`; the remembered changes after
   *   it follow, or, when the gap is older than the history, `current` and the remembered changes newer
   *   than it (published after the caller read it);
   * - resumed from beyond the newest version this node knows (a newer node's, or not a version at all):
   *   the position is just below `current`, which follows, so the client learns the current state
   *   instead of waiting silently for a version it claims to have.
   *
   * Replayed or live, a version above the one after the stream's last is preceded by the key's Resync
   * (see {@linkcode Broker.publish}): a gap older than the history, or versions this node never published.
   *
   * @throws {TooManySubscribersError} at `subscribersMax` open subscriptions.
   * @throws {UnavailableError} after {@linkcode Broker.close}.
   */
  subscribeKey(table: string, key: string, options: SubscribeKeyOptions): Subscription {
    const topic = topicOf(table, key);
    const { current, lastEventId } = options;
    if (options.snapshot === true && lastEventId === undefined) {
      return this.#subscribeKeySnapshot({ table, key, current });
    }
    const currentVersion = current?.version ?? 0;
    const knownVersion = Math.max(currentVersion, this.#histories.newestId("key", topic) ?? 0);
    const ahead = lastEventId !== undefined && lastEventId > knownVersion;
    let position = lastEventId ?? knownVersion;
    if (ahead) position = Math.max(currentVersion - 1, 0);
    const frames = ahead || lastEventId === undefined
      ? undefined
      : this.#histories.history("key", topic)?.framesAfter(position);
    // Older than what memory holds: read from the change log, the live frames held back meanwhile.
    const fromLog = lastEventId !== undefined && !ahead && frames === undefined &&
      this.#history !== undefined;
    const subscriber = this.#register(this.#keySubscribers, topic, { lastId: position, held: fromLog });
    // Its changes are remembered from now on, for this client's own resumption.
    this.#histories.watch("key", topic);
    if (lastEventId === undefined) return this.#handOut(subscriber);
    if (fromLog) {
      void this.#replayKeyFromLog(subscriber, { table, key, current, snapshot: options.snapshot === true });
      return this.#handOut(subscriber);
    }
    this.#replayKey(subscriber, { table, key, frames: frames ?? this.#currentAndNewer(topic, current) });
    if (options.snapshot === true) subscriber.replayNotice(keySyncedFrame);
    assert(subscriber.lastId >= position);
    if (frames === undefined && current !== undefined) assert(subscriber.lastId >= currentVersion);
    return this.#handOut(subscriber);
  }

  /**
   * Opens a stream of the changes of every key of one table, with ids that are this broker's own. It
   * starts with a ready block whose id is the stream's position: the newest id when fresh, else
   * `lastEventId`. With `lastEventId`, first replays the remembered changes after it; when the gap is
   * older than the history, or `lastEventId` is beyond the newest id (another node's, or from before a
   * clock went back), sends one `Resync` frame telling the client to re-read `/{table}/store` (the
   * position is then just below the newest id). `options.sequence` is ignored.
   *
   * @throws {TooManySubscribersError} at `subscribersMax` open subscriptions.
   * @throws {UnavailableError} after {@linkcode Broker.close}.
   */
  subscribeTable(table: string, options: SubscribeTableOptions): Subscription {
    const lastEventId = options.lastEventId;
    const tableId = this.#tableId;
    if (options.snapshot !== undefined && !this.#canReplayTable(table, lastEventId)) {
      return this.#subscribeTableSnapshot(table, {
        snapshot: options.snapshot,
        resumed: lastEventId !== undefined,
      });
    }
    if (lastEventId === undefined) {
      return this.#handOut(this.#register(this.#tableSubscribers, table, { lastId: tableId, held: false }));
    }
    const ahead = lastEventId > tableId;
    // A client ahead of this broker starts just below the newest id, so that the Resync and every
    // later frame pass the subscriber's increasing-id check.
    const lastId = ahead ? tableId - 1 : lastEventId;
    const frames = ahead ? undefined : this.#histories.history("table", table)?.framesAfter(lastId);
    const history = this.#history;
    const fromLog = frames === undefined && !ahead && history !== undefined && lastId >= history.floorSeq;
    const subscriber = this.#register(this.#tableSubscribers, table, { lastId, held: fromLog });
    if (fromLog) {
      const keep = (change: LoggedChange) => change.table === table;
      void this.#replayTableFromLog(subscriber, { keep, after: lastId, snapshot: options.snapshot });
      return this.#handOut(subscriber);
    }
    if (frames !== undefined) {
      for (const frame of frames) subscriber.replay(frame);
    } else if (tableId > lastId) {
      subscriber.replay(frameOf(tableId, encodeResyncFrame(tableId)));
    }
    if (options.snapshot !== undefined) subscriber.replayNotice(encodeSyncedFrame(subscriber.lastId));
    if (ahead) assert(subscriber.lastId === tableId);
    assert(subscriber.lastId >= lastId);
    return this.#handOut(subscriber);
  }

  /**
   * A fresh key stream with a snapshot: ready at 0, the key's current state when live (as one `Updated`,
   * no Resync before it: the client has nothing), the changes published since the caller read it, `Synced`.
   */
  #subscribeKeySnapshot(options: { table: string; key: string; current: Entry | undefined }): Subscription {
    const { table, key, current } = options;
    const topic = topicOf(table, key);
    // A deleted key's stream starts at its tombstone: a re-creation after it is the next version, no jump.
    const lastId = current?.deleted === true ? current.version : 0;
    const subscriber = this.#register(this.#keySubscribers, topic, { lastId, held: false });
    this.#histories.watch("key", topic);
    if (current !== undefined && !current.deleted) {
      subscriber.replay(frameOf(current.version, encodeEntryFrame(current)));
    }
    const newer = this.#histories.history("key", topic)?.framesHeldAfter(current?.version ?? 0) ?? [];
    this.#replayKey(subscriber, { table, key, frames: newer });
    subscriber.replayNotice(keySyncedFrame);
    if (current !== undefined && !current.deleted) assert(subscriber.lastId >= current.version);
    assert(!subscriber.held);
    return this.#handOut(subscriber);
  }

  /**
   * Opens one stream of several tables and keys (SPEC §4b), with this node's change sequence as ids and
   * frames that name their table and key. Fresh: from the newest id. Resumed within the change log's
   * window: its changes of the sources, replayed. Otherwise `Resync` (re-read the sources), or with a
   * snapshot, `Resync` and the snapshot.
   *
   * @throws {TooManySubscribersError} at `subscribersMax` open subscriptions.
   * @throws {UnavailableError} after {@linkcode Broker.close}.
   */
  subscribeMulti(sources: MultiSources, options: SubscribeMultiOptions): Subscription {
    const sourceCount = sources.tables.length + sources.keys.length;
    assert(sourceCount >= 1 && sourceCount <= multiSourcesMax, "the caller bounds a stream's sources");
    // Refused before a filter group is joined: a refused subscription leaves nothing behind.
    this.#admit();
    const tables = new Set(sources.tables);
    const keyTopics = new Set(sources.keys.map(({ table, key }) => topicOf(table, key)));
    const { lastEventId, snapshot } = options;
    const filter = options.filter === undefined ? undefined : { filter: options.filter, tables };
    const entries = [
      ...[...tables].map((table) => this.#tableRegistration(table, options.filter)),
      ...[...keyTopics].map((topic) => ({ registry: this.#multiKeySubscribers, topic })),
    ];
    const tableId = this.#tableId;
    const floor = this.#history?.floorSeq;
    if (
      lastEventId !== undefined && lastEventId > 0 && floor !== undefined && lastEventId >= floor &&
      lastEventId <= tableId
    ) {
      const subscriber = this.#registerAll(entries, { lastId: lastEventId, held: true });
      const keep = (change: LoggedChange) =>
        tables.has(change.table) || keyTopics.has(topicOf(change.table, change.key));
      void this.#replayTableFromLog(subscriber, { keep, after: lastEventId, snapshot, filter });
      return this.#handOut(subscriber);
    }
    if (snapshot !== undefined) {
      const subscriber = this.#registerAll(entries, { lastId: 0, held: true });
      if (lastEventId !== undefined) subscriber.replayNotice(snapshotResyncFrame);
      void this.#streamSnapshot(subscriber, snapshot, filter);
      return this.#handOut(subscriber);
    }
    const position = lastEventId === undefined || lastEventId === tableId
      ? tableId
      : Math.min(lastEventId, tableId - 1);
    const subscriber = this.#registerAll(entries, { lastId: position, held: false });
    if (position < tableId) subscriber.replay(frameOf(tableId, encodeResyncFrame(tableId)));
    assert(subscriber.lastId === tableId);
    return this.#handOut(subscriber);
  }

  /** Where a table source registers: its table, or with a filter its filter group. */
  #tableRegistration(table: string, filter: Filter | undefined): Registration {
    if (filter === undefined) return { registry: this.#tableSubscribers, topic: table };
    const topic = this.#filterGroups.join(table, filter);
    return {
      registry: this.#filteredSubscribers,
      topic,
      onEmpty: () => this.#filterGroups.leave(table, filter),
    };
  }

  /** True when a table stream from `lastEventId` can be replayed here: from memory or the change log. */
  #canReplayTable(table: string, lastEventId: number | undefined): boolean {
    if (lastEventId === undefined || lastEventId === 0 || lastEventId > this.#tableId) return false;
    if (this.#histories.history("table", table)?.framesAfter(lastEventId) !== undefined) return true;
    return this.#history !== undefined && lastEventId >= this.#history.floorSeq;
  }

  /**
   * A table stream that starts with a snapshot: ready at position 0 (the client has nothing yet; a client
   * that had something is first told to drop it), the records in key order without ids, then `Synced` with
   * the newest id, then live (see `DESIGN.md`, "Snapshots").
   */
  #subscribeTableSnapshot(
    table: string,
    options: { snapshot: TableSnapshot; resumed: boolean },
  ): Subscription {
    const subscriber = this.#register(this.#tableSubscribers, table, { lastId: 0, held: true });
    if (options.resumed) subscriber.replayNotice(snapshotResyncFrame);
    void this.#streamSnapshot(subscriber, options.snapshot);
    assert(subscriber.held);
    assert(subscriber.lastId === 0);
    return this.#handOut(subscriber);
  }

  /** Streams a snapshot to a held subscriber, a page at a time as the client reads, then releases it. */
  async #streamSnapshot(
    subscriber: Subscriber,
    snapshot: TableSnapshot,
    filter?: StreamFilter,
  ): Promise<void> {
    subscriber.beginSnapshot({ keysMax: this.#limits.sseQueueDepthMax * snapshotKeysPerQueueSlot });
    try {
      for await (const page of snapshot.pages) {
        if (subscriber.closed) break;
        const records = await this.#vouched({ page, confirm: snapshot.confirm });
        const sent = filter === undefined ? records : records.filter((record) => {
          if (!filter.tables.has(record.table)) return true;
          this.#filterGroups.remember({ ...record, deleted: false });
          return FilterGroups.admits(filter.filter, record);
        });
        subscriber.snapshotPage(sent, { textOf: snapshotRecordText, topicOf: snapshotRecordTopic });
        // A chunk is a page: read the next once the client's connection took this one, so a slow client
        // holds a page or two, not the table. Not sooner: a page queued for long outlives a young-generation
        // collection, and its buffer then waits for a full one (+24 MB of RSS over a 100k-record snapshot).
        await subscriber.waitForRoom({ queuedMax: 0 });
      }
    } catch (error) {
      this.#logger.warn("sse: a snapshot could not be read; the stream is closed", {
        error: error instanceof Error ? error.message : String(error),
      });
      subscriber.close();
    }
    if (subscriber.closed) return;
    subscriber.endSnapshot({ id: this.#tableId, bytes: encodeSyncedFrame(this.#tableId) });
    subscriber.release();
    assert(!subscriber.held && !subscriber.snapshotting);
  }

  /**
   * The page's records this node can vouch for as chosen: a state it published (or, alone, every state).
   * The others are read again consistently; a key without a live chosen state is left out.
   */
  async #vouched(
    options: { page: SnapshotRecord[]; confirm: TableSnapshot["confirm"] },
  ): Promise<SnapshotRecord[]> {
    const { page, confirm } = options;
    if (confirm === undefined) return page;
    const doubtful = page.filter((record) =>
      this.#histories.newestId("key", topicOf(record.table, record.key)) !== record.version
    );
    if (doubtful.length === 0) return page;
    const confirmed = await confirm(doubtful.map(({ table, key }) => ({ table, key })));
    assert(confirmed.length === doubtful.length, "one answer per key confirmed");
    const answers = new Map<SnapshotRecord, SnapshotRecord | undefined>();
    doubtful.forEach((record, index) => {
      const state = confirmed[index];
      answers.set(
        record,
        state === undefined || state.deleted ? undefined : {
          table: record.table,
          key: record.key,
          version: state.version,
          json: state.json,
          confirmed: true,
        },
      );
    });
    return page.flatMap((record) => answers.has(record) ? answers.get(record) ?? [] : [record]);
  }

  /** Closes every stream after the frames already queued (graceful shutdown) and stops the keepalive. */
  close(): void {
    this.#closed = true;
    for (const subscriber of this.#subscribers) subscriber.close();
    this.#stopKeepalive();
    assert(this.#subscribers.size === 0);
    assert(this.#keySubscribers.size === 0 && this.#tableSubscribers.size === 0);
    assert(this.#multiKeySubscribers.size === 0 && this.#filteredSubscribers.size === 0);
  }

  /**
   * What resumes a key stream whose gap is older than the history: a frame of `current`, then the
   * remembered frames with a higher version, which were published after the caller read `current`.
   */
  #currentAndNewer(topic: string, current: Entry | undefined): Frame[] {
    const newer = this.#histories.history("key", topic)?.framesHeldAfter(current?.version ?? 0) ?? [];
    if (current === undefined) return newer;
    if (newer.length > 0) assert(newer[0]!.id > current.version);
    return [frameOf(current.version, encodeEntryFrame(current)), ...newer];
  }

  /**
   * Replays `frames` of one key, in version order, to a new subscriber: each version the client lacks,
   * preceded by the key's Resync where it is not the version after the stream's last.
   */
  #replayKey(subscriber: Subscriber, options: { table: string; key: string; frames: Frame[] }): void {
    // Encoded at most once, and only for a replay with a jump.
    let resync: Uint8Array | undefined;
    for (const frame of options.frames) {
      if (frame.id > subscriber.lastId + 1) subscriber.replayResync(resync ??= encodeKeyResyncFrame(options));
      subscriber.replay(frame);
    }
    const last = options.frames.at(-1);
    if (last !== undefined) assert(subscriber.lastId >= last.id);
    assert(!subscriber.closed);
  }

  /**
   * Replays a table's changes after `after` from the change log to a held subscriber, a chunk at a time as
   * the client reads, then releases the live frames that waited. A gap (the window is too old, or the log
   * lost records) ends the replay with a `Resync` at the newest id: the client re-reads the table.
   */
  async #replayTableFromLog(
    subscriber: Subscriber,
    options: {
      keep: (change: LoggedChange) => boolean;
      after: number;
      snapshot: TableSnapshot | undefined;
      filter?: StreamFilter | undefined;
    },
  ): Promise<void> {
    const { snapshot, filter } = options;
    let gap = false;
    // Whether each key of a filtered table matched at its last replayed change (unknown before its first).
    const matched = new Map<string, boolean>();
    const records = this.#history!.recordsAfter(options.after, {
      chunkCount: replayChunkCount,
      keep: options.keep,
    });
    const replayed = await this.#replayFromLog(subscriber, records, (record) => {
      if (record.type !== "change") {
        gap = true;
        // With a snapshot the state follows; without, every live frame up to the newest id is covered by
        // the re-read the Resync asks for.
        if (snapshot !== undefined) subscriber.replayNotice(snapshotResyncFrame);
        else subscriber.replay(frameOf(this.#tableId, encodeResyncFrame(this.#tableId)));
        return;
      }
      if (filter !== undefined && filter.tables.has(record.table)) {
        const frame = filteredReplayFrame(record, { filter: filter.filter, matched });
        if (frame !== undefined) subscriber.replay(frame);
        return;
      }
      const { table: tableFrame } = changeFrames(record, record.seq);
      subscriber.replay(
        record.resyncBefore ? resyncThenFrame(encodeKeyResyncFrame(record), tableFrame) : tableFrame,
      );
    });
    if (replayed && gap && snapshot !== undefined) {
      return await this.#streamSnapshot(subscriber, snapshot, filter);
    }
    if (replayed && snapshot !== undefined) subscriber.replayNotice(encodeSyncedFrame(subscriber.lastId));
    if (replayed) subscriber.release();
    assert(subscriber.closed || !subscriber.held, "a finished replay releases the live frames");
  }

  /**
   * Replays a key's changes above the subscriber's version from the change log, then `current` and the
   * remembered frames newer than it, each version once and a Resync before any jump; then releases the
   * live frames that waited.
   */
  async #replayKeyFromLog(
    subscriber: Subscriber,
    options: { table: string; key: string; current: Entry | undefined; snapshot: boolean },
  ): Promise<void> {
    const { table, key, current } = options;
    const changes = this.#history!.keyChangesAfter({ table, key }, {
      after: subscriber.lastId,
      chunkCount: replayChunkCount,
    });
    const replayed = await this.#replayFromLog(subscriber, changes, (change) => {
      this.#replayKey(subscriber, { table, key, frames: [changeFrames(change, 1).key] });
    });
    if (!replayed || subscriber.closed) return;
    this.#replayKey(subscriber, { table, key, frames: this.#currentAndNewer(topicOf(table, key), current) });
    if (options.snapshot) subscriber.replayNotice(keySyncedFrame);
    subscriber.release();
    assert(subscriber.closed || !subscriber.held, "a finished replay releases the live frames");
  }

  /**
   * Queues each record of `chunks` with `replayOne`, waiting for room in the client's queue between
   * chunks; the caller releases the subscriber after. A read that fails closes the stream (the client
   * reconnects); it never takes the node down.
   *
   * @returns false when the subscriber stopped or the read failed.
   */
  async #replayFromLog<T>(
    subscriber: Subscriber,
    chunks: AsyncGenerator<T[]>,
    replayOne: (record: T) => void,
  ): Promise<boolean> {
    assert(subscriber.held, "a replay from the log holds the live frames back");
    try {
      for await (const chunk of chunks) {
        if (subscriber.closed) break;
        for (const record of chunk) replayOne(record);
        await subscriber.waitForRoom();
      }
    } catch (error) {
      this.#logger.warn("sse: a replay from the change log failed; the stream is closed", {
        error: error instanceof Error ? error.message : String(error),
      });
      subscriber.close();
      return false;
    } finally {
      await chunks.return(undefined);
    }
    if (subscriber.closed) return false;
    return true;
  }

  #register(registry: Subscribers, topic: string, position: { lastId: number; held: boolean }): Subscriber {
    return this.#registerAll([{ registry, topic }], position);
  }

  /**
   * Throws unless one more subscription may open.
   *
   * @throws {UnavailableError} after {@linkcode Broker.close}.
   * @throws {TooManySubscribersError} at `subscribersMax` open subscriptions.
   */
  #admit(): void {
    if (this.#closed) throw new UnavailableError("Cannot subscribe: the node is shutting down");
    if (this.#subscribers.size >= this.#limits.subscribersMax) {
      throw new TooManySubscribersError({
        subscriberCount: this.#subscribers.size,
        subscribersMax: this.#limits.subscribersMax,
      });
    }
  }

  /** Registers one subscriber under every (registry, topic) given: one subscription, many sources. */
  #registerAll(
    entries: Registration[],
    position: { lastId: number; held: boolean },
  ): Subscriber {
    const { lastId } = position;
    assert(entries.length >= 1, "a subscription has a source");
    this.#admit();
    assert(Number.isSafeInteger(lastId), "the caller validates Last-Event-ID");
    assert(lastId >= 0, "the caller validates Last-Event-ID");
    const subscriber = new Subscriber({
      queueDepthMax: this.#limits.sseQueueDepthMax,
      lastId,
      held: position.held,
      delivery: this.#delivery,
      onClose: (closing, reason) => this.#unregister({ entries, subscriber: closing, reason }),
    });
    for (const { registry, topic } of entries) {
      let topicSubscribers = registry.get(topic);
      if (topicSubscribers === undefined) {
        topicSubscribers = new Set();
        registry.set(topic, topicSubscribers);
      }
      topicSubscribers.add(subscriber);
    }
    this.#subscribers.add(subscriber);
    assert(this.#subscribers.size <= this.#limits.subscribersMax);
    this.#startKeepalive();
    return subscriber;
  }

  #unregister(
    options: {
      entries: Registration[];
      subscriber: Subscriber;
      reason: CloseReason;
    },
  ) {
    const { entries, subscriber, reason } = options;
    for (const { registry, topic, onEmpty } of entries) {
      const topicSubscribers = registry.get(topic);
      assert(topicSubscribers !== undefined && topicSubscribers.has(subscriber), "a subscriber closes once");
      topicSubscribers.delete(subscriber);
      if (topicSubscribers.size > 0) continue;
      registry.delete(topic);
      onEmpty?.();
    }
    const deleted = this.#subscribers.delete(subscriber);
    assert(deleted);
    if (reason === "overflow") {
      this.#droppedCount += 1;
      this.#logger.debug("sse: disconnected a slow subscriber", {
        queueDepthMax: this.#limits.sseQueueDepthMax,
        droppedCount: this.#droppedCount,
      });
    }
    if (this.#subscribers.size === 0) this.#stopKeepalive();
  }

  #handOut(subscriber: Subscriber): Subscription {
    return Object.freeze({
      stream: subscriber.stream,
      close: () => subscriber.close(),
      onEnd: (listener: () => void) => subscriber.onEnd(listener),
    });
  }

  #startKeepalive(): void {
    if (this.#keepaliveTimer !== undefined) return;
    this.#armKeepalive();
  }

  /** Sets the keepalive's next timer, `sseKeepaliveMs` from now: one repeating timer, like `setInterval`. */
  #armKeepalive(): void {
    this.#keepaliveTimer = this.#clock.setTimer(this.#limits.sseKeepaliveMs, () => {
      assert(this.#subscribers.size > 0, "the keepalive runs only while a subscription is open");
      this.#armKeepalive();
      for (const subscriber of this.#subscribers) subscriber.sendComment(keepaliveFrame);
    });
  }

  #stopKeepalive(): void {
    if (this.#keepaliveTimer === undefined) return;
    this.#clock.clearTimer(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
  }
}

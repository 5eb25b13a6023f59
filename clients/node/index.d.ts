// Type declarations for raftline, the Node.js client of the raftline job executor.
/// <reference types="node" />

import { EventEmitter } from 'node:events';

/** Milliseconds since the Unix epoch, or a Date. */
export type Time = number | Date;
/** Bytes: a Buffer, a Uint8Array, an ArrayBuffer, or a string (sent as UTF-8). */
export type Bytes = Buffer | Uint8Array | ArrayBuffer | string;

export interface ClientOptions {
  /** Every node's http address (`127.0.0.1:7301` or `https://host:port`), or a comma-separated string. Default: env RAFTLINE_ADDRS. */
  addrs?: string[] | string;
  /** API token secret. Default: env RAFTLINE_TOKEN, else the file tokenFile / RAFTLINE_TOKEN_FILE names. */
  token?: string;
  tokenFile?: string;
  /** The cluster's CA: a PEM file path or its contents. Given, addresses without a scheme use https. Default: env RAFTLINE_CA_FILE. */
  ca?: string | Buffer;
  caFile?: string;
  /** How long one HTTP request may take at one node, ms (10,000; a long-poll adds its wait). */
  timeout?: number;
  /** How long one call keeps failing over between nodes, ms (30,000), before it throws UNAVAILABLE. */
  deadline?: number;
  /** Most sockets per node (64). */
  maxSockets?: number;
  /** TLS server name to check the certificates against, when the addresses don't name it. */
  servername?: string;
}

export interface Backoff {
  baseMs?: number;
  factor?: number;
  capMs?: number;
  noJitter?: boolean;
}

export interface ShellCommand {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
}

export interface SubmitOptions {
  queue: string;
  /** An external job's payload (the default kind; empty when not given). */
  payload?: Bytes | null;
  /** A shell job instead: shell, or argv/env/cwd. */
  shell?: ShellCommand;
  argv?: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** 1..=10, 10 most urgent (default 5). */
  priority?: number;
  /** Start after this long, ms. */
  delay?: number;
  /** Start at this time. */
  runAt?: Time;
  /** Attempts before dead letters (default 3). */
  maxAttempts?: number;
  /** Retry backoff; unset fields take the server's defaults (1 s, x2, cap 16 s). */
  backoff?: Backoff;
  /** Kill an attempt after this long, ms. */
  timeout?: number;
  /** Lease ttl, ms (default 30 s). */
  leaseTtl?: number;
  /** A fresh UUID when not given; reused on every retry of this call. */
  idempotencyKey?: string;
  tags?: string[];
  /** Capabilities a worker must offer (required_capabilities). */
  requires?: string[];
  permanentExitCodes?: number[];
  /** SLA deadline. */
  deadline?: Time;
  /** `name` or `name:units`. */
  resources?: string[];
  // snake_case names (max_attempts, run_at, lease_ttl, idempotency_key, ...) are accepted too.
  [snakeCase: string]: unknown;
}

export interface SubmitResult {
  id: number;
  /** The idempotency key matched an earlier job; nothing was created. */
  duplicate: boolean;
}

export interface Attempt {
  number: number;
  token: number;
  worker: string;
  node?: number;
  started_ms: number;
  ended_ms?: number;
  /** running | succeeded | failed */
  result: string;
  /** transient | permanent | timeout | lost_lease | released | cancelled */
  error_class: string;
  exit_code?: number;
  error: string;
  output_tail: string;
}

/** A job as the API returns it: the proto's field names, `payload` as a Buffer. */
export interface Job {
  id: number;
  queue: string;
  priority: number;
  shell?: ShellCommand;
  payload?: Buffer;
  created_ms: number;
  /** scheduled | ready | leased | succeeded | dead | cancelled */
  state: string;
  max_attempts: number;
  attempts_used: number;
  attempts_total: number;
  attempts: Attempt[];
  run_at_ms: number;
  finished_ms?: number;
  error: string;
  tags: string[];
  required_capabilities: string[];
  permanent_exit_codes: number[];
  timeout_ms?: number;
  lease_ttl_ms: number;
  deadline_ms?: number;
  deadline_missed: boolean;
  idempotency_key: string;
  lease_token?: number;
  lease_worker: string;
  lease_expires_ms?: number;
  has_checkpoint: boolean;
  resources: string[];
  submitted_by_token: string;
  submitted_by_name: string;
  [field: string]: unknown;
}

export interface ListFilter {
  queue?: string;
  state?: string;
  tag?: string;
  /** Text in the command line or error (ASCII case ignored). */
  text?: string;
  createdAfter?: Time;
  createdBefore?: Time;
  finishedAfter?: Time;
  finishedBefore?: Time;
  /** Page size (default 100, at most 1000). */
  limit?: number;
  afterId?: number;
  stale?: boolean;
}

export interface RetryOptions {
  argv?: string[];
  env?: Record<string, string>;
  priority?: number;
  maxAttempts?: number;
}

export interface WaitOptions {
  /** Give up after this long, ms (DEADLINE_EXCEEDED); no limit when not given. */
  timeout?: number;
  /** First poll interval, ms (100), doubling up to maxInterval (1,000). */
  interval?: number;
  maxInterval?: number;
  signal?: AbortSignal;
}

export interface RequestOptions {
  /** This call's failover deadline, ms. */
  deadline?: number;
  /** How long the server may hold the call (long-poll), ms. */
  wait?: number;
  signal?: AbortSignal;
  /** Called before each retry with the error that caused it. */
  onRetry?: (err: RaftlineError) => void;
}

export interface LeaseOptions {
  workerId: string;
  queues?: string[];
  capabilities?: string[];
  /** 1..=256 (default 1). */
  max?: number;
  /** Lease ttl, ms; the job's own when 0. */
  ttl?: number;
  /** Long-poll up to this long, ms (at most 60,000). */
  waitMs?: number;
}

export interface LeasedJob {
  job: Job;
  token: number;
  attempt: number;
  expires_ms: number;
  ttl_ms: number;
  checkpoint?: Buffer;
}

export interface Completion {
  jobId: number;
  token: number;
  success: boolean;
  /** transient (default) | permanent | timeout */
  errorClass?: string;
  exitCode?: number;
  error?: string;
  outputTail?: string;
}

export interface CompletionResult {
  job_id: number;
  /** The job's state after the completion; empty when refused. */
  state: string;
  /** When refused: the gRPC code name. */
  error_code: string;
  error: string;
}

export interface HeldLease {
  job_id: number;
  token: number;
  expires_ms: number;
}

export class Client {
  constructor(options?: ClientOptions);
  constructor(addrs: string[] | string, options?: Omit<ClientOptions, 'addrs'>);
  readonly token: string | null;
  timeout: number;
  deadline: number;
  /** Closes the keep-alive connections; the client can't be used afterwards. */
  close(): void;

  /** Any API call, with failover; resolves the JSON reply. */
  request(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, opts?: RequestOptions): Promise<any>;
  call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, opts?: RequestOptions): Promise<any>;

  /** Submits a job; resolves its id. */
  submit(options: SubmitOptions): Promise<number>;
  submitResult(options: SubmitOptions): Promise<SubmitResult>;
  /** Submits many jobs (1,000 per call); resolves their ids in order. */
  submitBatch(jobs: SubmitOptions[]): Promise<number[]>;
  getJob(id: number, opts?: { stale?: boolean }): Promise<Job>;
  /** Polls until the job is succeeded, dead or cancelled; resolves it. */
  wait(id: number, opts?: WaitOptions): Promise<Job>;
  /** Resolves the job's state (`cancelled`). */
  cancel(id: number): Promise<string>;
  /** Resolves the job's state. */
  retry(id: number, opts?: RetryOptions): Promise<string>;
  listJobsPage(filter?: ListFilter): Promise<{ jobs: Job[]; nextAfterId: number }>;
  listJobs(filter?: ListFilter): AsyncGenerator<Job, void, undefined>;

  getQueue(queue: string, opts?: { stale?: boolean }): Promise<any>;
  listQueues(opts?: { stale?: boolean }): Promise<any[]>;
  pauseQueue(queue: string): Promise<any>;
  resumeQueue(queue: string): Promise<any>;
  nodeStatus(): Promise<any>;

  // The worker API (what Worker uses).
  lease(opts: LeaseOptions, o?: { signal?: AbortSignal; onRetry?: (err: RaftlineError) => void }): Promise<LeasedJob[]>;
  heartbeat(workerId: string, opts?: { deadline?: number }): Promise<HeldLease[]>;
  complete(c: Completion): Promise<{ id: number; state: string }>;
  completeAndLease(
    completions: Completion[],
    lease: LeaseOptions | null,
    o?: { signal?: AbortSignal; onRetry?: (err: RaftlineError) => void },
  ): Promise<{ completions: CompletionResult[]; jobs: LeasedJob[] }>;
  checkpoint(jobId: number, token: number, data: Bytes): Promise<{ id: number; state: string }>;
  release(jobId: number, token: number): Promise<{ id: number; state: string }>;
}

/** What a handler gets for one attempt of a job. */
export class JobContext {
  readonly id: number;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** The lease's fencing token. */
  readonly token: number;
  readonly queue: string;
  readonly payload: Buffer;
  readonly tags: string[];
  /** Stored by an earlier attempt or by checkpoint(), else null. */
  lastCheckpoint: Buffer | null;
  /** The job as the lease returned it. */
  readonly info: Job;
  readonly job: Job;
  readonly expiresMs: number;
  readonly ttlMs: number;
  /** Aborted when the lease is lost (cancelled, expired, taken): the result will not be reported. */
  readonly signal: AbortSignal;
  readonly leaseLost: boolean;
  readonly workerId: string;
  text(): string;
  json(): any;
  /** Stores progress; rejects FAILED_PRECONDITION when the lease is lost. */
  checkpoint(data: Bytes): Promise<void>;
}

export type Handler = (job: JobContext) => Promise<unknown> | unknown;

export interface WorkerOptions {
  queues?: string[] | string;
  handler: Handler;
  /** Handlers at once (1). */
  concurrency?: number;
  /** Unique per worker, [A-Za-z0-9_.-]{1,128}; generated when not given. */
  workerId?: string;
  capabilities?: string[];
  /** Lease ttl, ms; each job's own (30 s by default) when 0. Heartbeats every ttl/3. */
  ttl?: number;
  /** Long-poll wait of a lease, ms (5,000; at most 60,000). */
  pollWait?: number;
  /** Heartbeat interval, ms (default ttl/3). */
  heartbeatInterval?: number;
}

export interface WorkerStats {
  leased: number;
  succeeded: number;
  failed: number;
  lost: number;
  released: number;
  recovered: number;
}

export class Worker extends EventEmitter {
  constructor(client: Client, options: WorkerOptions);
  constructor(client: Client, queues: string[] | string, handler: Handler, options?: Omit<WorkerOptions, 'queues' | 'handler'>);
  readonly client: Client;
  readonly workerId: string;
  readonly stats: WorkerStats;
  readonly stopping: boolean;
  start(): this;
  /** Starts and resolves once stopped. */
  run(): Promise<void>;
  /** Graceful stop; resolves true once done (false if `timeout` ms passed first). */
  stop(opts?: { timeout?: number }): Promise<boolean>;

  on(event: 'completed', listener: (job: JobContext, state: string) => void): this;
  on(event: 'failed', listener: (job: JobContext, error: unknown, state: string) => void): this;
  on(event: 'lost', listener: (job: JobContext, reason: string) => void): this;
  on(event: 'released', listener: (jobId: number) => void): this;
  on(event: 'warning', listener: (error: Error) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** An error from the cluster, or a failover that ran out of time (UNAVAILABLE). */
export class RaftlineError extends Error {
  constructor(message: string, opts?: { status?: string; httpStatus?: number; field?: string | null; body?: unknown; cause?: unknown });
  /** The gRPC status name: NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION, UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED, ... */
  readonly status: string;
  /** Same as status. */
  readonly code: string;
  /** The HTTP status; 0 when no node answered. */
  readonly httpStatus: number;
  /** The request field the error names, or null. */
  readonly field: string | null;
  readonly body: unknown;
}

/** Throw from a handler to fail the attempt permanently (straight to dead letters). */
export class PermanentError extends Error {
  constructor(message?: string, options?: { cause?: unknown });
  readonly permanent: true;
}

/** The SubmitRequest (proto JSON) submit() would send for these options. */
export function submitRequest(options: SubmitOptions): Record<string, unknown>;

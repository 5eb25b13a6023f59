'use strict';

/**
 * An error the cluster returned (or a failover that ran out of time).
 *
 * - `status`: the gRPC status name (`NOT_FOUND`, `INVALID_ARGUMENT`, `FAILED_PRECONDITION`,
 *   `UNAUTHENTICATED`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, ...); also
 *   available as `code`, as Node errors carry a string `code`.
 * - `httpStatus`: the HTTP status (0 when no node answered at all).
 * - `field`: the request field the error names, or null.
 */
class RaftlineError extends Error {
  constructor(message, { status = 'UNKNOWN', httpStatus = 0, field = null, body = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'RaftlineError';
    this.status = status;
    this.code = status;
    this.httpStatus = httpStatus;
    this.field = field;
    this.body = body;
  }
}

/**
 * Throw this from a worker handler to fail the attempt permanently: the job goes straight to
 * the dead letters instead of being retried.
 */
class PermanentError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'PermanentError';
    this.permanent = true;
  }
}

/** Normalises a status name: `FailedPrecondition` and `FAILED_PRECONDITION` alike. */
function statusName(s) {
  if (!s) return '';
  if (/^[A-Z0-9_]+$/.test(s)) return s;
  return s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

module.exports = { RaftlineError, PermanentError, statusName };

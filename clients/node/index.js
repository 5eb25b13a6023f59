'use strict';
// raftline: a dependency-free Node.js client for raftline's REST API.

const { Client, submitRequest } = require('./lib/client');
const { Worker, JobContext } = require('./lib/worker');
const { RaftlineError, PermanentError } = require('./lib/errors');

module.exports = { Client, Worker, JobContext, RaftlineError, PermanentError, submitRequest };
